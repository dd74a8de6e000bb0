package daemon

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// holdLock has another process hold root's lock (as a child of a killed
// hulld does until its exec) and returns once it holds it.
func holdLock(t *testing.T, root, seconds string) *exec.Cmd {
	t.Helper()
	path := filepath.Join(root, "hulld.lock")
	cmd := exec.Command("flock", path, "sleep", seconds)
	if err := cmd.Start(); err != nil {
		t.Fatalf("flock(1), from util-linux: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	f, err := os.Open(path)
	for err != nil { // flock creates the file
		f, err = os.Open(path)
	}
	defer f.Close()
	for unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
	}
	return cmd
}

// TestLockWaitsForAnOrphanHolder: a lock held while the pid it names is
// gone (a killed hulld's child on its way to exec) is waited for; one
// whose named holder lives is refused at once, naming it.
func TestLockWaitsForAnOrphanHolder(t *testing.T) {
	root := t.TempDir()
	holder := holdLock(t, root, "0.5")
	if err := os.WriteFile(filepath.Join(root, "hulld.lock"), []byte("2147483646\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := lockRoot(root)
	if err != nil {
		t.Fatalf("lock held by an orphan: %v", err)
	}
	f.Close()
	holder.Wait()

	root2 := t.TempDir()
	holdLock(t, root2, "30")
	self := strconv.Itoa(os.Getpid())
	if err := os.WriteFile(filepath.Join(root2, "hulld.lock"), []byte(self+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if _, err := lockRoot(root2); err == nil || !strings.Contains(err.Error(), "pid "+self) {
		t.Fatalf("lock held by a live hulld: %v; want it refused naming pid %s", err, self)
	}
	if time.Since(began) > 2*time.Second {
		t.Errorf("a live holder's lock was waited for (%s)", time.Since(began))
	}
}
