package metadata

import (
	"context"
	"maps"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/namespaces"
)

// noPut hides the backend's Put, so that the metadata store writes through
// the backend's ingest instead.
type noPut struct{ Backend }

func TestContentPut(t *testing.T) {
	for name, hide := range map[string]bool{"backend Put": false, "backend ingest": true} {
		t.Run(name, func(t *testing.T) {
			db := openDB(t)
			if hide {
				db.backend = noPut{db.backend}
			}
			ctx := namespaces.WithNamespace(context.Background(), "a")
			cs := db.Content().(content.Putter)
			data := []byte(`{"schemaVersion":2}`)
			desc := ocispec.Descriptor{Digest: digest.FromBytes(data), Size: int64(len(data))}

			if _, err := db.Leases().Create(ctx, "l", nil); err != nil {
				t.Fatal(err)
			}
			if err := cs.Put(leases.WithLease(ctx, "l"), desc, data); err != nil {
				t.Fatal(err)
			}
			if info, err := db.Content().Info(ctx, desc.Digest); err != nil || info.Size != desc.Size {
				t.Fatalf("Info after Put = %+v, %v", info, err)
			}
			res, err := db.Leases().ListResources(ctx, "l")
			if err != nil || len(res) != 1 || res[0] != (leases.Resource{Type: "content", ID: desc.Digest.String()}) {
				t.Errorf("the lease holds %v, %v; want the blob alone (no ingest)", res, err)
			}
			if err := cs.Put(ctx, desc, data); !errdefs.IsAlreadyExists(err) {
				t.Errorf("second Put in the namespace = %v, want AlreadyExists", err)
			}
			// Another namespace gets its own record of the stored blob.
			b := namespaces.WithNamespace(context.Background(), "b")
			if _, err := db.Content().Info(b, desc.Digest); !errdefs.IsNotFound(err) {
				t.Fatalf("namespace b sees the blob before its Put: %v", err)
			}
			lbls := map[string]string{"containerd.io/distribution.source.example.com": "app"}
			if err := cs.Put(b, desc, data, content.WithLabels(lbls)); err != nil {
				t.Fatalf("Put in a second namespace: %v", err)
			}
			if info, err := db.Content().Info(b, desc.Digest); err != nil || !maps.Equal(info.Labels, lbls) {
				t.Errorf("Info in namespace b: %+v, %v; want the labels Put was given", info, err)
			}
			if info, _ := db.Content().Info(ctx, desc.Digest); len(info.Labels) != 0 {
				t.Errorf("namespace a's record got b's labels: %v", info.Labels)
			}
			// Labels are checked as Commit checks them.
			bad := map[string]string{"": "x"}
			if err := cs.Put(namespaces.WithNamespace(ctx, "c"), desc, data, content.WithLabels(bad)); !errdefs.IsInvalidArgument(err) {
				t.Errorf("Put with an empty label key = %v, want InvalidArgument", err)
			}
			// Wrong bytes record nothing.
			other := ocispec.Descriptor{Digest: digest.FromString("other"), Size: desc.Size}
			if err := cs.Put(ctx, other, data); !errdefs.IsFailedPrecondition(err) {
				t.Errorf("Put of bytes of another digest = %v, want FailedPrecondition", err)
			}
			if _, err := db.Content().Info(ctx, other.Digest); !errdefs.IsNotFound(err) {
				t.Errorf("a refused Put was recorded: %v", err)
			}
			if err := cs.Put(context.Background(), desc, data); !errdefs.IsFailedPrecondition(err) {
				t.Errorf("Put without a namespace = %v", err)
			}
			// Nothing is left of the write but the blob: no ingest.
			if sts, err := db.Content().ListStatuses(ctx); err != nil || len(sts) != 0 {
				t.Errorf("ingests after Put: %v, %v", sts, err)
			}
		})
	}
}
