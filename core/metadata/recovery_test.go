package metadata

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/core/snapshots/native"
)

// These tests build, by hand, the state each crash point of the metadata
// store leaves (see internal/crashpoint), reopen the store as a restarted
// hulld would, and check that nothing half done is visible and that the
// leftovers are collected and a new attempt succeeds. The chaos tests kill
// a real hulld at the same points.

// restart opens the database, content store and a native snapshotter kept
// in dir.
func restart(t *testing.T, dir string) (*DB, snapshots.Snapshotter, snapshots.Snapshotter) {
	t.Helper()
	db := openDBAt(t, dir)
	b, err := native.New(filepath.Join(dir, "native"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	db.AddSnapshotter("native", b)
	s, err := db.Snapshotter("native")
	if err != nil {
		t.Fatal(err)
	}
	return db, s, b
}

func backendSnapshots(t *testing.T, ctx context.Context, b snapshots.Snapshotter) []string {
	t.Helper()
	var names []string
	if err := b.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		names = append(names, info.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return names
}

// ContentCommit: the blob is in blobs/, the namespace has no record of it,
// and the ingest record is left without its ingest.
func TestRecoveryFromCrashAtContentCommit(t *testing.T) {
	dir := t.TempDir()
	ctx := namespaces.WithNamespace(context.Background(), "crash")
	db, _, b := restart(t, dir)
	if _, err := db.Leases().Create(ctx, "pull", nil); err != nil {
		t.Fatal(err)
	}
	lctx := leases.WithLease(ctx, "pull")
	data := []byte("a layer that was committed when hulld died")
	desc := ocispec.Descriptor{Digest: digest.FromBytes(data), Size: int64(len(data))}
	w, err := db.Content().Writer(lctx, content.WithRef("layer"), content.WithDescriptor(desc))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	// What Commit does before the crash point: the backend commit only.
	if err := w.(*nsWriter).Writer.Commit(lctx, desc.Size, desc.Digest); err != nil {
		t.Fatal(err)
	}
	db.Close()
	b.Close()

	db, _, _ = restart(t, dir)
	if exists(ctx, db, desc.Digest) {
		t.Fatal("the namespace sees a blob it never recorded")
	}
	if sts, err := db.Content().ListStatuses(ctx); err != nil || len(sts) != 0 {
		t.Fatalf("active ingests after the crash: %v, %v", sts, err)
	}
	st := gc(t, ctx, db)
	if st.BlobsDeleted != 1 || st.IngestsDeleted != 1 {
		t.Errorf("gc stats %+v: want the unrecorded blob and the lost ingest's record removed", st)
	}
	if _, err := db.Backend().Info(ctx, desc.Digest); !errdefs.IsNotFound(err) {
		t.Errorf("unrecorded blob still on disk: %v", err)
	}
	// The lost ingest's record is gone too: it would keep the namespace
	// from being deleted.
	if err := db.view(ctx, func(tx *nsTx) error {
		if b := tx.bucket(bucketIngests); b != nil && b.Stats().KeyN != 0 {
			t.Errorf("%d ingest records left", b.Stats().KeyN)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The pull, run again, completes and keeps its blob.
	put(t, lctx, db, string(data), nil)
	gc(t, ctx, db)
	if !exists(ctx, db, desc.Digest) {
		t.Error("blob of the repeated pull collected while its lease holds it")
	}
}

// GCSweep: the collector committed the deletion of records and died before
// removing the blob and snapshot they named.
func TestRecoveryFromCrashAtGCSweep(t *testing.T) {
	dir := t.TempDir()
	ctx := namespaces.WithNamespace(context.Background(), "crash")
	db, _, b := restart(t, dir)
	bw, err := db.Backend().Writer(ctx, content.WithRef("crash/swept"))
	if err != nil {
		t.Fatal(err)
	}
	bw.Write([]byte("swept"))
	if err := bw.Commit(ctx, 0, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Prepare(ctx, "crash/1/extract", ""); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(ctx, "crash/c1/layer", "crash/1/extract"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	b.Close()

	db, _, b = restart(t, dir)
	st := gc(t, ctx, db)
	if st.BlobsDeleted != 1 || st.SnapshotsDeleted != 1 {
		t.Errorf("gc stats %+v: want the swept blob and snapshot removed", st)
	}
	if _, err := db.Backend().Info(ctx, digest.FromString("swept")); !errdefs.IsNotFound(err) {
		t.Errorf("swept blob still on disk: %v", err)
	}
	if left := backendSnapshots(t, ctx, b); len(left) != 0 {
		t.Errorf("swept snapshots still in the backend: %v", left)
	}
}

// SnapshotCommit: the backend committed the layer, the database still
// records the active snapshot, whose backend snapshot the commit consumed.
func TestRecoveryFromCrashAtSnapshotCommit(t *testing.T) {
	dir := t.TempDir()
	ctx := namespaces.WithNamespace(context.Background(), "crash")
	db, s, b := restart(t, dir)
	if _, err := db.Leases().Create(ctx, "unpack", map[string]string{leases.IdleExpireLabel: "1m"}); err != nil {
		t.Fatal(err)
	}
	lctx := leases.WithLease(ctx, "unpack")
	ref := snapshots.WithLabels(map[string]string{LabelSnapshotRef: "chain"})
	ms, err := s.Prepare(lctx, "extract-1", "", ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ms[0].Source, "f"), []byte("layer"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := s.(*snapshotStore).backendKey(lctx, "extract-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(ctx, "crash/c1/chain", r.Backend); err != nil {
		t.Fatal(err)
	}
	db.Close()
	b.Close()

	db, s, b = restart(t, dir)
	clock := withFakeClock(db)
	if _, err := s.Stat(ctx, "chain"); !errdefs.IsNotFound(err) {
		t.Fatalf("the layer is visible although its commit was never recorded: %v", err)
	}
	st := gc(t, ctx, db)
	if st.SnapshotsDeleted != 1 {
		t.Errorf("gc stats %+v: want the unrecorded committed snapshot removed", st)
	}
	// The unpack, run again under its lease, makes the layer.
	if _, err := s.Prepare(lctx, "extract-2", "", ref); err != nil {
		t.Fatalf("prepare again after the crash: %v", err)
	}
	if err := s.Commit(lctx, "chain", "extract-2"); err != nil {
		t.Fatalf("commit again after the crash: %v", err)
	}
	// The stale active record goes with its lease once the client is gone.
	clock.advance(2 * time.Minute)
	gc(t, ctx, db)
	if _, err := s.Stat(ctx, "extract-1"); !errdefs.IsNotFound(err) {
		t.Errorf("stale active snapshot kept after its lease went idle: %v", err)
	}
	if left := backendSnapshots(t, ctx, b); len(left) != 0 {
		t.Errorf("backend snapshots left once nothing holds them: %v", left)
	}
}

// UnpackMid: a layer half written into an active snapshot. The snapshot is
// not committed, so no image layer is visible; it and its disk go once the
// unpack's lease is idle.
func TestRecoveryFromCrashInTheMiddleOfAnUnpack(t *testing.T) {
	dir := t.TempDir()
	ctx := namespaces.WithNamespace(context.Background(), "crash")
	db, s, b := restart(t, dir)
	if _, err := db.Leases().Create(ctx, "unpack", map[string]string{leases.IdleExpireLabel: "3m"}); err != nil {
		t.Fatal(err)
	}
	lctx := leases.WithLease(ctx, "unpack")
	ms, err := s.Prepare(lctx, "extract-1", "", snapshots.WithLabels(map[string]string{LabelSnapshotRef: "chain"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ms[0].Source, "half"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	db.Close()
	b.Close()

	db, s, b = restart(t, dir)
	clock := withFakeClock(db)
	if _, err := s.Stat(ctx, "chain"); !errdefs.IsNotFound(err) {
		t.Fatalf("a half-unpacked layer is visible as committed: %v", err)
	}
	clock.advance(2 * time.Minute)
	gc(t, ctx, db)
	if len(backendSnapshots(t, ctx, b)) != 1 {
		t.Fatal("the interrupted unpack's snapshot was removed while its lease may still be in use")
	}
	clock.advance(2 * time.Minute)
	gc(t, ctx, db)
	if _, err := s.Stat(ctx, "extract-1"); !errdefs.IsNotFound(err) {
		t.Errorf("interrupted unpack's snapshot kept after its lease went idle: %v", err)
	}
	if left := backendSnapshots(t, ctx, b); len(left) != 0 {
		t.Errorf("backend snapshots of the interrupted unpack left: %v", left)
	}
}
