package metadata

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/content/local"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/namespaces"
)

func openDB(t *testing.T) *DB {
	t.Helper()
	return openDBAt(t, t.TempDir())
}

// openDBAt opens the database and content store in dir, as a restarted
// daemon would; it is closed when the test ends.
func openDBAt(t testing.TB, dir string) *DB {
	t.Helper()
	backend, err := local.NewStore(dir + "/content")
	if err != nil {
		t.Fatal(err)
	}
	db, err := Open(dir+"/meta.db", backend, Options{GCDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func put(t *testing.T, ctx context.Context, db *DB, data string, labels map[string]string) digest.Digest {
	t.Helper()
	d := digest.FromString(data)
	w, err := db.Content().Writer(ctx, content.WithRef("ref-"+data), content.WithDescriptor(ocispec.Descriptor{Digest: d, Size: int64(len(data))}))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write([]byte(data))
	if err := w.Commit(ctx, int64(len(data)), d, content.WithLabels(labels)); err != nil {
		t.Fatal(err)
	}
	return d
}

func exists(ctx context.Context, db *DB, d digest.Digest) bool {
	_, err := db.Content().Info(ctx, d)
	return err == nil
}

func TestGCFollowsReferencesAndLeases(t *testing.T) {
	db := openDB(t)
	ctx := namespaces.WithNamespace(context.Background(), "gc")
	layer := put(t, ctx, db, "layer", nil)
	config := put(t, ctx, db, "config", nil)
	manifest := put(t, ctx, db, "manifest", map[string]string{
		"containerd.io/gc.ref.content.config": config.String(),
		"containerd.io/gc.ref.content.l.0":    layer.String(),
	})
	orphan := put(t, ctx, db, "orphan", nil)
	rooted := put(t, ctx, db, "rooted", map[string]string{"containerd.io/gc.root": "2026"})
	if _, err := db.Leases().Create(ctx, "hold", nil); err != nil {
		t.Fatal(err)
	}
	held := put(t, leases.WithLease(ctx, "hold"), db, "held", nil)
	if _, err := db.Leases().Create(ctx, "old", map[string]string{leases.ExpireLabel: time.Now().Add(-time.Minute).Format(time.RFC3339)}); err != nil {
		t.Fatal(err)
	}
	expiredHeld := put(t, leases.WithLease(ctx, "old"), db, "expired-held", nil)
	if _, err := db.Images().Create(ctx, images.Image{Name: "img", Target: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: manifest, Size: 8}}); err != nil {
		t.Fatal(err)
	}
	// A write in progress in another namespace is untouched.
	w, err := db.Content().Writer(namespaces.WithNamespace(ctx, "other"), content.WithRef("live"))
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("partial"))

	st, err := db.GarbageCollect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string]digest.Digest{"layer": layer, "config": config, "manifest": manifest, "rooted": rooted, "held": held} {
		if !exists(ctx, db, d) {
			t.Errorf("gc removed %s, which is referenced", name)
		}
	}
	for name, d := range map[string]digest.Digest{"orphan": orphan, "expired-held": expiredHeld} {
		if exists(ctx, db, d) {
			t.Errorf("gc kept %s, which nothing references", name)
		}
		if _, err := db.Backend().Info(ctx, d); !errdefs.IsNotFound(err) {
			t.Errorf("blob file of %s is still on disk: %v", name, err)
		}
	}
	if st.LeasesExpired != 1 || st.BlobsDeleted != 2 {
		t.Errorf("stats %+v, want 1 lease expired and 2 blobs deleted", st)
	}
	if _, err := w.Write([]byte(" and more")); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx, 0, ""); err != nil {
		t.Fatalf("commit of the live ingest after gc: %v", err)
	}
	// Deleting the image releases its whole tree.
	if err := db.Images().Delete(ctx, "img", images.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string]digest.Digest{"layer": layer, "config": config, "manifest": manifest} {
		if exists(ctx, db, d) {
			t.Errorf("%s kept after its image was deleted", name)
		}
	}
	if !exists(ctx, db, rooted) || !exists(ctx, db, held) {
		t.Error("roots lost")
	}
}

func TestContentSharedOnDiskIsolatedByNamespace(t *testing.T) {
	db := openDB(t)
	a := namespaces.WithNamespace(context.Background(), "a")
	b := namespaces.WithNamespace(context.Background(), "b")
	d := put(t, a, db, "same bytes", nil)
	if exists(b, db, d) {
		t.Fatal("namespace b sees a blob it never wrote")
	}
	if _, err := db.Content().ReaderAt(b, ocispec.Descriptor{Digest: d}); !errdefs.IsNotFound(err) {
		t.Fatalf("namespace b reads a's blob: %v", err)
	}
	put(t, b, db, "same bytes", map[string]string{"containerd.io/gc.root": "keep"})
	ra, err := db.Content().ReaderAt(b, ocispec.Descriptor{Digest: d})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, ra.Size())
	ra.ReadAt(buf, 0)
	ra.Close()
	if !bytes.Equal(buf, []byte("same bytes")) {
		t.Fatalf("read %q", buf)
	}
	// Deleting it in a keeps b's copy, which is the same file.
	if err := db.Content().Delete(a, d); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GarbageCollect(a); err != nil {
		t.Fatal(err)
	}
	if !exists(b, db, d) {
		t.Fatal("b lost its blob when a deleted its own")
	}
	if _, err := db.Backend().Info(b, d); err != nil {
		t.Fatalf("blob file removed while b records it: %v", err)
	}
}

// A collection asked for by a change (kickGC) is not made again when one
// began after the change, such as the sync collection `images rm --sync`
// runs right after a pull's lease is deleted; a kick that nothing served
// still gets its collection.
func TestKickedCollectionCoveredBySyncOne(t *testing.T) {
	db := openDB(t)
	db.SetGCDelay(20 * time.Millisecond)
	ctx := namespaces.WithNamespace(context.Background(), "ns")
	lease := func(id string) {
		t.Helper()
		if _, err := db.Leases().Create(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
		if err := db.Leases().Delete(ctx, id, false); err != nil { // kicks
			t.Fatal(err)
		}
	}
	lease("covered")
	if _, err := db.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); db.skipped.Load() != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the collector never passed on the covered kick (%d collections)", db.runs.Load())
		}
	}
	if n := db.runs.Load(); n != 1 {
		t.Fatalf("%d collections after a kick and a sync collection, want 1", n)
	}
	lease("alone")
	for deadline := time.Now().Add(10 * time.Second); db.runs.Load() != 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d collections after a kick nothing served, want 2", db.runs.Load())
		}
	}
}
