// Package tmpfstest gives tests a small filesystem of their own to fill: a
// tmpfs of a fixed size, so that "no space left on device" comes from the
// kernel at a known point instead of from a mock, without touching the
// machine's real disks.
package tmpfstest

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// Mount mounts a tmpfs of size bytes on a new temporary directory and
// returns the directory; it is unmounted when the test ends. The test is
// skipped where mounting is not allowed (not root, no CAP_SYS_ADMIN).
func Mount(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		if os.Geteuid() != 0 || err == unix.EPERM {
			t.Skipf("mount tmpfs on %s: %v (needs root)", dir, err)
		}
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	// Registered after TempDir's own cleanup, so it runs before it: the
	// directory is removed once it is a plain directory again.
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount tmpfs %s: %v", dir, err)
		}
	})
	return dir
}

// Fill writes a file named name in dir until the filesystem is full, so that
// the next allocation there fails with ENOSPC. It returns the file's path,
// whose removal frees the space again.
func Fill(t testing.TB, dir, name string) string {
	t.Helper()
	p := dir + "/" + name
	f, err := os.Create(p)
	if err != nil {
		t.Fatalf("fill %s: %v", dir, err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, unix.ENOSPC) {
				// Single pages may still be free: take them too.
				small := make([]byte, 512)
				for {
					if _, err := f.Write(small); err != nil {
						return p
					}
				}
			}
			t.Fatalf("fill %s: %v", dir, err)
		}
	}
}
