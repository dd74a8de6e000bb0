package metadata

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/mount"
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

// flakyBackend is a backend snapshotter that refuses to make the
// snapshots whose backend key ends in fail, in a batch or alone.
type flakyBackend struct {
	snapshots.Snapshotter
	fail    string
	batches int
}

func (f *flakyBackend) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	if strings.HasSuffix(key, "/"+f.fail) {
		return nil, fmt.Errorf("backend refuses %s: %w", key, errdefs.ErrUnavailable)
	}
	return f.Snapshotter.Prepare(ctx, key, parent, opts...)
}

func (f *flakyBackend) PrepareMany(ctx context.Context, reqs []snapshots.PrepareRequest) []snapshots.PrepareResult {
	f.batches++
	return snapshots.PrepareEach(ctx, f, reqs)
}

// PrepareMany records a batch of snapshots in one go as each Prepare
// would: a layer another namespace has is linked (AlreadyExists) and may
// be the parent of a later request of the same batch; every snapshot
// made is in the context's lease; requests refused by the records or by
// the backend get their own errors and leave no record; a backend with
// PrepareMany gets the batch, one without gets one Prepare each.
func TestSnapshotsPrepareMany(t *testing.T) {
	db, ov, _ := withOverlay(t)
	flaky := &flakyBackend{Snapshotter: ov, fail: "k4"}
	db.AddSnapshotter("flaky", flaky)
	for _, name := range []string{"flaky", "native"} {
		t.Run(name, func(t *testing.T) {
			var s snapshots.Snapshotter
			if name == "native" {
				s = withNative(t, db)
			} else {
				s, _ = db.Snapshotter(name)
			}
			a := namespaces.WithNamespace(context.Background(), "a-"+name)
			layer(t, a, s, "l1", "")
			b := namespaces.WithNamespace(context.Background(), "b-"+name)
			if _, err := db.Leases().Create(b, "pull", nil); err != nil {
				t.Fatal(err)
			}
			b = leasesCtx(b, "pull")
			ref := func(name string) []snapshots.Opt {
				return []snapshots.Opt{snapshots.WithLabels(map[string]string{LabelSnapshotRef: name})}
			}
			mp := s.(snapshots.ManyPreparer)
			res := mp.PrepareMany(b, []snapshots.PrepareRequest{
				{Key: "x", Opts: ref("l1")},
				{Key: "k1"},
				{Key: "k2", Parent: "l1"},
			})
			if !errdefs.IsAlreadyExists(res[0].Err) {
				t.Errorf("prepare of a layer another namespace has: %v, want AlreadyExists", res[0].Err)
			}
			for i, key := range []string{"", "k1", "k2"} {
				if i == 0 {
					continue
				}
				if res[i].Err != nil {
					t.Fatalf("prepare %s: %v", key, res[i].Err)
				}
				if err := os.WriteFile(filepath.Join(res[i].Mounts[0].Source, key), []byte(key), 0o644); err != nil && res[i].Mounts[0].Type == "bind" {
					t.Errorf("write into %s: %v", key, err)
				}
			}
			if info, err := s.Stat(b, "l1"); err != nil || info.Kind != snapshots.KindCommitted {
				t.Errorf("linked l1: %+v, %v", info, err)
			}
			if info, err := s.Stat(b, "k2"); err != nil || info.Parent != "l1" || info.Kind != snapshots.KindActive {
				t.Errorf("k2: %+v, %v", info, err)
			}
			res = mp.PrepareMany(b, []snapshots.PrepareRequest{{Key: "k1"}, {Key: "k3", Parent: "nosuch"}, {Key: "k4"}, {Key: "k5"}})
			if !errdefs.IsAlreadyExists(res[0].Err) {
				t.Errorf("prepare of a taken key: %v, want AlreadyExists", res[0].Err)
			}
			if !errdefs.IsNotFound(res[1].Err) {
				t.Errorf("prepare on a missing parent: %v, want NotFound", res[1].Err)
			}
			if name == "flaky" && !errdefs.IsUnavailable(res[2].Err) {
				t.Errorf("prepare the backend refuses: %v, want Unavailable", res[2].Err)
			}
			if res[3].Err != nil {
				t.Errorf("prepare k5 beside refused requests: %v", res[3].Err)
			}
			want := []string{"k1", "k2", "k5", "l1"}
			if name == "native" {
				want = []string{"k1", "k2", "k4", "k5", "l1"}
			}
			var got []string
			s.Walk(b, func(_ context.Context, i snapshots.Info) error {
				got = append(got, i.Name)
				return nil
			})
			sort.Strings(got)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("snapshots after the batches: %v, want %v", got, want)
			}
			rs, err := db.Leases().ListResources(b, "pull")
			if err != nil {
				t.Fatal(err)
			}
			inLease := map[string]bool{}
			for _, r := range rs {
				inLease[r.ID] = true
			}
			for _, key := range want {
				if !inLease[key] {
					t.Errorf("snapshot %s is not in the pull's lease: %v", key, rs)
				}
			}
		})
	}
	// The second batch has requests refused by the records: it goes one
	// by one, and the backend gets the first batch only.
	if flaky.batches != 1 {
		t.Errorf("the backend got %d batches, want 1", flaky.batches)
	}
}
