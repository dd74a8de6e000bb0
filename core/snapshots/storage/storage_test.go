package storage

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/snapshots"
)

func newStore(t *testing.T) *MetaStore {
	t.Helper()
	ms, err := NewMetaStore(filepath.Join(t.TempDir(), "metadata.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	return ms
}

func update(t *testing.T, ms *MetaStore, fn func(*Tx) error) error {
	t.Helper()
	return ms.Update(context.Background(), fn)
}

func mustUpdate(t *testing.T, ms *MetaStore, fn func(*Tx) error) {
	t.Helper()
	if err := update(t, ms, fn); err != nil {
		t.Fatal(err)
	}
}

// chain makes committed snapshots c0 <- c1 <- ... <- c{n-1}.
func chain(t *testing.T, ms *MetaStore, n int) []uint64 {
	t.Helper()
	var ids []uint64
	mustUpdate(t, ms, func(tx *Tx) error {
		parent := ""
		for i := range n {
			key := "active-" + string(rune('a'+i))
			name := "c" + string(rune('0'+i))
			s, err := tx.CreateSnapshot(snapshots.KindActive, key, parent)
			if err != nil {
				return err
			}
			if want := slices.Clone(ids); !slices.Equal(s.ParentIDs, reverse(want)) {
				t.Errorf("%s: ParentIDs = %v, want %v", key, s.ParentIDs, reverse(want))
			}
			id, err := tx.CommitActive(key, name, snapshots.Usage{Inodes: int64(i + 1), Size: 4096})
			if err != nil {
				return err
			}
			if id != s.ID {
				t.Errorf("commit changed the id from %d to %d", s.ID, id)
			}
			ids = append(ids, id)
			parent = name
		}
		return nil
	})
	return ids
}

func reverse(s []uint64) []uint64 {
	slices.Reverse(s)
	return s
}

func TestCreateCommitChain(t *testing.T) {
	ms := newStore(t)
	ids := chain(t, ms, 3)
	if !(ids[0] < ids[1] && ids[1] < ids[2]) {
		t.Errorf("ids not increasing: %v", ids)
	}
	mustUpdate(t, ms, func(tx *Tx) error {
		s, err := tx.CreateSnapshot(snapshots.KindView, "v", "c2", snapshots.WithLabels(map[string]string{"a": "b"}))
		if err != nil {
			return err
		}
		if want := []uint64{ids[2], ids[1], ids[0]}; !reflect.DeepEqual(s.ParentIDs, want) {
			t.Errorf("ParentIDs = %v, want %v", s.ParentIDs, want)
		}
		got, err := tx.GetSnapshot("v")
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(got, s) {
			t.Errorf("GetSnapshot = %+v, want %+v", got, s)
		}
		id, info, _, err := tx.GetInfo("v")
		if err != nil {
			return err
		}
		if id != s.ID || info.Kind != snapshots.KindView || info.Parent != "c2" || info.Name != "v" || info.Labels["a"] != "b" {
			t.Errorf("GetInfo = %d %+v", id, info)
		}
		_, info, u, err := tx.GetInfo("c1")
		if err != nil {
			return err
		}
		if info.Kind != snapshots.KindCommitted || info.Parent != "c0" || u != (snapshots.Usage{Inodes: 2, Size: 4096}) {
			t.Errorf("GetInfo(c1) = %+v %+v", info, u)
		}
		if _, err := tx.GetSnapshot("c1"); !errdefs.IsFailedPrecondition(err) {
			t.Errorf("GetSnapshot(committed) = %v, want FailedPrecondition", err)
		}
		m, err := tx.IDMap()
		if err != nil {
			return err
		}
		want := map[uint64]string{ids[0]: "c0", ids[1]: "c1", ids[2]: "c2", s.ID: "v"}
		if !reflect.DeepEqual(m, want) {
			t.Errorf("IDMap = %v, want %v", m, want)
		}
		return nil
	})
}

func TestErrors(t *testing.T) {
	ms := newStore(t)
	chain(t, ms, 1)
	mustUpdate(t, ms, func(tx *Tx) error {
		_, err := tx.CreateSnapshot(snapshots.KindActive, "a", "c0")
		return err
	})
	for _, tc := range []struct {
		name  string
		fn    func(*Tx) error
		check func(error) bool
		text  string
	}{
		{"empty key", func(tx *Tx) error { _, err := tx.CreateSnapshot(snapshots.KindActive, "", ""); return err }, errdefs.IsInvalidArgument, "empty"},
		{"bad kind", func(tx *Tx) error { _, err := tx.CreateSnapshot(snapshots.KindCommitted, "x", ""); return err }, errdefs.IsInvalidArgument, `"x"`},
		{"exists", func(tx *Tx) error { _, err := tx.CreateSnapshot(snapshots.KindActive, "a", ""); return err }, errdefs.IsAlreadyExists, `"a"`},
		{"missing parent", func(tx *Tx) error { _, err := tx.CreateSnapshot(snapshots.KindActive, "x", "nope"); return err }, errdefs.IsNotFound, `"nope"`},
		{"active parent", func(tx *Tx) error { _, err := tx.CreateSnapshot(snapshots.KindActive, "x", "a"); return err }, errdefs.IsInvalidArgument, `"a"`},
		{"bad label", func(tx *Tx) error {
			_, err := tx.CreateSnapshot(snapshots.KindActive, "x", "", snapshots.WithLabels(map[string]string{"k": strings.Repeat("v", 5000)}))
			return err
		}, errdefs.IsInvalidArgument, `"k"`},
		{"commit missing", func(tx *Tx) error { _, err := tx.CommitActive("nope", "n", snapshots.Usage{}); return err }, errdefs.IsNotFound, `"nope"`},
		{"commit committed", func(tx *Tx) error { _, err := tx.CommitActive("c0", "n", snapshots.Usage{}); return err }, errdefs.IsFailedPrecondition, `"c0"`},
		{"commit to existing", func(tx *Tx) error { _, err := tx.CommitActive("a", "c0", snapshots.Usage{}); return err }, errdefs.IsAlreadyExists, `"c0"`},
		{"commit empty name", func(tx *Tx) error { _, err := tx.CommitActive("a", "", snapshots.Usage{}); return err }, errdefs.IsInvalidArgument, "empty"},
		{"remove missing", func(tx *Tx) error { _, _, err := tx.Remove("nope"); return err }, errdefs.IsNotFound, `"nope"`},
		{"remove parent", func(tx *Tx) error { _, _, err := tx.Remove("c0"); return err }, errdefs.IsFailedPrecondition, `cannot remove snapshot "c0": it has children`},
		{"update missing", func(tx *Tx) error { _, err := tx.UpdateInfo(snapshots.Info{Name: "nope"}); return err }, errdefs.IsNotFound, `"nope"`},
		{"update bad field", func(tx *Tx) error { _, err := tx.UpdateInfo(snapshots.Info{Name: "a"}, "parent"); return err }, errdefs.IsInvalidArgument, `"parent"`},
		{"get empty", func(tx *Tx) error { _, _, _, err := tx.GetInfo(""); return err }, errdefs.IsInvalidArgument, "empty"},
		{"bad filter", func(tx *Tx) error { return tx.WalkInfo(func(uint64, snapshots.Info) error { return nil }, "name==") }, errdefs.IsInvalidArgument, "filter"},
	} {
		err := update(t, ms, tc.fn)
		if !tc.check(err) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: err = %v, want the right kind, mentioning %s", tc.name, err, tc.text)
		}
	}
}

func TestRemoveAndChildren(t *testing.T) {
	ms := newStore(t)
	ids := chain(t, ms, 2)
	mustUpdate(t, ms, func(tx *Tx) error {
		if _, err := tx.CreateSnapshot(snapshots.KindActive, "a", "c1"); err != nil {
			return err
		}
		if _, _, err := tx.Remove("c1"); !errdefs.IsFailedPrecondition(err) {
			t.Errorf("remove c1 with an active child: %v", err)
		}
		id, kind, err := tx.Remove("a")
		if err != nil || kind != snapshots.KindActive || id <= ids[1] {
			t.Errorf("remove a = %d %v %v", id, kind, err)
		}
		if id, kind, err := tx.Remove("c1"); err != nil || kind != snapshots.KindCommitted || id != ids[1] {
			t.Errorf("remove c1 = %d %v %v", id, kind, err)
		}
		if _, _, err := tx.Remove("c0"); err != nil {
			t.Errorf("remove c0: %v", err)
		}
		return nil
	})
	// IDs are never reused.
	mustUpdate(t, ms, func(tx *Tx) error {
		s, err := tx.CreateSnapshot(snapshots.KindActive, "b", "")
		if err == nil && s.ID <= ids[1]+1 {
			t.Errorf("id %d reused", s.ID)
		}
		return err
	})
}

func TestCommitLabelsAndIndex(t *testing.T) {
	ms := newStore(t)
	chain(t, ms, 1)
	mustUpdate(t, ms, func(tx *Tx) error {
		if _, err := tx.CreateSnapshot(snapshots.KindActive, "a", "c0", snapshots.WithLabels(map[string]string{"old": "1"})); err != nil {
			return err
		}
		if _, err := tx.CommitActive("a", "n", snapshots.Usage{}, snapshots.WithLabels(map[string]string{"new": "2"})); err != nil {
			return err
		}
		_, info, _, err := tx.GetInfo("n")
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(info.Labels, map[string]string{"new": "2"}) {
			t.Errorf("labels after commit = %v", info.Labels)
		}
		if _, _, _, err := tx.GetInfo("a"); !errdefs.IsNotFound(err) {
			t.Errorf("active key still there: %v", err)
		}
		// The index follows the rename: c0 has child n, then none.
		if _, _, err := tx.Remove("c0"); !errdefs.IsFailedPrecondition(err) {
			t.Errorf("remove c0: %v", err)
		}
		if _, _, err := tx.Remove("n"); err != nil {
			return err
		}
		_, _, err = tx.Remove("c0")
		return err
	})
}

func TestUpdateInfo(t *testing.T) {
	ms := newStore(t)
	mustUpdate(t, ms, func(tx *Tx) error {
		_, err := tx.CreateSnapshot(snapshots.KindActive, "a", "", snapshots.WithLabels(map[string]string{"x": "1", "y": "2"}))
		return err
	})
	step := func(info snapshots.Info, paths []string, want map[string]string) {
		t.Helper()
		mustUpdate(t, ms, func(tx *Tx) error {
			got, err := tx.UpdateInfo(info, paths...)
			if err != nil {
				return err
			}
			if !reflect.DeepEqual(got.Labels, want) {
				t.Errorf("UpdateInfo(%v, %q) labels = %v, want %v", info.Labels, paths, got.Labels, want)
			}
			if got.Updated.Before(got.Created) || got.Kind != snapshots.KindActive {
				t.Errorf("info = %+v", got)
			}
			return nil
		})
	}
	step(snapshots.Info{Name: "a", Labels: map[string]string{"x": "10", "z": "3"}}, []string{"labels.x"}, map[string]string{"x": "10", "y": "2"})
	step(snapshots.Info{Name: "a"}, []string{"labels.y"}, map[string]string{"x": "10"})
	step(snapshots.Info{Name: "a", Labels: map[string]string{"z": "3", "e": ""}}, []string{"labels"}, map[string]string{"z": "3"})
	step(snapshots.Info{Name: "a", Labels: map[string]string{"w": "4"}}, nil, map[string]string{"w": "4"})
	// Dotted keys.
	step(snapshots.Info{Name: "a", Labels: map[string]string{"containerd.io/gc.root": "x"}}, []string{"labels.containerd.io/gc.root"}, map[string]string{"w": "4", "containerd.io/gc.root": "x"})
	err := update(t, ms, func(tx *Tx) error {
		_, err := tx.UpdateInfo(snapshots.Info{Name: "a", Labels: map[string]string{"big": strings.Repeat("v", 5000)}}, "labels.big")
		return err
	})
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("oversized label: %v", err)
	}
}

