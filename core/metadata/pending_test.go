package metadata

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/content/local"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/namespaces"
)

// blobOf is a small blob and its descriptor.
func blobOf(s string) ([]byte, ocispec.Descriptor) {
	data := []byte(s)
	return data, ocispec.Descriptor{Digest: digest.FromBytes(data), Size: int64(len(data))}
}

// recorded reports whether namespace ns has a record of dgst in the
// database itself (not among the blobs written behind).
func recorded(t *testing.T, db *DB, ns string, dgst digest.Digest) bool {
	t.Helper()
	var ok bool
	err := db.view(namespaces.WithNamespace(context.Background(), ns), func(tx *nsTx) error {
		var r blobRecord
		var err error
		ok, err = getRecord(tx.bucket(bucketContent), dgst.String(), &r)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// PutDeferred stores the blob at once and writes its record later: until
// then Info and ReaderAt of its namespace see it (and no other namespace
// does) and the collector spares it; FlushDeferred records every pending
// blob of the namespace in one transaction, with the lease's hold.
func TestPutDeferred(t *testing.T) {
	db := openDB(t)
	ctx := namespaces.WithNamespace(context.Background(), "a")
	if _, err := db.Leases().Create(ctx, "pull", nil); err != nil {
		t.Fatal(err)
	}
	lctx := leases.WithLease(ctx, "pull")
	cs := db.Content().(content.DeferredPutter)
	var descs []ocispec.Descriptor
	for i := range 3 {
		data, desc := blobOf(fmt.Sprintf("blob %d", i))
		lbls := map[string]string{"containerd.io/distribution.source.example.com": "app"}
		if err := cs.PutDeferred(lctx, desc, data, content.WithLabels(lbls)); err != nil {
			t.Fatal(err)
		}
		info, err := db.Content().Info(ctx, desc.Digest)
		if err != nil || info.Size != desc.Size || !maps.Equal(info.Labels, lbls) {
			t.Fatalf("Info of a blob written behind: %+v, %v", info, err)
		}
		ra, err := db.Content().ReaderAt(ctx, desc)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(io.NewSectionReader(ra, 0, ra.Size()))
		ra.Close()
		if err != nil || string(got) != string(data) {
			t.Fatalf("read %q, %v; want %q", got, err, data)
		}
		if recorded(t, db, "a", desc.Digest) {
			t.Fatalf("blob %d recorded at once", i)
		}
		descs = append(descs, desc)
	}
	if _, err := db.Content().Info(namespaces.WithNamespace(context.Background(), "b"), descs[0].Digest); !errdefs.IsNotFound(err) {
		t.Errorf("another namespace sees a pending blob: %v", err)
	}
	// The collector spares what is pending, though no record holds it.
	if _, err := db.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range descs {
		if _, err := db.Backend().Info(ctx, d.Digest); err != nil {
			t.Fatalf("the collector removed pending blob %s: %v", d.Digest, err)
		}
	}
	gen := db.gen.Load()
	if err := cs.FlushDeferred(ctx); err != nil {
		t.Fatal(err)
	}
	if n := db.gen.Load() - gen; n != 1 {
		t.Errorf("the flush of 3 records took %d transactions, want 1", n)
	}
	res, err := db.Leases().ListResources(ctx, "pull")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range descs {
		if !recorded(t, db, "a", d.Digest) {
			t.Errorf("blob %s not recorded by the flush", d.Digest)
		}
		if !slices.Contains(res, leases.Resource{Type: "content", ID: d.Digest.String()}) {
			t.Errorf("the lease does not hold blob %s: %v", d.Digest, res)
		}
	}
	// Recorded now: a second PutDeferred is a Put of a blob there.
	data, _ := blobOf("blob 0")
	if err := cs.PutDeferred(lctx, descs[0], data); !errdefs.IsAlreadyExists(err) {
		t.Errorf("PutDeferred of a recorded blob: %v, want AlreadyExists", err)
	}
	if err := cs.PutDeferred(ctx, ocispec.Descriptor{Digest: "sha256:nope", Size: 1}, []byte("x")); !errdefs.IsInvalidArgument(err) {
		t.Errorf("PutDeferred of a bad digest: %v, want InvalidArgument", err)
	}
	_, desc := blobOf("not the bytes")
	if err := cs.PutDeferred(ctx, desc, []byte("other bytes!!")); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("PutDeferred of bytes that are not the blob: %v, want FailedPrecondition", err)
	}
	if _, err := db.Content().Info(ctx, desc.Digest); !errdefs.IsNotFound(err) {
		t.Errorf("a refused PutDeferred left a blob: %v", err)
	}
}

// Every other change to a namespace's blob records writes the pending ones
// first: an update or a deletion of a pending blob acts on its record, a
// walk lists it, and a namespace holding one cannot be deleted.
func TestPutDeferredThenChange(t *testing.T) {
	db := openDB(t)
	ctx := namespaces.WithNamespace(context.Background(), "a")
	cs := db.Content().(content.DeferredPutter)
	put := func(s string) ocispec.Descriptor {
		t.Helper()
		data, desc := blobOf(s)
		if err := cs.PutDeferred(ctx, desc, data); err != nil {
			t.Fatal(err)
		}
		return desc
	}
	d := put("updated")
	if _, err := db.Content().Update(ctx, content.Info{Digest: d.Digest, Labels: map[string]string{"k": "v"}}, "labels.k"); err != nil {
		t.Fatalf("update of a pending blob: %v", err)
	}
	if info, err := db.Content().Info(ctx, d.Digest); err != nil || info.Labels["k"] != "v" || !recorded(t, db, "a", d.Digest) {
		t.Errorf("after the update: %+v, %v", info, err)
	}
	d = put("deleted")
	if err := db.Content().Delete(ctx, d.Digest); err != nil {
		t.Fatalf("delete of a pending blob: %v", err)
	}
	if _, err := db.Content().Info(ctx, d.Digest); !errdefs.IsNotFound(err) {
		t.Errorf("Info after the delete: %v", err)
	}
	d = put("walked")
	var walked []digest.Digest
	if err := db.Content().Walk(ctx, func(i content.Info) error { walked = append(walked, i.Digest); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(walked, d.Digest) {
		t.Errorf("walk lists %v, not the pending %s", walked, d.Digest)
	}
	put("holds the namespace")
	if err := db.Namespaces().Delete(ctx, "a"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("delete of a namespace holding a pending blob: %v, want FailedPrecondition", err)
	}
}

// Records written behind are written by themselves a moment later, and
// by the store as it closes: they survive a restart.
func TestPutDeferredWrittenLaterAndOnClose(t *testing.T) {
	dir := t.TempDir()
	db := openDBAt(t, dir)
	ctx := namespaces.WithNamespace(context.Background(), "a")
	cs := db.Content().(content.DeferredPutter)
	data, alone := blobOf("left alone")
	if err := cs.PutDeferred(ctx, alone, data); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * recordBehind); !recorded(t, db, "a", alone.Digest); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no record %s after the blob was stored", 10*recordBehind)
		}
	}
	data, closing := blobOf("closing")
	if err := cs.PutDeferred(ctx, closing, data); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "meta.db")); err != nil {
		t.Fatal(err)
	}
	db = openDBAt(t, dir)
	for _, d := range []ocispec.Descriptor{alone, closing} {
		if !recorded(t, db, "a", d.Digest) {
			t.Errorf("blob %s has no record after a restart", d.Digest)
		}
	}
}

