//go:build linux

package netns

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}

// threadNamespaces returns the network namespace inode of every thread of
// the test process, so a thread left in a pod's namespace shows up.
func threadNamespaces(t *testing.T) map[string]uint64 {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, task := range tasks {
		var st unix.Stat_t
		// A thread may exit between ReadDir and Stat; that is no leak.
		if err := unix.Stat(filepath.Join("/proc/self/task", task.Name(), "ns/net"), &st); err == nil {
			out[task.Name()] = st.Ino
		}
	}
	return out
}

func mounted(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		// Field 5 is the mount point.
		if fields := strings.Fields(s.Text()); len(fields) > 4 && fields[4] == path {
			return true
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return false
}

func newNS(t *testing.T, dir string) *NetNS {
	t.Helper()
	ns, err := New(dir)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := ns.Remove(); err != nil {
			t.Errorf("cleanup Remove: %v", err)
		}
	})
	return ns
}

func TestNewIsDistinctAndPinned(t *testing.T) {
	requireRoot(t)
	own := inode(t, "/proc/self/ns/net")
	dir := filepath.Join(t.TempDir(), "netns")
	a := newNS(t, dir)
	b := newNS(t, dir)

	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o711 {
		t.Errorf("dir mode = %v, want 0711", st.Mode().Perm())
	}
	if filepath.Dir(a.Path()) != dir {
		t.Errorf("pin %q not in %q", a.Path(), dir)
	}
	ia, ib := inode(t, a.Path()), inode(t, b.Path())
	if ia == own || ib == own {
		t.Errorf("pinned namespace is the test's own (%d): a=%d b=%d", own, ia, ib)
	}
	if ia == ib {
		t.Errorf("two New calls pinned the same namespace %d", ia)
	}
	if !mounted(t, a.Path()) {
		t.Errorf("%s is not a mount point", a.Path())
	}
	if closed, err := a.Closed(); err != nil || closed {
		t.Errorf("Closed on a live pin = %v, %v; want false", closed, err)
	}
	for tid, ino := range threadNamespaces(t) {
		if ino != own {
			t.Errorf("thread %s left in namespace %d after New, want %d", tid, ino, own)
		}
	}
}

func TestDoRunsInsideAndRestores(t *testing.T) {
	requireRoot(t)
	own := inode(t, "/proc/self/ns/net")
	ns := newNS(t, t.TempDir())
	want := inode(t, ns.Path())

	for range 20 { // enough calls that a leaked thread would be reused
		var names []string
		var inside uint64
		err := ns.Do(func() error {
			var st unix.Stat_t
			if err := unix.Stat(threadNetNS, &st); err != nil {
				return err
			}
			inside = st.Ino
			ifs, err := net.Interfaces()
			for _, i := range ifs {
				names = append(names, i.Name)
			}
			return err
		})
		if err != nil {
			t.Fatalf("Do: %v", err)
		}
		if inside != want {
			t.Fatalf("Do ran in namespace %d, want %d", inside, want)
		}
		if len(names) != 1 || names[0] != "lo" {
			t.Fatalf("interfaces inside = %v, want [lo]", names)
		}
	}
	for tid, ino := range threadNamespaces(t) {
		if ino != own {
			t.Errorf("thread %s left in namespace %d after Do, want %d", tid, ino, own)
		}
	}

	sentinel := errors.New("from fn")
	if err := ns.Do(func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Errorf("Do returned %v, want fn's error", err)
	}
}

func TestRemoveIsIdempotentAndClosed(t *testing.T) {
	requireRoot(t)
	ns, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	path := ns.Path()
	for i := range 2 {
		if err := ns.Remove(); err != nil {
			t.Fatalf("Remove #%d: %v", i+1, err)
		}
	}
	if mounted(t, path) {
		t.Errorf("%s still in mountinfo after Remove", path)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin file after Remove: %v, want not exist", err)
	}
	loaded := Load(path)
	if loaded.Path() != path {
		t.Errorf("Load(%q).Path() = %q", path, loaded.Path())
	}
	if closed, err := loaded.Closed(); err != nil || !closed {
		t.Errorf("Closed after Remove = %v, %v; want true", closed, err)
	}
	if err := loaded.Do(func() error { return nil }); !errdefs.IsNotFound(err) {
		t.Errorf("Do on a removed namespace = %v, want NotFound", err)
	}
	if err := loaded.Remove(); err != nil {
		t.Errorf("Remove of a loaded, gone namespace: %v", err)
	}
}

func TestClosedWhenUnmountedButPresent(t *testing.T) {
	requireRoot(t)
	ns := newNS(t, t.TempDir())
	if err := unix.Unmount(ns.Path(), unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if closed, err := Load(ns.Path()).Closed(); err != nil || !closed {
		t.Errorf("Closed on a plain file = %v, %v; want true", closed, err)
	}
	if err := ns.Do(func() error { return nil }); !errdefs.IsNotFound(err) {
		t.Errorf("Do on an unmounted pin = %v, want NotFound", err)
	}
}

func TestLoadSurvivesReload(t *testing.T) {
	requireRoot(t)
	ns := newNS(t, t.TempDir())
	loaded := Load(ns.Path())
	if closed, err := loaded.Closed(); err != nil || closed {
		t.Fatalf("Closed on a loaded live pin = %v, %v", closed, err)
	}
	var inside uint64
	err := loaded.Do(func() error {
		var st unix.Stat_t
		err := unix.Stat(threadNetNS, &st)
		inside = st.Ino
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if inside != inode(t, ns.Path()) {
		t.Errorf("loaded namespace entered %d, want %d", inside, inode(t, ns.Path()))
	}
}

// A namespace made by a process (a pause container in a user namespace)
// is pinned by Reserve and PinFrom, and outlives the process.
func TestReserveAndPinFrom(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "netns")
	ns, err := Reserve(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Remove(); err != nil {
			t.Error(err)
		}
	})
	if closed, err := ns.Closed(); err != nil || !closed {
		t.Errorf("Closed before PinFrom = %v, %v; want true", closed, err)
	}
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	want := inode(t, fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
	if err := ns.PinFrom(cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal(err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if got := inode(t, ns.Path()); got != want {
		t.Errorf("pin holds namespace %d, the process had %d", got, want)
	}
	if closed, err := ns.Closed(); err != nil || closed {
		t.Errorf("Closed after PinFrom = %v, %v; want false", closed, err)
	}
	if err := ns.PinFrom(999999999); err == nil {
		t.Error("PinFrom of a missing process succeeded")
	}
}
