package metadata

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/core/snapshots/native"
	"github.com/hullrt/hull/core/snapshots/overlay"
)

// withOverlay opens a database with an overlay snapshotter ("overlayfs")
// and returns it, the backend and its namespaced store; it skips where
// overlay cannot be used.
func withOverlay(t *testing.T) (*DB, *overlay.Snapshotter, snapshots.Snapshotter) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("overlay needs root")
	}
	db := openDB(t)
	ov, err := overlay.New(filepath.Join(t.TempDir(), "overlay"))
	if err != nil {
		t.Skipf("overlay not usable here: %v", err)
	}
	t.Cleanup(func() { ov.Close() })
	db.AddSnapshotter("overlayfs", ov)
	s, _ := db.Snapshotter("overlayfs")
	return db, ov, s
}

func withNative(t *testing.T, db *DB) snapshots.Snapshotter {
	b, err := native.New(filepath.Join(t.TempDir(), "native"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	db.AddSnapshotter("native", b)
	s, err := db.Snapshotter("native")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// layer makes committed snapshot name on parent holding one file.
func layer(t *testing.T, ctx context.Context, s snapshots.Snapshotter, name, parent string) {
	t.Helper()
	ms, err := s.Prepare(ctx, "extract-"+name, parent, snapshots.WithLabels(map[string]string{LabelSnapshotRef: name}))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ms[0].Source, name), []byte(name), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, name, "extract-"+name); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotsSharedAcrossNamespaces(t *testing.T) {
	db := openDB(t)
	s := withNative(t, db)
	a := namespaces.WithNamespace(context.Background(), "a")
	b := namespaces.WithNamespace(context.Background(), "b")
	layer(t, a, s, "l1", "")
	layer(t, a, s, "l2", "l1")
	// b links a's layers instead of making them again.
	if _, err := s.Prepare(b, "x", "", snapshots.WithLabels(map[string]string{LabelSnapshotRef: "l1"})); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("prepare of a layer another namespace has: %v", err)
	}
	if _, err := s.Prepare(b, "y", "l1", snapshots.WithLabels(map[string]string{LabelSnapshotRef: "l2"})); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("prepare of the second layer: %v", err)
	}
	if info, err := s.Stat(b, "l2"); err != nil || info.Kind != snapshots.KindCommitted || info.Parent != "l1" {
		t.Fatalf("b's l2: %+v %v", info, err)
	}
	// Keys are per namespace.
	if _, err := s.Stat(b, "extract-l1"); !errdefs.IsNotFound(err) {
		t.Fatal("b sees a's keys")
	}
	if err := s.Remove(a, "l1"); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("remove of a parent: %v", err)
	}
	// Nothing references the snapshots: gc removes a's and b's records,
	// and then the backend snapshots.
	st, err := db.GarbageCollect(a)
	if err != nil {
		t.Fatal(err)
	}
	if st.SnapshotsDeleted != 2 {
		t.Fatalf("gc removed %d backend snapshots, want 2: %+v", st.SnapshotsDeleted, st)
	}
	if _, err := s.Stat(b, "l2"); !errdefs.IsNotFound(err) {
		t.Fatalf("b's l2 survived gc: %v", err)
	}
}

func TestSnapshotsKeptByReferences(t *testing.T) {
	db := openDB(t)
	s := withNative(t, db)
	ctx := namespaces.WithNamespace(context.Background(), "gc")
	layer(t, ctx, s, "base", "")
	layer(t, ctx, s, "top", "base")
	layer(t, ctx, s, "orphan", "")
	// A config blob referencing the top snapshot keeps it and its parent,
	// while the blob is itself a root.
	put(t, ctx, db, "config", map[string]string{"containerd.io/gc.root": "x", "containerd.io/gc.ref.snapshot.native": "top"})
	if _, err := db.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"base", "top"} {
		if _, err := s.Stat(ctx, k); err != nil {
			t.Errorf("%s removed though referenced: %v", k, err)
		}
	}
	if _, err := s.Stat(ctx, "orphan"); !errdefs.IsNotFound(err) {
		t.Errorf("orphan kept: %v", err)
	}
	// A snapshot with a lease survives too.
	if _, err := db.Leases().Create(ctx, "l", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prepare(leasesCtx(ctx, "l"), "work", "top"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "work"); err != nil {
		t.Fatalf("leased snapshot removed: %v", err)
	}
}

func leasesCtx(ctx context.Context, id string) context.Context {
	return leases.WithLease(ctx, id)
}

