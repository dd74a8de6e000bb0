package content

import (
	"path/filepath"
	"testing"

	api "github.com/containerd/containerd/api/services/content/v1"
	"google.golang.org/grpc/codes"

	"github.com/hullrt/hull/core/content/local"
	"github.com/hullrt/hull/core/metadata"
	"github.com/hullrt/hull/internal/servicetest"
	"github.com/hullrt/hull/internal/tmpfstest"
	"github.com/hullrt/hull/plugin"
)

// A client writing into a full content store gets ResourceExhausted with the
// filesystem's name, not Unknown.
func TestWriteToFullDiskIsResourceExhausted(t *testing.T) {
	mnt := tmpfstest.Mount(t, 4<<20)
	backend, err := local.NewStore(filepath.Join(mnt, "content"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := metadata.Open(filepath.Join(mnt, "meta.db"), backend, metadata.Options{ReserveSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc := servicetest.Adapter(t, Register, servicetest.Dep(plugin.MetadataPlugin, "bolt", db))
	c := api.NewContentClient(servicetest.Serve(t, svc))
	ctx := servicetest.ClientCtx(t, "ns1")
	_, send := writeStream(t, ctx, c)
	chunk := make([]byte, 1<<20)
	var off int64
	for i := 0; i < 8; i++ {
		_, err = send(&api.WriteContentRequest{Action: api.WriteAction_WRITE, Ref: "big", Offset: off, Data: chunk})
		if err != nil {
			break
		}
		off += int64(len(chunk))
	}
	servicetest.WantCode(t, err, codes.ResourceExhausted, "no space left on device on "+mnt, "content store")
}
