//go:build linux

package native

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/snapshots"
)

// testDir returns a temporary directory that must have nothing mounted in
// it when the test ends; the check runs before t.TempDir's removal.
func testDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("bind mounts, chown and mknod need root")
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

func newSnapshotter(t *testing.T) (*Snapshotter, string) {
	t.Helper()
	dir := testDir(t)
	s, err := New(filepath.Join(dir, "root"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

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

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return string(b)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func layer(t *testing.T, s *Snapshotter, dir, name, parent string, fill func(root string)) {
	t.Helper()
	ctx := context.Background()
	mounts, err := s.Prepare(ctx, name+"-active", parent)
	must(t, err)
	withMounted(t, dir, mounts, fill)
	must(t, s.Commit(ctx, name, name+"-active"))
}

func TestPrepareCommitView(t *testing.T) {
	s, dir := newSnapshotter(t)
	ctx := context.Background()
	layer(t, s, dir, "l1", "", func(root string) {
		must(t, os.WriteFile(filepath.Join(root, "a"), []byte("1"), 0o644))
	})
	mounts, err := s.Prepare(ctx, "a2", "l1")
	must(t, err)
	if len(mounts) != 1 || mounts[0].Type != "bind" || mount.ReadOnly(mounts[0]) {
		t.Fatalf("mounts = %+v, want a writable bind", mounts)
	}
	withMounted(t, dir, mounts, func(root string) {
		if readFile(t, filepath.Join(root, "a")) != "1" {
			t.Error("parent's file missing")
		}
		must(t, os.WriteFile(filepath.Join(root, "a"), []byte("changed"), 0o644))
		must(t, os.WriteFile(filepath.Join(root, "b"), []byte("2"), 0o644))
	})
	// The parent is untouched: the child is a copy.
	if got := readFile(t, filepath.Join(s.dir(1), "a")); got != "1" {
		t.Errorf("parent changed to %q", got)
	}
	must(t, s.Commit(ctx, "l2", "a2"))

	mounts, err = s.View(ctx, "v", "l2")
	must(t, err)
	if !mount.ReadOnly(mounts[0]) {
		t.Errorf("view mounts = %+v, want read-only", mounts)
	}
	withMounted(t, dir, mounts, func(root string) {
		if readFile(t, filepath.Join(root, "a")) != "changed" || readFile(t, filepath.Join(root, "b")) != "2" {
			t.Error("view shows the wrong content")
		}
		if err := os.WriteFile(filepath.Join(root, "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
			t.Errorf("write to view: %v, want EROFS", err)
		}
	})
	info, err := s.Stat(ctx, "l2")
	must(t, err)
	if info.Kind != snapshots.KindCommitted || info.Parent != "l1" {
		t.Errorf("Stat(l2) = %+v", info)
	}
	if _, err := s.Mounts(ctx, "l2"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("mounts of committed: %v", err)
	}
	if err := s.Remove(ctx, "l1"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("remove with children: %v", err)
	}
	if _, err := s.Prepare(ctx, "v", ""); !errdefs.IsAlreadyExists(err) {
		t.Errorf("prepare existing: %v", err)
	}
	if _, err := s.Prepare(ctx, "x", "v"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("prepare on a view: %v", err)
	}
	if _, err := s.Prepare(ctx, "x", "nope"); !errdefs.IsNotFound(err) {
		t.Errorf("prepare on missing: %v", err)
	}
	if _, err := s.Prepare(ctx, "", ""); !errdefs.IsInvalidArgument(err) {
		t.Errorf("prepare with empty key: %v", err)
	}
	// Failed creations leave nothing behind.
	entries, _ := os.ReadDir(s.snapshotsDir())
	if len(entries) != 3 {
		t.Errorf("snapshot dirs: %v", entries)
	}
}

// fileState is what a copy must preserve of a file.
type fileState struct {
	mode     uint32
	uid, gid uint32
	rdev     uint64
	mtime    int64
	size     int64
	link     string
	xattrs   string
	linkedTo string // the first path of a hard-linked inode
}

func treeState(t *testing.T, root string) map[string]fileState {
	t.Helper()
	states := map[string]fileState{}
	firstPath := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		fsState := fileState{mode: st.Mode, uid: st.Uid, gid: st.Gid, rdev: st.Rdev, mtime: st.Mtim.Nano(), size: st.Size}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			fsState.size = 0
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			fsState.link, _ = os.Readlink(p)
		}
		names, _ := listXattrs(p)
		sort.Strings(names)
		for _, n := range names {
			v, _ := getXattr(p, n)
			fsState.xattrs += n + "=" + string(v) + ";"
		}
		if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if first, ok := firstPath[st.Ino]; ok {
				fsState.linkedTo = first
			} else {
				firstPath[st.Ino] = rel
			}
		}
		states[rel] = fsState
		return nil
	})
	must(t, err)
	return states
}

