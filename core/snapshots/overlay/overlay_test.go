//go:build linux

package overlay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/core/snapshots/storage"
)

// testDir returns a temporary directory that must have nothing mounted in
// it when the test ends; the check runs before t.TempDir's removal, which
// would otherwise delete through a leftover mount.
func testDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("overlay mounts need root")
	}
	dir := t.TempDir()
	t.Cleanup(func() {
		left, err := mount.MountedUnder(dir)
		if err != nil {
			t.Errorf("read mounts: %v", err)
			return
		}
		if len(left) > 0 {
			t.Errorf("mounts left under %s: %v", dir, left)
			for _, m := range left {
				_ = unix.Unmount(m, unix.MNT_DETACH)
			}
		}
	})
	return dir
}

func newSnapshotter(t *testing.T, opts ...Opt) (*Snapshotter, string) {
	t.Helper()
	dir := testDir(t)
	root := filepath.Join(dir, "root")
	s, err := New(root, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

// withMounted mounts mounts at a new directory under dir for fn.
func withMounted(t *testing.T, dir string, mounts []mount.Mount, fn func(root string)) {
	t.Helper()
	err := mount.WithTempMount(context.Background(), mounts, func(root string) error {
		fn(root)
		return nil
	}, mount.WithTempMountDir(dir))
	if err != nil {
		t.Fatal(err)
	}
}

// snapshotDirs lists the names in s's snapshots directory.
func snapshotDirs(t *testing.T, s *Snapshotter) []string {
	t.Helper()
	entries, err := os.ReadDir(s.snapshotsDir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// layer prepares key on parent, lets fill write into it through its
// mounts, and commits it as name.
func layer(t *testing.T, s *Snapshotter, dir, name, parent string, fill func(root string)) {
	t.Helper()
	ctx := context.Background()
	key := name + "-active"
	mounts, err := s.Prepare(ctx, key, parent)
	if err != nil {
		t.Fatal(err)
	}
	withMounted(t, dir, mounts, fill)
	if err := s.Commit(ctx, name, key); err != nil {
		t.Fatal(err)
	}
}

func TestFeatures(t *testing.T) {
	s, _ := newSnapshotter(t)
	f := s.Features()
	t.Logf("features: %+v", f)
	if got := f.Exports()["index_off"]; got != strconv.FormatBool(f.IndexOff) {
		t.Errorf("exported index_off = %q", got)
	}
	if !f.IndexOff {
		t.Error("index=off not accepted; every kernel since 4.13 takes it")
	}
	if entries, _ := os.ReadDir(s.root); slices.ContainsFunc(entries, func(e os.DirEntry) bool { return strings.HasPrefix(e.Name(), "probe-") }) {
		t.Errorf("probe directory left in %s", s.root)
	}
}

func TestPrepareCommitChain(t *testing.T) {
	s, dir := newSnapshotter(t)
	ctx := context.Background()

	mounts, err := s.Prepare(ctx, "a1", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) != 1 || mounts[0].Type != "bind" || mount.ReadOnly(mounts[0]) {
		t.Fatalf("mounts of a parentless active snapshot = %+v, want a writable bind", mounts)
	}
	withMounted(t, dir, mounts, func(root string) {
		writeFile(t, filepath.Join(root, "base"), "base")
		writeFile(t, filepath.Join(root, "gone"), "to be deleted")
		if err := os.Chmod(root, 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(root, 1000, 1000); err != nil {
			t.Fatal(err)
		}
	})
	if err := s.Commit(ctx, "l1", "a1"); err != nil {
		t.Fatal(err)
	}

	mounts, err = s.Prepare(ctx, "a2", "l1")
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) != 1 || mounts[0].Type != "overlay" || mount.ReadOnly(mounts[0]) {
		t.Fatalf("mounts of an active snapshot with a parent = %+v, want a writable overlay", mounts)
	}
	withMounted(t, dir, mounts, func(root string) {
		if got := readFile(t, filepath.Join(root, "base")); got != "base" {
			t.Errorf("base = %q", got)
		}
		// The root keeps the parent's owner and mode.
		fi, err := os.Stat(root)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != 0o750 || st.Uid != 1000 || st.Gid != 1000 {
			t.Errorf("root is %v %d:%d, want the parent's 0750 1000:1000", fi.Mode(), st.Uid, st.Gid)
		}
		writeFile(t, filepath.Join(root, "second"), "second")
		if err := os.Remove(filepath.Join(root, "gone")); err != nil {
			t.Fatal(err)
		}
	})
	if err := s.Commit(ctx, "l2", "a2", snapshots.WithLabels(map[string]string{"layer": "2"})); err != nil {
		t.Fatal(err)
	}

	mounts, err = s.Prepare(ctx, "a3", "l2")
	if err != nil {
		t.Fatal(err)
	}
	if opts := strings.Join(mounts[0].Options, ","); !strings.Contains(opts, "index=off") || !strings.Contains(opts, "lowerdir="+s.upperPath(2)+":"+s.upperPath(1)) {
		t.Errorf("options %s: want index=off and the lowers nearest first", opts)
	}
	withMounted(t, dir, mounts, func(root string) {
		if got := readFile(t, filepath.Join(root, "second")); got != "second" {
			t.Errorf("second = %q", got)
		}
		if exists(filepath.Join(root, "gone")) {
			t.Error("a file deleted in l2 shows through")
		}
	})
	// Mounts gives the same again.
	again, err := s.Mounts(ctx, "a3")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(again) != fmt.Sprint(mounts) {
		t.Errorf("Mounts = %+v, Prepare gave %+v", again, mounts)
	}

	for key, want := range map[string]snapshots.Info{
		"l1": {Kind: snapshots.KindCommitted, Name: "l1"},
		"l2": {Kind: snapshots.KindCommitted, Name: "l2", Parent: "l1", Labels: map[string]string{"layer": "2"}},
		"a3": {Kind: snapshots.KindActive, Name: "a3", Parent: "l2"},
	} {
		info, err := s.Stat(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if info.Kind != want.Kind || info.Name != want.Name || info.Parent != want.Parent || fmt.Sprint(info.Labels) != fmt.Sprint(want.Labels) {
			t.Errorf("Stat(%s) = %+v, want %+v", key, info, want)
		}
	}
	if _, err := s.Stat(ctx, "a1"); !errdefs.IsNotFound(err) {
		t.Errorf("Stat of a committed key: %v, want NotFound", err)
	}
}

func TestView(t *testing.T) {
	s, dir := newSnapshotter(t)
	ctx := context.Background()
	layer(t, s, dir, "l1", "", func(root string) { writeFile(t, filepath.Join(root, "one"), "1") })
	layer(t, s, dir, "l2", "l1", func(root string) { writeFile(t, filepath.Join(root, "two"), "2") })

	mounts, err := s.View(ctx, "v1", "l1")
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) != 1 || mounts[0].Type != "bind" || mounts[0].Source != s.upperPath(1) || !mount.ReadOnly(mounts[0]) {
		t.Errorf("view of one layer = %+v, want a read-only bind of it", mounts)
	}
	withMounted(t, dir, mounts, func(root string) {
		if got := readFile(t, filepath.Join(root, "one")); got != "1" {
			t.Errorf("one = %q", got)
		}
		if err := os.WriteFile(filepath.Join(root, "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
			t.Errorf("write to a view: %v, want EROFS", err)
		}
	})

	mounts, err = s.View(ctx, "v2", "l2")
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) != 1 || mounts[0].Type != "overlay" || !mount.ReadOnly(mounts[0]) || slices.ContainsFunc(mounts[0].Options, func(o string) bool { return strings.HasPrefix(o, "upperdir=") }) {
		t.Errorf("view of two layers = %+v, want a lowerdir-only overlay", mounts)
	}
	withMounted(t, dir, mounts, func(root string) {
		if readFile(t, filepath.Join(root, "one")) != "1" || readFile(t, filepath.Join(root, "two")) != "2" {
			t.Error("view does not show both layers")
		}
		if err := os.WriteFile(filepath.Join(root, "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
			t.Errorf("write to a view: %v, want EROFS", err)
		}
	})

	mounts, err = s.View(ctx, "v0", "")
	if err != nil {
		t.Fatal(err)
	}
	if !mount.ReadOnly(mounts[0]) {
		t.Errorf("empty view = %+v, want read-only", mounts)
	}
	if err := s.Commit(ctx, "c", "v1"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("commit of a view: %v, want FailedPrecondition", err)
	}
}

func TestErrors(t *testing.T) {
	s, dir := newSnapshotter(t)
	ctx := context.Background()
	layer(t, s, dir, "l1", "", func(string) {})
	if _, err := s.Prepare(ctx, "a", "l1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prepare(ctx, "a", ""); !errdefs.IsAlreadyExists(err) {
		t.Errorf("prepare existing: %v", err)
	}
	if _, err := s.Prepare(ctx, "b", "a"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("prepare on active: %v", err)
	}
	if _, err := s.Prepare(ctx, "b", "missing"); !errdefs.IsNotFound(err) {
		t.Errorf("prepare on missing: %v", err)
	}
	if _, err := s.Prepare(ctx, "", ""); !errdefs.IsInvalidArgument(err) {
		t.Errorf("prepare empty key: %v", err)
	}
	if _, err := s.Mounts(ctx, "l1"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("mounts of committed: %v", err)
	}
	if err := s.Remove(ctx, "l1"); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), `cannot remove snapshot "l1": it has children`) {
		t.Errorf("remove with children: %v", err)
	}
	if err := s.Remove(ctx, "missing"); !errdefs.IsNotFound(err) {
		t.Errorf("remove missing: %v", err)
	}
	if err := s.Commit(ctx, "l1", "a"); !errdefs.IsAlreadyExists(err) {
		t.Errorf("commit to existing name: %v", err)
	}
	if _, err := s.Usage(ctx, "missing"); !errdefs.IsNotFound(err) {
		t.Errorf("usage missing: %v", err)
	}
	// Failed creations leave no directory behind.
	names := snapshotDirs(t, s)
	if want := []string{"1", "2"}; !slices.Equal(names, want) {
		t.Errorf("snapshot dirs %v, want %v", names, want)
	}
}

func TestManyLayers(t *testing.T) {
	s, dir := newSnapshotter(t)
	ctx := context.Background()
	const n = 130
	parent := ""
	for i := range n {
		name := "layer-" + strconv.Itoa(i)
		layer(t, s, dir, name, parent, func(root string) {
			writeFile(t, filepath.Join(root, "file-"+strconv.Itoa(i)), strconv.Itoa(i))
			writeFile(t, filepath.Join(root, "who"), strconv.Itoa(i))
		})
		parent = name
	}
	mounts, err := s.Prepare(ctx, "top", parent)
	if err != nil {
		t.Fatal(err)
	}
	if l := len(strings.Join(mounts[0].Options, ",")); l < 4096 {
		t.Fatalf("options are %d bytes; the test wants them over a page", l)
	}
	withMounted(t, dir, mounts, func(root string) {
		for _, i := range []int{0, 1, n / 2, n - 1} {
			if got := readFile(t, filepath.Join(root, "file-"+strconv.Itoa(i))); got != strconv.Itoa(i) {
				t.Errorf("file-%d = %q", i, got)
			}
		}
		if got := readFile(t, filepath.Join(root, "who")); got != strconv.Itoa(n-1) {
			t.Errorf("who = %q, want the top layer's", got)
		}
		writeFile(t, filepath.Join(root, "new"), "x")
	})
	if got := readFile(t, filepath.Join(s.upperPath(n+1), "new")); got != "x" {
		t.Errorf("write landed as %q", got)
	}
	// A view of the whole chain too.
	mounts, err = s.View(ctx, "view", parent)
	if err != nil {
		t.Fatal(err)
	}
	withMounted(t, dir, mounts, func(root string) {
		if !exists(filepath.Join(root, "file-0")) || exists(filepath.Join(root, "new")) {
			t.Error("view of the chain shows the wrong files")
		}
	})
}

func TestUsage(t *testing.T) {
	s, dir := newSnapshotter(t)
	ctx := context.Background()
	layer(t, s, dir, "l1", "", func(root string) { writeFile(t, filepath.Join(root, "small"), "x") })
	mounts, err := s.Prepare(ctx, "a", "l1")
	if err != nil {
		t.Fatal(err)
	}
	const size = 1 << 20
	withMounted(t, dir, mounts, func(root string) {
		if err := os.WriteFile(filepath.Join(root, "big"), make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(root, "d"), 0o755); err != nil {
			t.Fatal(err)
		}
	})
	u, err := s.Usage(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	// The upper's root, big and d; the parent's file is not counted.
	if u.Inodes != 3 || u.Size < size || u.Size > size+64<<10 {
		t.Errorf("usage of active = %+v", u)
	}
	if err := s.Commit(ctx, "l2", "a"); err != nil {
		t.Fatal(err)
	}
	c, err := s.Usage(ctx, "l2")
	if err != nil {
		t.Fatal(err)
	}
	if c != u {
		t.Errorf("usage of committed = %+v, want what it was active: %+v", c, u)
	}
}

func TestWalkUpdateAndLabels(t *testing.T) {
	s, dir := newSnapshotter(t, WithUpperdirLabel(), WithMountOptions([]string{"index=off", "redirect_dir=off"}))
	ctx := context.Background()
	layer(t, s, dir, "l1", "", func(string) {})
	if _, err := s.Prepare(ctx, "a", "l1", snapshots.WithLabels(map[string]string{"containerd.io/gc.root": "x", "k": "v"})); err != nil {
		t.Fatal(err)
	}
	if _, err := s.View(ctx, "v", "l1"); err != nil {
		t.Fatal(err)
	}
	mounts, err := s.Mounts(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	opts := mounts[0].Options
	if strings.Count(strings.Join(opts, ","), "index=") != 1 || !slices.Contains(opts, "redirect_dir=off") {
		t.Errorf("options %q: want the given ones, index= once", opts)
	}
	walk := func(fs ...string) []string {
		t.Helper()
		var names []string
		err := s.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
			names = append(names, info.Name)
			if info.Labels[UpperdirLabel] == "" || !strings.HasPrefix(info.Labels[UpperdirLabel], s.snapshotsDir()) {
				t.Errorf("%s: upperdir label %q", info.Name, info.Labels[UpperdirLabel])
			}
			return nil
		}, fs...)
		if err != nil {
			t.Fatal(err)
		}
		return names
	}
	for _, tc := range []struct {
		filters []string
		want    []string
	}{
		{nil, []string{"a", "l1", "v"}},
		{[]string{"kind==active"}, []string{"a"}},
		{[]string{"kind==view", "kind==committed"}, []string{"l1", "v"}},
		{[]string{"parent==l1,labels.k==v"}, []string{"a"}},
		{[]string{`labels."containerd.io/gc.root"`}, []string{"a"}},
	} {
		if got := walk(tc.filters...); !slices.Equal(got, tc.want) {
			t.Errorf("walk %q = %v, want %v", tc.filters, got, tc.want)
		}
	}
	if err := s.Walk(ctx, nil, "kind=="); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad filter: %v", err)
	}
	stop := errors.New("stop")
	n := 0
	if err := s.Walk(ctx, func(context.Context, snapshots.Info) error { n++; return stop }); err != stop || n != 1 {
		t.Errorf("walk stopping: %v after %d", err, n)
	}

	info, err := s.Stat(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if info.Labels[UpperdirLabel] != s.upperPath(2) {
		t.Errorf("upperdir label = %q", info.Labels[UpperdirLabel])
	}
	info.Labels["k"] = "w"
	updated, err := s.Update(ctx, info, "labels")
	if err != nil {
		t.Fatal(err)
	}
	if updated.Labels["k"] != "w" || updated.Labels[UpperdirLabel] == "" {
		t.Errorf("updated labels = %v", updated.Labels)
	}
	// The computed label is not stored.
	plain, err := New(filepath.Join(dir, "other"))
	if err != nil {
		t.Fatal(err)
	}
	plain.Close()
	s.Close()
	s2, err := New(s.root)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	info, err = s2.Stat(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := info.Labels[UpperdirLabel]; ok || info.Labels["k"] != "w" {
		t.Errorf("stored labels = %v", info.Labels)
	}
	if _, err := s2.Update(ctx, snapshots.Info{Name: "a"}, "parent"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("update of parent: %v", err)
	}
}

func TestCleanup(t *testing.T) {
	s, dir := newSnapshotter(t)
	ctx := context.Background()
	layer(t, s, dir, "l1", "", func(root string) { writeFile(t, filepath.Join(root, "f"), "x") })
	layer(t, s, dir, "l2", "l1", func(root string) { writeFile(t, filepath.Join(root, "g"), "y") })
	if _, err := s.Prepare(ctx, "a", "l2"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "l2"); err != nil {
		t.Fatal(err)
	}
	// What a crash leaves: a half-made snapshot under its temporary
	// name, a directory whose record never committed, and a directory
	// half deleted by an earlier Cleanup.
	for _, p := range []string{"snapshots/new-123/fs/x", "snapshots/99/fs", "trash/7-123/fs"} {
		if err := os.MkdirAll(filepath.Join(s.root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if !exists(s.dir(2)) || !exists(s.dir(3)) {
		t.Fatal("Remove deleted directories; Cleanup should")
	}
	if err := s.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	names := snapshotDirs(t, s)
	if !slices.Equal(names, []string{"1"}) {
		t.Errorf("after Cleanup: %v, want only l1's directory", names)
	}
	if entries, _ := os.ReadDir(filepath.Join(s.root, "trash")); len(entries) != 0 {
		t.Errorf("trash: %v", entries)
	}
	// l1 is intact and usable.
	mounts, err := s.View(ctx, "v", "l1")
	if err != nil {
		t.Fatal(err)
	}
	withMounted(t, dir, mounts, func(root string) {
		if readFile(t, filepath.Join(root, "f")) != "x" {
			t.Error("l1 damaged")
		}
	})
}

// TestCleanupSparesMounted checks that Cleanup does not delete through a
// mount left in a removed snapshot's directory.
func TestCleanupSparesMounted(t *testing.T) {
	s, dir := newSnapshotter(t)
	ctx := context.Background()
	if _, err := s.Prepare(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	precious := filepath.Join(dir, "precious")
	if err := os.Mkdir(precious, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(precious, "keep"), "x")
	target := s.upperPath(1)
	if err := mount.All([]mount.Mount{{Type: "bind", Source: precious, Options: []string{"rbind"}}}, target); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mount.UnmountAll(target) })
	err := s.Cleanup(ctx)
	if uerr := mount.UnmountAll(target); uerr != nil {
		t.Fatal(uerr)
	}
	if err == nil || !strings.Contains(err.Error(), "mounted") {
		t.Errorf("Cleanup with a mount inside: %v, want an error naming it", err)
	}
	if !exists(filepath.Join(precious, "keep")) {
		t.Fatal("Cleanup deleted through a mount")
	}
	if err := s.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if exists(s.dir(1)) {
		t.Error("directory left after the mount went")
	}
}

func TestReopen(t *testing.T) {
	s, dir := newSnapshotter(t)
	ctx := context.Background()
	layer(t, s, dir, "l1", "", func(root string) { writeFile(t, filepath.Join(root, "f"), "x") })
	s.Close()
	s2, err := New(s.root)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	mounts, err := s2.Prepare(ctx, "a", "l1")
	if err != nil {
		t.Fatal(err)
	}
	withMounted(t, dir, mounts, func(root string) {
		if readFile(t, filepath.Join(root, "f")) != "x" {
			t.Error("l1 lost on reopening")
		}
	})
	if _, err := os.Stat(s2.dir(2)); err != nil {
		t.Errorf("ids did not continue: %v", err)
	}
}

func TestRootWithSeparators(t *testing.T) {
	dir := testDir(t)
	if _, err := New(filepath.Join(dir, "a:b")); !errdefs.IsInvalidArgument(err) {
		t.Errorf("root with ':': %v", err)
	}
}

// TestLeftoverAtNewID covers a transaction that failed to commit after
// moving its directory into place: the ID comes round again and the
// leftover must not leak into the new snapshot.
func TestLeftoverAtNewID(t *testing.T) {
	s, _ := newSnapshotter(t)
	if err := os.MkdirAll(filepath.Join(s.dir(1), "fs", "junk"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prepare(context.Background(), "a", ""); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(s.upperPath(1), "junk")) {
		t.Error("the new snapshot holds the leftover's files")
	}
	if !exists(s.workPath(1)) {
		t.Error("no work directory")
	}
}

// TestConcurrent runs creations, commits, removals and cleanups at once:
// every snapshot left must have its directories.
func TestConcurrent(t *testing.T) {
	s, _ := newSnapshotter(t)
	ctx := context.Background()
	if _, err := s.Prepare(ctx, "base-a", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, "base", "base-a"); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 16)
	for w := range 8 {
		go func() {
			errc <- func() error {
				for i := range 20 {
					key := fmt.Sprintf("w%d-%d", w, i)
					if _, err := s.Prepare(ctx, key, "base"); err != nil {
						return err
					}
					if i%2 == 0 {
						if err := s.Commit(ctx, key+"-c", key); err != nil {
							return err
						}
						continue
					}
					if err := s.Remove(ctx, key); err != nil {
						return err
					}
				}
				return nil
			}()
		}()
	}
	for range 2 {
		go func() {
			for range 10 {
				if err := s.Cleanup(ctx); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	for range 10 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	err := s.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		n++
		var id uint64
		if err := s.ms.View(ctx, func(tx *storage.Tx) error {
			var err error
			id, _, _, err = tx.GetInfo(info.Name)
			return err
		}); err != nil {
			return err
		}
		if !exists(s.upperPath(id)) {
			t.Errorf("%s: directory %s missing", info.Name, s.upperPath(id))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(s.snapshotsDir())
	if n != 81 || len(entries) != n {
		t.Errorf("%d snapshots, %d directories; want 81 of each", n, len(entries))
	}
}

// TestCommitWithParent stacks a snapshot prepared without parent onto a
// committed one, and checks that overlays whose upper directories depend on
// their lowers (metacopy here) refuse to.
func TestCommitWithParent(t *testing.T) {
	ctx := context.Background()
	s, _ := newSnapshotter(t)
	if !s.CanRebase() {
		t.Fatalf("plain overlay cannot rebase: options %v", s.options)
	}
	if _, err := s.Prepare(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, "base", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prepare(ctx, "b", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, "top", "b", snapshots.WithParent("base")); err != nil {
		t.Fatal(err)
	}
	ms, err := s.View(ctx, "v", "top")
	if err != nil {
		t.Fatal(err)
	}
	var lower string
	for _, o := range ms[0].Options {
		if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
			lower = v
		}
	}
	if strings.Count(lower, ":") != 1 {
		t.Fatalf("view of top on base: %+v", ms)
	}
	m, _ := newSnapshotter(t, WithMountOptions([]string{"metacopy=on"}))
	if m.CanRebase() {
		t.Fatal("metacopy overlay says it can rebase")
	}
	m.Prepare(ctx, "a", "")
	m.Commit(ctx, "base", "a")
	m.Prepare(ctx, "b", "")
	if err := m.Commit(ctx, "top", "b", snapshots.WithParent("base")); !errdefs.IsNotImplemented(err) {
		t.Fatalf("metacopy overlay commit with a parent: %v", err)
	}
}

// TestConcurrentPrepares prepares many snapshots at once, some of them
// under a key already taken: the record store runs concurrent updates in
// shared transactions, and a failed one makes those before it run again.
// Every snapshot that was made has its directories and a record naming
// them, each failed one has neither, and no temporary directory is left.
func TestConcurrentPrepares(t *testing.T) {
	s, _ := newSnapshotter(t)
	ctx := context.Background()
	if _, err := s.Prepare(ctx, "taken", ""); err != nil {
		t.Fatal(err)
	}
	const n = 48
	errs := make([]error, n)
	mounts := make([][]mount.Mount, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("k%d", i)
			if i%5 == 0 {
				key = "taken"
			}
			mounts[i], errs[i] = s.Prepare(ctx, key, "")
		}()
	}
	wg.Wait()
	made := 1 // "taken"
	for i, err := range errs {
		if i%5 == 0 {
			if !errdefs.IsAlreadyExists(err) {
				t.Errorf("prepare %d of a taken key: %v, want AlreadyExists", i, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("prepare %d: %v", i, err)
		}
		made++
		src := mounts[i][0].Source
		if mounts[i][0].Type == "bind" {
			if fi, err := os.Stat(src); err != nil || !fi.IsDir() {
				t.Errorf("prepare %d: its directory %s: %v", i, src, err)
			}
		}
		for _, o := range mounts[i][0].Options {
			for _, pre := range []string{"upperdir=", "workdir="} {
				if d, ok := strings.CutPrefix(o, pre); ok {
					if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
						t.Errorf("prepare %d: its %s%s: %v", i, pre, d, err)
					}
				}
			}
		}
	}
	dirs := snapshotDirs(t, s)
	if len(dirs) != made {
		t.Errorf("%d directories for %d snapshots: %v", len(dirs), made, dirs)
	}
	for _, d := range dirs {
		if strings.HasPrefix(d, "new-") {
			t.Errorf("temporary directory %s left", d)
		}
	}
}

// PrepareMany makes each snapshot as its own Prepare would, in one
// transaction; a batch with requests that cannot be made gives each
// request its own result and leaves no directory of those refused.
func TestPrepareMany(t *testing.T) {
	s, dir := newSnapshotter(t)
	ctx := context.Background()
	layer(t, s, dir, "base", "", func(root string) { writeFile(t, filepath.Join(root, "f"), "base") })
	if _, err := s.Prepare(ctx, "taken", ""); err != nil {
		t.Fatal(err)
	}
	res := s.PrepareMany(ctx, []snapshots.PrepareRequest{
		{Key: "a"},
		{Key: "b", Parent: "base", Opts: []snapshots.Opt{snapshots.WithLabels(map[string]string{"l": "v"})}},
		{Key: "c"},
	})
	if len(res) != 3 {
		t.Fatalf("%d results for 3 requests", len(res))
	}
	for i, key := range []string{"a", "b", "c"} {
		if res[i].Err != nil {
			t.Fatalf("prepare %s: %v", key, res[i].Err)
		}
		want, err := s.Mounts(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(res[i].Mounts, want) {
			t.Errorf("mounts of %s: %+v, its Mounts: %+v", key, res[i].Mounts, want)
		}
		info, err := s.Stat(ctx, key)
		if err != nil || info.Kind != snapshots.KindActive {
			t.Errorf("stat %s: %+v, %v", key, info, err)
		}
	}
	if info, _ := s.Stat(ctx, "b"); info.Parent != "base" || info.Labels["l"] != "v" {
		t.Errorf("b: parent %q, labels %v", info.Parent, info.Labels)
	}
	withMounted(t, dir, res[1].Mounts, func(root string) {
		if got := readFile(t, filepath.Join(root, "f")); got != "base" {
			t.Errorf("b sees %q of its parent's file", got)
		}
	})
	before := len(snapshotDirs(t, s))

	res = s.PrepareMany(ctx, []snapshots.PrepareRequest{{Key: "d"}, {Key: "taken"}, {Key: "e", Parent: "nosuch"}})
	if res[0].Err != nil {
		t.Errorf("prepare d beside refused requests: %v", res[0].Err)
	}
	if !errdefs.IsAlreadyExists(res[1].Err) {
		t.Errorf("prepare of a taken key: %v, want AlreadyExists", res[1].Err)
	}
	if !errdefs.IsNotFound(res[2].Err) {
		t.Errorf("prepare on a missing parent: %v, want NotFound", res[2].Err)
	}
	if _, err := s.Stat(ctx, "e"); !errdefs.IsNotFound(err) {
		t.Errorf("stat of the refused e: %v", err)
	}
	dirs := snapshotDirs(t, s)
	if len(dirs) != before+1 {
		t.Errorf("%d directories after one more snapshot, had %d: %v", len(dirs), before, dirs)
	}
	for _, d := range dirs {
		if strings.HasPrefix(d, "new-") {
			t.Errorf("temporary directory %s left", d)
		}
	}
}
