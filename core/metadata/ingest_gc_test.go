package metadata

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/content/local"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/namespaces"
)

// Every ingest that holds disk space is either visible (content active) and
// abortable, or removed by gc: an unrecorded backend ingest (an abort that
// failed halfway) and a directory with only an empty .ref.tmp (a full disk)
// are removed; recorded ingests and those being written are kept.
func TestGCRemovesIngestsNobodyCanSee(t *testing.T) {
	dir := t.TempDir()
	db := openDBAt(t, dir)
	ctx := namespaces.WithNamespace(context.Background(), "ingests")

	kept, err := db.Content().Writer(ctx, content.WithRef("resumable"))
	if err != nil {
		t.Fatal(err)
	}
	kept.Write([]byte("to be resumed"))
	kept.Close()
	live, err := db.Content().Writer(ctx, content.WithRef("live"))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	live.Write([]byte("being written"))

	orphan, err := db.Backend().Writer(ctx, content.WithRef("ingests/orphan"))
	if err != nil {
		t.Fatal(err)
	}
	orphan.Write([]byte("nobody records me"))
	orphan.Close()
	tmpOnly := filepath.Join(dir, "content", "ingest", "leftover-of-a-full-disk")
	if err := os.MkdirAll(tmpOnly, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmpOnly, ".ref.tmp"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	st := gc(t, ctx, db)
	if st.IngestsDeleted != 2 {
		t.Errorf("gc removed %d ingests, want 2", st.IngestsDeleted)
	}
	if _, err := os.Stat(tmpOnly); !os.IsNotExist(err) {
		t.Errorf("ingest directory with only .ref.tmp still there: %v", err)
	}
	if _, err := db.Backend().Status(ctx, "ingests/orphan"); !errdefs.IsNotFound(err) {
		t.Errorf("unrecorded ingest still there: %v", err)
	}
	sts, err := db.Content().ListStatuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(sts) != 2 {
		t.Errorf("content active lists %v, want the resumable and the live ingest", sts)
	}
	if _, err := live.Write([]byte(", still")); err != nil {
		t.Fatal(err)
	}
	if err := live.Commit(ctx, 0, ""); err != nil {
		t.Errorf("commit of the live ingest after gc: %v", err)
	}
}

// failingWriters is a backend whose writers cannot be opened, as on a full
// disk, after leaving the start of an ingest behind.
type failingWriters struct{ *local.Store }

func (f failingWriters) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	w, err := f.Store.Writer(ctx, opts...)
	if err == nil {
		w.Close()
	}
	return nil, fmt.Errorf("open ingest: %w", syscall.ENOSPC)
}

// A writer that fails to open leaves neither a record without an ingest nor
// an ingest without a record.
func TestWriterThatFailsToOpenLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	backend, err := local.NewStore(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := Open(filepath.Join(dir, "meta.db"), failingWriters{backend}, Options{GCDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := namespaces.WithNamespace(context.Background(), "ingests")
	if _, err := db.Content().Writer(ctx, content.WithRef("never")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Writer: %v, want the backend's ENOSPC", err)
	}
	if err := db.view(ctx, func(tx *nsTx) error {
		if b := tx.bucket(bucketIngests); b != nil && b.Get([]byte("never")) != nil {
			t.Error("the ingest record stayed")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if sts, err := backend.ListStatuses(ctx); err != nil || len(sts) != 0 {
		t.Errorf("backend ingests left: %v, %v", sts, err)
	}
}

// An ingest a lease held goes with the lease (its client gave it up, or
// died and the lease expired); one no lease ever held stays until
// aborted, and one a live lease holds or a writer is at stays.
func TestGCRemovesIngestsTheirLeaseLeft(t *testing.T) {
	db := openDBAt(t, t.TempDir())
	ctx := namespaces.WithNamespace(context.Background(), "ingests")
	write := func(ctx context.Context, ref string) content.Writer {
		t.Helper()
		w, err := db.Content().Writer(ctx, content.WithRef(ref))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("partial " + ref)); err != nil {
			t.Fatal(err)
		}
		return w
	}
	for _, id := range []string{"given-up", "alive"} {
		if _, err := db.Leases().Create(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
	}
	write(leases.WithLease(ctx, "given-up"), "of-given-up").Close()
	write(leases.WithLease(ctx, "alive"), "of-alive").Close()
	write(ctx, "unleased").Close()
	busy := write(leases.WithLease(ctx, "given-up"), "busy")
	defer busy.Close()
	if err := db.Leases().Delete(ctx, "given-up", false); err != nil {
		t.Fatal(err)
	}

	gc(t, ctx, db)
	sts, err := db.Content().ListStatuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, st := range sts {
		refs = append(refs, st.Ref)
	}
	slices.Sort(refs)
	if want := []string{"busy", "of-alive", "unleased"}; !slices.Equal(refs, want) {
		t.Errorf("ingests after gc: %v; want %v", refs, want)
	}
	bsts, err := db.Backend().ListStatuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range bsts {
		if st.Ref == backendRef("ingests", "of-given-up") {
			t.Errorf("the backend still holds the ingest of the deleted lease")
		}
	}
}