func TestCopyFidelity(t *testing.T) {
	s, dir := newSnapshotter(t)
	ctx := context.Background()
	stamp := time.Date(2020, 1, 2, 3, 4, 5, 600, time.UTC)
	setTime := func(p string) {
		ts := []unix.Timespec{unix.NsecToTimespec(stamp.UnixNano()), unix.NsecToTimespec(stamp.UnixNano())}
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
	}
	layer(t, s, dir, "l1", "", func(root string) {
		p := func(name string) string { return filepath.Join(root, name) }
		must(t, os.MkdirAll(p("d/sub"), 0o755))
		must(t, os.Mkdir(p("tmp"), 0o755))
		must(t, unix.Chmod(p("tmp"), 0o1777))
		must(t, os.WriteFile(p("d/suid"), []byte("#!/bin/sh\n"), 0o755))
		must(t, os.Chown(p("d/suid"), 1000, 1001))
		must(t, unix.Chmod(p("d/suid"), 0o4755))
		must(t, os.WriteFile(p("d/data"), make([]byte, 100000), 0o600))
		must(t, os.Link(p("d/data"), p("d/sub/hardlink")))
		must(t, os.Link(p("d/data"), p("hardlink2")))
		must(t, os.Symlink("d/data", p("symlink")))
		must(t, os.Lchown(p("symlink"), 123, 456))
		must(t, os.Symlink("/nonexistent/target", p("dangling")))
		must(t, unix.Mknod(p("null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		must(t, unix.Mknod(p("fifo"), unix.S_IFIFO|0o640, 0))
		must(t, unix.Mknod(p("sock"), unix.S_IFSOCK|0o600, 0))
		must(t, unix.Lsetxattr(p("d/data"), "user.origin", []byte("test"), 0))
		must(t, unix.Lsetxattr(p("d"), "trusted.overlay.opaque", []byte("y"), 0))
		must(t, unix.Lsetxattr(p("symlink"), "trusted.note", []byte("on a link"), 0))
		for _, name := range []string{"d/suid", "d/data", "symlink", "dangling", "null", "fifo", "d/sub", "d", "tmp"} {
			setTime(p(name))
		}
		must(t, os.Chown(root, 7, 8))
		must(t, unix.Chmod(root, 0o750))
		setTime(root)
	})
	mounts, err := s.Prepare(ctx, "copy", "l1")
	must(t, err)
	want := treeState(t, s.dir(1))
	got := treeState(t, filepath.Dir(filepath.Join(mounts[0].Source, "x")))
	if len(want) < 12 {
		t.Fatalf("source tree has only %d entries", len(want))
	}
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("%s: missing in the copy", p)
			continue
		}
		if g != w {
			t.Errorf("%s: copy is %+v, want %+v", p, g, w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: extra in the copy", p)
		}
	}
}

func TestUsageWalkUpdate(t *testing.T) {
	s, dir := newSnapshotter(t)
	ctx := context.Background()
	layer(t, s, dir, "l1", "", func(root string) {
		must(t, os.WriteFile(filepath.Join(root, "big"), make([]byte, 1<<20), 0o644))
	})
	mounts, err := s.Prepare(ctx, "a", "l1", snapshots.WithLabels(map[string]string{"k": "v"}))
	must(t, err)
	withMounted(t, dir, mounts, func(root string) {
		must(t, os.WriteFile(filepath.Join(root, "more"), make([]byte, 1<<20), 0o644))
	})
	u, err := s.Usage(ctx, "a")
	must(t, err)
	// A full copy: the root and both files.
	if u.Inodes != 3 || u.Size < 2<<20 {
		t.Errorf("usage of active = %+v", u)
	}
	c, err := s.Usage(ctx, "l1")
	must(t, err)
	if c.Inodes != 2 || c.Size < 1<<20 {
		t.Errorf("usage of committed = %+v", c)
	}
	var names []string
	must(t, s.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		names = append(names, info.Name)
		return nil
	}, "kind==active,labels.k==v"))
	if !slices.Equal(names, []string{"a"}) {
		t.Errorf("walk = %v", names)
	}
	info, err := s.Update(ctx, snapshots.Info{Name: "a", Labels: map[string]string{"k": "w"}}, "labels.k")
	must(t, err)
	if info.Labels["k"] != "w" {
		t.Errorf("labels = %v", info.Labels)
	}
}

