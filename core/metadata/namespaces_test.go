package metadata

import (
	"context"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/namespaces"
)

// A namespace that holds only leases, ingests and sandboxes goes, with
// them, as in containerd 2.x; the ingest's data in the backend goes with
// the collection the delete schedules.
func TestNamespaceDeleteTakesLeasesAndIngests(t *testing.T) {
	db := openDB(t)
	ctx := namespaces.WithNamespace(context.Background(), "work")
	if _, err := db.Leases().Create(ctx, "l1", map[string]string{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	lctx := leases.WithLease(ctx, "l1")
	w, err := db.Content().Writer(lctx, content.WithRef("half"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("half a blob")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if _, err := db.Sandboxes().Create(ctx, newSandbox("sb1")); err != nil {
		t.Fatal(err)
	}
	backendRefs := func() []string {
		sts, err := db.Backend().ListStatuses(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var refs []string
		for _, st := range sts {
			refs = append(refs, st.Ref)
		}
		return refs
	}
	if refs := backendRefs(); !slices.Contains(refs, "work/half") {
		t.Fatalf("backend ingests %v lack work/half", refs)
	}

	if err := db.Namespaces().Delete(ctx, "work"); err != nil {
		t.Fatalf("delete a namespace with a lease and an ingest: %v", err)
	}
	names, _ := db.Namespaces().List(ctx)
	if slices.Contains(names, "work") {
		t.Fatalf("namespaces after delete: %v", names)
	}
	gc(t, ctx, db)
	if refs := backendRefs(); slices.Contains(refs, "work/half") {
		t.Errorf("the ingest's data outlived its namespace: %v", refs)
	}
	// The name is free again, and nothing of the old namespace shows.
	if err := db.Namespaces().Create(ctx, "work", nil); err != nil {
		t.Fatal(err)
	}
	if ls, _ := db.Leases().List(ctx); len(ls) != 0 {
		t.Errorf("leases in the new namespace: %v", ls)
	}
	if _, err := db.Content().Status(ctx, "half"); !errdefs.IsNotFound(err) {
		t.Errorf("ingest in the new namespace: %v", err)
	}
}

// Images, blobs, containers and snapshots keep a namespace, named in
// containerd's words; a missing namespace is NotFound.
func TestNamespaceDeleteRefusesWhatWasMade(t *testing.T) {
	db := openDB(t)
	snaps := withNative(t, db)
	for _, tc := range []struct {
		name string
		make func(ctx context.Context)
		says string
	}{
		{"images", func(ctx context.Context) {
			if _, err := db.Images().Create(ctx, images.Image{Name: "img", Target: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: "sha256:0000000000000000000000000000000000000000000000000000000000000000", Size: 1}}); err != nil {
				t.Fatal(err)
			}
		}, "images"},
		{"blobs", func(ctx context.Context) { put(t, ctx, db, "a blob", nil) }, "blobs"},
		{"containers", func(ctx context.Context) {
			if _, err := db.Containers().Create(ctx, newContainer("c1")); err != nil {
				t.Fatal(err)
			}
		}, "containers"},
		{"snapshots", func(ctx context.Context) { layer(t, ctx, snaps, "l1", "") }, `snapshots on "native" snapshotter`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := "holds-" + tc.name
			ctx := namespaces.WithNamespace(context.Background(), ns)
			tc.make(ctx)
			if _, err := db.Leases().Create(ctx, "kept", nil); err != nil {
				t.Fatal(err)
			}
			err := db.Namespaces().Delete(ctx, ns)
			wantErr(t, "delete "+ns, err, errdefs.ErrFailedPrecondition, `namespace "`+ns+`" must be empty, but it still has `+tc.says)
			// Refused means untouched: the lease is still there.
			if ls, _ := db.Leases().List(ctx); len(ls) != 1 {
				t.Errorf("leases after a refused delete: %v", ls)
			}
		})
	}
	err := db.Namespaces().Delete(context.Background(), "never")
	wantErr(t, "delete a missing namespace", err, errdefs.ErrNotFound, `"never"`)
	err = db.Namespaces().Delete(context.Background(), "bad/name")
	wantErr(t, "delete an invalid name", err, errdefs.ErrInvalidArgument, `"bad/name"`)
}