// TestSnapshotsCommitWithParent commits snapshots prepared without parent
// onto a parent (snapshots.WithParent), as a parallel unpack does: the
// record and the backend chain get the parent, a second namespace's
// commit of the same layer links the first's, and backends that cannot
// rebase refuse.
func TestSnapshotsCommitWithParent(t *testing.T) {
	db, ov, s := withOverlay(t)
	a := namespaces.WithNamespace(context.Background(), "a")
	b := namespaces.WithNamespace(context.Background(), "b")
	layer(t, a, s, "l1", "")
	detachedLayer := func(ctx context.Context) error {
		ms, err := s.Prepare(ctx, "d2", "", snapshots.WithLabels(map[string]string{LabelSnapshotRef: "l2"}))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(ms[0].Source, "l2"), []byte("l2"), 0o644); err != nil {
			return err
		}
		return s.Commit(ctx, "l2", "d2", snapshots.WithParent("l1"))
	}
	if err := detachedLayer(a); err != nil {
		t.Fatal(err)
	}
	if info, err := s.Stat(a, "l2"); err != nil || info.Parent != "l1" || info.Labels[LabelSnapshotRef] != "" {
		t.Fatalf("a's l2: %+v %v", info, err)
	}
	ms, err := s.View(a, "v", "l2")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Type != "overlay" {
		t.Fatalf("view of l2 on l1: %+v", ms)
	}
	if err := s.Remove(a, "l1"); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("remove of the new parent: %v", err)
	}
	// b links a's l1 when preparing it and a's l2 when committing it.
	if _, err := s.Prepare(b, "x", "", snapshots.WithLabels(map[string]string{LabelSnapshotRef: "l1"})); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("prepare of l1 in b: %v", err)
	}
	if err := detachedLayer(b); err != nil {
		t.Fatal(err)
	}
	if info, err := s.Stat(b, "l2"); err != nil || info.Parent != "l1" {
		t.Fatalf("b's l2: %+v %v", info, err)
	}
	var committed, active int
	ov.Walk(a, func(_ context.Context, i snapshots.Info) error {
		if i.Kind == snapshots.KindCommitted {
			committed++
		} else {
			active++
		}
		return nil
	})
	if committed != 2 || active != 1 { // the active one is a's view
		t.Fatalf("backend has %d committed and %d other snapshots, want 2 and the view", committed, active)
	}
	// WithParent is for Commit only, and onto a committed snapshot.
	if _, err := s.Prepare(a, "p", "", snapshots.WithParent("l1")); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("prepare with WithParent: %v", err)
	}
	if _, err := s.Prepare(a, "on-l1", "l1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(a, "l3", "on-l1", snapshots.WithParent("l2")); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("rebase of a snapshot that has a parent: %v", err)
	}
	// native cannot.
	n := withNative(t, db)
	if _, err := n.Prepare(a, "n", ""); err != nil {
		t.Fatal(err)
	}
	layer(t, a, n, "n1", "")
	if err := n.Commit(a, "n2", "n", snapshots.WithParent("n1")); !errdefs.IsNotImplemented(err) {
		t.Fatalf("native commit with a parent: %v", err)
	}
}

// TestSnapshotsWalkFilters checks Walk's filters take containerd's field
// values, as containerd's clients (and its snapshotter suite's Walk case)
// send them: kinds in lower case, and a parent that is present, "", on
// snapshots without one, so `parent!=""` selects those that have one.
func TestSnapshotsWalkFilters(t *testing.T) {
	db := openDB(t)
	s := withNative(t, db)
	ctx := namespaces.WithNamespace(context.Background(), "walk")
	layer(t, ctx, s, "p", "")
	for _, c := range []struct {
		view      bool
		key, from string
	}{{false, "a", "p"}, {true, "v", "p"}, {false, "np", ""}} {
		var err error
		if c.view {
			_, err = s.View(ctx, c.key, c.from)
		} else {
			_, err = s.Prepare(ctx, c.key, c.from)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		filters []string
		want    []string
	}{
		{[]string{"kind==active"}, []string{"a", "np"}},
		{[]string{"kind==view"}, []string{"v"}},
		{[]string{"kind==committed"}, []string{"p"}},
		{[]string{"kind==Active"}, nil},
		{[]string{`parent!=""`}, []string{"a", "v"}},
		{[]string{`parent==""`}, []string{"np", "p"}},
		{[]string{"parent==p"}, []string{"a", "v"}},
		{[]string{"parent"}, []string{"a", "np", "p", "v"}},
	} {
		var got []string
		if err := s.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
			got = append(got, info.Name)
			return nil
		}, tc.filters...); err != nil {
			t.Fatal(err)
		}
		sort.Strings(got)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Walk(%q) = %q, want %q", tc.filters, got, tc.want)
		}
	}
}
