package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/content/local"
	"github.com/hullrt/hull/internal/hulltest"
	contentservice "github.com/hullrt/hull/plugins/services/content"
)

// blobServer is a content store with nothing but blobs, as a process that
// serves one to hulld's [proxy_plugins] would have: labels are the
// metadata store's business, so Update is refused.
type blobServer struct{ *local.Store }

func (b blobServer) Update(_ context.Context, info content.Info, _ ...string) (content.Info, error) {
	return content.Info{}, fmt.Errorf("labels of %s: this store keeps none: %w", info.Digest, errdefs.ErrNotImplemented)
}

func (b blobServer) Walk(ctx context.Context, fn content.WalkFunc, _ ...string) error {
	return b.Store.Walk(ctx, fn)
}

// TestProxyContentStore configures a content store served by another
// process ([proxy_plugins] type "content") in place of hulld's own: blobs
// written through hulld land in it, are read back from it, are
// namespaced by hulld's metadata store over it, and are removed from it by
// hulld's garbage collection.
func TestProxyContentStore(t *testing.T) {
	dir := t.TempDir()
	store, err := local.NewStore(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "content.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	contentservice.NewServer(blobServer{store}).RegisterGRPC(srv)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	d := hulltest.Start(t, hulltest.Options{Config: fmt.Sprintf(`version = 3
disabled_plugins = ["io.containerd.content.v1.content"]
[proxy_plugins.remote]
  type = "content"
  address = %q
`, sock)})
	c, err := client.New(d.Address, client.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(client.WithNamespace(context.Background(), "px"), time.Minute)
	defer cancel()
	ps, err := c.Plugins(ctx, "type==io.containerd.content.v1")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].ID != "remote" || ps[0].InitErr != "" || ps[0].Exports["address"] != sock {
		t.Fatalf("content plugins: %+v, want the proxy alone, running", ps)
	}
	if ms, err := c.Plugins(ctx, "type==io.containerd.metadata.v1"); err != nil || len(ms) != 1 || ms[0].InitErr != "" {
		t.Fatalf("metadata plugin over the proxy: %+v %v", ms, err)
	}

	data := []byte("a blob kept by another process")
	desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(data), Size: int64(len(data))}
	if err := client.WriteBlob(ctx, c.ContentStore(), "proxy-blob", bytes.NewReader(data), desc); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Info(ctx, desc.Digest); err != nil {
		t.Fatalf("blob written through hulld is not in the proxy's store: %v", err)
	}
	got, err := client.ReadBlob(ctx, c.ContentStore(), desc)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back through hulld: %q %v", got, err)
	}
	// Namespaces stay hulld's: another namespace does not see the blob.
	other := client.WithNamespace(ctx, "other")
	if _, err := c.ContentStore().Info(other, desc.Digest); !errdefs.IsNotFound(err) {
		t.Fatalf("blob of namespace px seen from namespace other: %v", err)
	}

	// Deleting the record and collecting removes the blob from the proxy.
	if err := c.ContentStore().Delete(ctx, desc.Digest); err != nil {
		t.Fatal(err)
	}
	if err := c.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	hulltest.Eventually(t, 10*time.Second, "the collector to remove the blob from the proxy store", func() error {
		if _, err := store.Info(context.Background(), desc.Digest); !errdefs.IsNotFound(err) {
			return fmt.Errorf("blob %s still in the proxy store (%v)", desc.Digest, err)
		}
		return nil
	})
}

// TestProxyContentStoreBesideLocal: a content proxy next to hulld's own
// store is a configuration error that names both, as in containerd, which
// also wants one of them disabled.
func TestProxyContentStoreBesideLocal(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`version = 3
[proxy_plugins.remote]
  type = "content"
  address = %q
`, filepath.Join(dir, "none.sock"))), 0o600); err != nil {
		t.Fatal(err)
	}
	// The metadata store needs one content store: with two it fails,
	// and hulld with it, naming both, rather than serving without it.
	out, err := exec.Command(hulltest.Binary(t), "--config", cfg, "--root", filepath.Join(dir, "root"), "--state", filepath.Join(dir, "state"), "--address", filepath.Join(dir, "h.sock")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "more than one plugin of type io.containerd.content.v1 is running ([content remote])") {
		t.Fatalf("hulld with two content stores: %v, want an exit naming both\n%s", err, out)
	}
}