func TestWalkInfo(t *testing.T) {
	ms := newStore(t)
	chain(t, ms, 2)
	mustUpdate(t, ms, func(tx *Tx) error {
		if _, err := tx.CreateSnapshot(snapshots.KindActive, "a", "c1", snapshots.WithLabels(map[string]string{"containerd.io/snapshot.ref": "r1"})); err != nil {
			return err
		}
		_, err := tx.CreateSnapshot(snapshots.KindView, "v", "c0")
		return err
	})
	walk := func(fs ...string) []string {
		t.Helper()
		var names []string
		if err := ms.View(context.Background(), func(tx *Tx) error {
			return tx.WalkInfo(func(_ uint64, i snapshots.Info) error { names = append(names, i.Name); return nil }, fs...)
		}); err != nil {
			t.Fatal(err)
		}
		return names
	}
	for _, tc := range []struct {
		filters []string
		want    []string
	}{
		{nil, []string{"a", "c0", "c1", "v"}},
		{[]string{"kind==committed"}, []string{"c0", "c1"}},
		{[]string{"kind==active", "kind==view"}, []string{"a", "v"}},
		{[]string{"parent==c0"}, []string{"c1", "v"}},
		{[]string{`labels."containerd.io/snapshot.ref"==r1`}, []string{"a"}},
		{[]string{`labels."containerd.io/snapshot.ref"`}, []string{"a"}},
		{[]string{"name~=^c,parent!=c0"}, []string{"c0"}},
	} {
		if got := walk(tc.filters...); !slices.Equal(got, tc.want) {
			t.Errorf("walk %q = %v, want %v", tc.filters, got, tc.want)
		}
	}
}

func TestPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metadata.db")
	ms, err := NewMetaStore(path)
	if err != nil {
		t.Fatal(err)
	}
	ids := chain(t, ms, 2)
	ms.Close()
	ms, err = NewMetaStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	mustUpdate(t, ms, func(tx *Tx) error {
		s, err := tx.CreateSnapshot(snapshots.KindActive, "a", "c1")
		if err != nil {
			return err
		}
		if s.ID <= ids[1] || !slices.Equal(s.ParentIDs, []uint64{ids[1], ids[0]}) {
			t.Errorf("after reopening: %+v", s)
		}
		return nil
	})
}

func TestCleanupDirs(t *testing.T) {
	ms := newStore(t)
	root := t.TempDir()
	dir, trash := filepath.Join(root, "snapshots"), filepath.Join(root, "trash")
	ids := chain(t, ms, 1)
	live := filepath.Join(dir, "1")
	if ids[0] != 1 {
		t.Fatalf("first id %d", ids[0])
	}
	for _, p := range []string{live + "/fs", dir + "/2/fs", dir + "/new-123/fs", dir + "/keep-me", dir + "/01", trash + "/old-1/x"} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	err := ms.CleanupDirs(context.Background(), dir, trash, func(name string) bool { return name == "keep-me" })
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if want := []string{"1", "keep-me"}; !slices.Equal(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
	if entries, _ := os.ReadDir(trash); len(entries) != 0 {
		t.Errorf("trash not emptied: %v", entries)
	}
}

func TestDiskUsage(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), make([]byte, 10000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "f"), filepath.Join(dir, "g")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	u, err := DiskUsage(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	// The root, f (linked twice) and d.
	if u.Inodes != 3 || u.Size < 10000 {
		t.Errorf("usage = %+v", u)
	}
}

// TestCommitWithParent rebases a snapshot prepared without parent onto a
// committed one at commit: the record, the chain and the children index
// follow.
func TestCommitWithParent(t *testing.T) {
	ms := newStore(t)
	ids := chain(t, ms, 2) // c0 <- c1
	mustUpdate(t, ms, func(tx *Tx) error {
		if _, err := tx.CreateSnapshot(snapshots.KindActive, "p", "", snapshots.WithParent("c1")); !errdefs.IsInvalidArgument(err) {
			t.Errorf("create with WithParent: %v", err)
		}
		if _, err := tx.CreateSnapshot(snapshots.KindActive, "a", ""); err != nil {
			return err
		}
		if _, err := tx.CreateSnapshot(snapshots.KindActive, "b", "c0"); err != nil {
			return err
		}
		if _, err := tx.CommitActive("b", "nb", snapshots.Usage{}, snapshots.WithParent("c1")); !errdefs.IsFailedPrecondition(err) {
			t.Errorf("rebase of a snapshot with a parent: %v", err)
		}
		if _, err := tx.CommitActive("a", "na", snapshots.Usage{}, snapshots.WithParent("b")); !errdefs.IsInvalidArgument(err) {
			t.Errorf("rebase onto an active snapshot: %v", err)
		}
		if _, err := tx.CommitActive("a", "na", snapshots.Usage{}, snapshots.WithParent("nothing")); !errdefs.IsNotFound(err) {
			t.Errorf("rebase onto nothing: %v", err)
		}
		id, err := tx.CommitActive("a", "n", snapshots.Usage{}, snapshots.WithParent("c1"))
		if err != nil {
			return err
		}
		// A child of n mounts n, c1 and c0.
		s, err := tx.CreateSnapshot(snapshots.KindView, "v", "n")
		if err != nil {
			return err
		}
		if want := append([]uint64{id}, reverse(slices.Clone(ids))...); !slices.Equal(s.ParentIDs, want) {
			t.Errorf("view of the rebased snapshot: ParentIDs %v, want %v", s.ParentIDs, want)
		}
		if _, info, _, err := tx.GetInfo("n"); err != nil || info.Parent != "c1" {
			t.Errorf("info %+v %v", info, err)
		}
		if _, _, err := tx.Remove("c1"); !errdefs.IsFailedPrecondition(err) {
			t.Errorf("remove of the new parent: %v", err)
		}
		return nil
	})
}

// activeWithFiles makes active snapshot key with a directory, dirOf its id,
// holding n files of size bytes, and returns the id.
func activeWithFiles(t *testing.T, ms *MetaStore, key string, dirOf func(uint64) string, n, size int) uint64 {
	t.Helper()
	var id uint64
	mustUpdate(t, ms, func(tx *Tx) error {
		s, err := tx.CreateSnapshot(snapshots.KindActive, key, "")
		id = s.ID
		return err
	})
	if err := os.MkdirAll(dirOf(id), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := os.WriteFile(filepath.Join(dirOf(id), strconv.Itoa(i)), make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

// Commit returns before the snapshot is measured; the measurement lands on
// the record in the background, and Usage measures on demand before it has.
func TestCommitMeasuresInTheBackground(t *testing.T) {
	ms := newStore(t)
	ctx := context.Background()
	root := t.TempDir()
	dirOf := func(id uint64) string { return filepath.Join(root, strconv.FormatUint(id, 10)) }
	prepare := func(key string) uint64 { return activeWithFiles(t, ms, key, dirOf, 3, 8192) }
	want := func(id uint64) snapshots.Usage {
		u, err := DiskUsage(ctx, dirOf(id))
		if err != nil || u.Inodes != 4 || u.Size < 3*8192 {
			t.Fatalf("DiskUsage of the test directory: %+v %v", u, err)
		}
		return u
	}

	// Asked at once: measured on demand, and the same figure as a walk.
	id := prepare("a")
	if err := ms.Commit(ctx, "c", "a", dirOf); err != nil {
		t.Fatal(err)
	}
	if u, err := ms.Usage(ctx, "c", dirOf); err != nil || u != want(id) {
		t.Fatalf("usage of c right after commit: %+v %v, want %+v", u, err, want(id))
	}

	// Not asked: the record gets its usage anyway.
	id2 := prepare("b")
	if err := ms.Commit(ctx, "d", "b", dirOf); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var r *record
		mustUpdate(t, ms, func(tx *Tx) error {
			var err error
			r, err = tx.get("d")
			return err
		})
		if !r.Unmeasured {
			if (snapshots.Usage{Inodes: r.Inodes, Size: r.Size}) != want(id2) {
				t.Fatalf("background measurement of d: %+v, want %+v", r, want(id2))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("d was never measured in the background")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A snapshot removed before its turn is skipped without harm.
	prepare("e")
	if err := ms.Commit(ctx, "f", "e", dirOf); err != nil {
		t.Fatal(err)
	}
	if err := ms.RemoveSnapshot(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	if _, err := ms.Usage(ctx, "f", dirOf); !errdefs.IsNotFound(err) {
		t.Fatalf("usage of a removed snapshot: %v", err)
	}
}

// CommitChain stacks each link on the one before, the first on the parent
// it is given, in one transaction; a link that fails stops the chain there,
// with the links before it committed and the ones after it untouched.
func TestCommitChain(t *testing.T) {
	ms := newStore(t)
	ctx := context.Background()
	ids := chain(t, ms, 1) // c0
	var active []uint64
	mustUpdate(t, ms, func(tx *Tx) error {
		for _, k := range []string{"a", "b", "c", "d", "e"} {
			s, err := tx.CreateSnapshot(snapshots.KindActive, k, "")
			if err != nil {
				return err
			}
			active = append(active, s.ID)
		}
		return nil
	})
	empty := t.TempDir()
	dirOf := func(uint64) string { return empty }
	links := []snapshots.CommitLink{
		{Name: "na", Key: "a", Opts: []snapshots.Opt{snapshots.WithLabels(map[string]string{"l": "a"})}},
		{Name: "nb", Key: "b"},
		{Name: "nc", Key: "c"},
	}
	if n, err := ms.CommitChain(ctx, "c0", links, dirOf); n != 3 || err != nil {
		t.Fatalf("CommitChain = %d, %v; want 3, nil", n, err)
	}
	mustUpdate(t, ms, func(tx *Tx) error {
		s, err := tx.CreateSnapshot(snapshots.KindView, "v", "nc")
		if err != nil {
			return err
		}
		if want := []uint64{active[2], active[1], active[0], ids[0]}; !slices.Equal(s.ParentIDs, want) {
			t.Errorf("view of the chain's top: ParentIDs %v, want %v", s.ParentIDs, want)
		}
		for name, parent := range map[string]string{"na": "c0", "nb": "na", "nc": "nb"} {
			if _, info, _, err := tx.GetInfo(name); err != nil || info.Parent != parent || info.Kind != snapshots.KindCommitted {
				t.Errorf("%s: %+v, %v; want committed on %s", name, info, err, parent)
			}
		}
		if _, info, _, _ := tx.GetInfo("na"); info.Labels["l"] != "a" {
			t.Errorf("na's labels: %v", info.Labels)
		}
		return nil
	})

	// "nb" exists: the second link fails, the first is committed, the
	// third is still active.
	n, err := ms.CommitChain(ctx, "nc", []snapshots.CommitLink{{Name: "nd", Key: "d"}, {Name: "nb", Key: "e"}, {Name: "nf", Key: "f"}}, dirOf)
	if n != 1 || !errdefs.IsAlreadyExists(err) || !strings.Contains(err.Error(), `"nb"`) {
		t.Fatalf("chain whose second link exists: %d, %v; want 1 and AlreadyExists naming nb", n, err)
	}
	mustUpdate(t, ms, func(tx *Tx) error {
		if _, info, _, err := tx.GetInfo("nd"); err != nil || info.Parent != "nc" {
			t.Errorf("nd: %+v, %v", info, err)
		}
		if _, info, _, err := tx.GetInfo("e"); err != nil || info.Kind != snapshots.KindActive {
			t.Errorf("e: %+v, %v; want still active", info, err)
		}
		return nil
	})
	// A first link that fails commits nothing.
	if n, err := ms.CommitChain(ctx, "", []snapshots.CommitLink{{Name: "x", Key: "nothing"}, {Name: "y", Key: "e"}}, dirOf); n != 0 || !errdefs.IsNotFound(err) {
		t.Fatalf("chain whose first key is missing: %d, %v", n, err)
	}
	if n, err := ms.CommitChain(ctx, "", nil, dirOf); n != 0 || err != nil {
		t.Fatalf("empty chain: %d, %v", n, err)
	}
}

// measure records the usages of many snapshots in one go, skipping one
// removed meanwhile and one a caller has measured already; its error
// names the removed one.
func TestMeasureMany(t *testing.T) {
	ms := newStore(t)
	ctx := context.Background()
	root := t.TempDir()
	dirOf := func(id uint64) string { return filepath.Join(root, strconv.FormatUint(id, 10)) }
	var jobs []measureJob
	for i, key := range []string{"a", "b", "c", "d"} {
		id := activeWithFiles(t, ms, key, dirOf, i+1, 1)
		// Committed in the store without queueing a measurement.
		mustUpdate(t, ms, func(tx *Tx) error {
			_, err := tx.commitActive(key, "c-"+key, snapshots.Usage{}, true, nil)
			return err
		})
		jobs = append(jobs, measureJob{name: "c-" + key, id: id, dir: dirOf(id)})
	}
	if err := ms.RemoveSnapshot(ctx, "c-b"); err != nil {
		t.Fatal(err)
	}
	mustUpdate(t, ms, func(tx *Tx) error {
		r, err := tx.get("c-c")
		if err != nil {
			return err
		}
		r.Inodes, r.Size, r.Unmeasured = 99, 99, false
		return tx.put("c-c", r)
	})
	usages, err := ms.measure(ctx, jobs...)
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "c-b") {
		t.Fatalf("measure with a removed snapshot: %v, want NotFound naming c-b", err)
	}
	for i, want := range []int64{2, 3, 4, 5} { // the directory and its files
		if usages[i].Inodes != want {
			t.Errorf("job %d measured %d inodes, want %d", i, usages[i].Inodes, want)
		}
	}
	mustUpdate(t, ms, func(tx *Tx) error {
		for key, inodes := range map[string]int64{"c-a": 2, "c-c": 99, "c-d": 5} {
			r, err := tx.get(key)
			if err != nil {
				return err
			}
			if r.Unmeasured || r.Inodes != inodes {
				t.Errorf("%s: %+v, want %d inodes recorded", key, r, inodes)
			}
		}
		return nil
	})
}