// A blob never looks missing while its record is being written: Info
// asked during the flush sees it pending or recorded.
func TestPutDeferredInfoDuringFlush(t *testing.T) {
	db := openDB(t)
	ctx := namespaces.WithNamespace(context.Background(), "a")
	cs := db.Content().(content.DeferredPutter)
	for i := range 300 {
		data, desc := blobOf(fmt.Sprintf("flushed %d", i))
		if err := cs.PutDeferred(ctx, desc, data); err != nil {
			t.Fatal(err)
		}
		stop, missing := make(chan struct{}), make(chan error, 1)
		go func() {
			defer close(missing)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := db.Content().Info(ctx, desc.Digest); err != nil {
					missing <- err
					return
				}
			}
		}()
		if err := cs.FlushDeferred(ctx); err != nil {
			t.Fatal(err)
		}
		close(stop)
		if err := <-missing; err != nil {
			t.Fatalf("Info of blob %d during its flush: %v", i, err)
		}
	}
}

// nameSyncSpy is a local store whose PutUnsynced and SyncNames are
// counted, and whose SyncNames runs check first and fails while failing
// is set.
type nameSyncSpy struct {
	*local.Store
	unsynced, syncs atomic.Int32
	failing         atomic.Bool
	check           func()
}

func (s *nameSyncSpy) PutUnsynced(ctx context.Context, desc ocispec.Descriptor, data []byte) error {
	s.unsynced.Add(1)
	return s.Store.PutUnsynced(ctx, desc, data)
}

func (s *nameSyncSpy) SyncNames() error {
	s.syncs.Add(1)
	if s.check != nil {
		s.check()
	}
	if s.failing.Load() {
		return fmt.Errorf("sync blob directory: %w", syscall.EIO)
	}
	return s.Store.SyncNames()
}

// The blobs of PutDeferred are stored without their names synced; the
// flush syncs all the names once, before the transaction that records
// them, and records nothing when that sync fails (the blobs stay pending
// and are recorded by a later flush).
func TestPutDeferredSyncsNamesBeforeRecords(t *testing.T) {
	dir := t.TempDir()
	backend, err := local.NewStore(dir + "/content")
	if err != nil {
		t.Fatal(err)
	}
	spy := &nameSyncSpy{Store: backend}
	db, err := Open(dir+"/meta.db", spy, Options{GCDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := namespaces.WithNamespace(context.Background(), "a")
	cs := db.Content().(content.DeferredPutter)
	var descs []ocispec.Descriptor
	for i := range 3 {
		data, desc := blobOf(fmt.Sprintf("synced later %d", i))
		if err := cs.PutDeferred(ctx, desc, data); err != nil {
			t.Fatal(err)
		}
		descs = append(descs, desc)
	}
	if n, m := spy.unsynced.Load(), spy.syncs.Load(); n != 3 || m != 0 {
		t.Fatalf("3 PutDeferred made %d unsynced puts and %d syncs, want 3 and 0", n, m)
	}
	spy.check = func() {
		for _, d := range descs {
			if recorded(t, db, "a", d.Digest) {
				t.Errorf("blob %s recorded before its name was synced", d.Digest)
			}
		}
	}
	spy.failing.Store(true)
	if err := cs.FlushDeferred(ctx); !errors.Is(err, syscall.EIO) {
		t.Fatalf("flush with a failing sync: %v", err)
	}
	for _, d := range descs {
		if _, err := db.Content().Info(ctx, d.Digest); err != nil {
			t.Fatalf("blob %s after a failed flush: %v", d.Digest, err)
		}
	}
	spy.failing.Store(false)
	if err := cs.FlushDeferred(ctx); err != nil {
		t.Fatal(err)
	}
	spy.check = nil
	for _, d := range descs {
		if !recorded(t, db, "a", d.Digest) {
			t.Errorf("blob %s not recorded by the flush", d.Digest)
		}
	}
	if n := spy.syncs.Load(); n != 2 {
		t.Errorf("two flushes synced names %d times, want 2", n)
	}
}
