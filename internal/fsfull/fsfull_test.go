package fsfull

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
)

func TestWrapNamesTheFilesystem(t *testing.T) {
	dir := t.TempDir()
	cause := &os.PathError{Op: "write", Path: dir + "/data", Err: syscall.ENOSPC}
	err := Wrap(fmt.Errorf("write ingest: %w", cause), "content store", dir)
	if !errdefs.IsResourceExhausted(err) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Wrap(ENOSPC) = %v: want ResourceExhausted wrapping ENOSPC", err)
	}
	mnt := MountPoint(dir)
	if mnt == "" || !strings.HasPrefix(dir, mnt) {
		t.Fatalf("MountPoint(%s) = %q", dir, mnt)
	}
	msg := err.Error()
	for _, want := range []string{"no space left on device on " + mnt, "content store at " + dir} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if again := Wrap(fmt.Errorf("outer: %w", err), "metadata", "/x"); strings.Count(again.Error(), "resource exhausted") != 1 {
		t.Errorf("wrapped twice: %v", again)
	}
	if q := Wrap(syscall.EDQUOT, "content store", dir); !errdefs.IsResourceExhausted(q) {
		t.Errorf("EDQUOT: %v", q)
	}
	other := errors.New("boom")
	if Wrap(other, "content store", dir) != other || Wrap(nil, "x", dir) != nil {
		t.Error("Wrap changed an error that is not about space")
	}
}

func TestMountPointOfProc(t *testing.T) {
	if got := MountPoint("/proc/self"); got != "/proc" {
		t.Errorf("MountPoint(/proc/self) = %q, want /proc", got)
	}
	if got := MountPoint("/"); got != "/" {
		t.Errorf("MountPoint(/) = %q", got)
	}
}