func TestCleanup(t *testing.T) {
	s, dir := newSnapshotter(t)
	ctx := context.Background()
	layer(t, s, dir, "l1", "", func(root string) {
		must(t, os.WriteFile(filepath.Join(root, "f"), []byte("x"), 0o644))
	})
	_, err := s.Prepare(ctx, "a", "l1")
	must(t, err)
	must(t, s.Remove(ctx, "a"))
	if !exists(s.dir(2)) {
		t.Fatal("Remove deleted the directory; Cleanup should")
	}
	// A crash's leftovers, and a creation in progress.
	must(t, os.MkdirAll(filepath.Join(s.snapshotsDir(), "new-1", "f"), 0o755))
	must(t, os.MkdirAll(filepath.Join(s.snapshotsDir(), "55"), 0o755))
	busy, err := s.tempDir()
	must(t, err)
	must(t, s.Cleanup(ctx))
	var names []string
	entries, _ := os.ReadDir(s.snapshotsDir())
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"1", filepath.Base(busy)}; !slices.Equal(names, want) {
		t.Errorf("after Cleanup: %v, want %v", names, want)
	}
	s.doneWith(busy)
	if exists(busy) {
		t.Error("temporary directory left")
	}
}

func TestConcurrent(t *testing.T) {
	s, dir := newSnapshotter(t)
	ctx := context.Background()
	layer(t, s, dir, "base", "", func(root string) {
		for i := range 50 {
			must(t, os.WriteFile(filepath.Join(root, fmt.Sprint(i)), []byte(strings.Repeat("x", i)), 0o644))
		}
	})
	errc := make(chan error, 8)
	for w := range 4 {
		go func() {
			errc <- func() error {
				for i := range 10 {
					key := fmt.Sprintf("w%d-%d", w, i)
					if _, err := s.Prepare(ctx, key, "base"); err != nil {
						return err
					}
					if i%2 == 1 {
						if err := s.Remove(ctx, key); err != nil {
							return err
						}
					}
				}
				return nil
			}()
		}()
	}
	go func() {
		for range 20 {
			if err := s.Cleanup(ctx); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for range 5 {
		must(t, <-errc)
	}
	must(t, s.Cleanup(ctx))
	entries, _ := os.ReadDir(s.snapshotsDir())
	if len(entries) != 21 {
		t.Errorf("%d directories, want 21", len(entries))
	}
	for _, e := range entries {
		if n, _ := os.ReadDir(filepath.Join(s.snapshotsDir(), e.Name())); len(n) != 50 {
			t.Errorf("%s holds %d files, want 50", e.Name(), len(n))
		}
	}
}
