//go:build !linux

package mount

import (
	"fmt"
	"runtime"

	"github.com/containerd/errdefs"
)

func notSupported() error {
	return fmt.Errorf("mounting on %s: %w", runtime.GOOS, errdefs.ErrNotImplemented)
}

// All mounts mounts at target; only Linux can.
func All(mounts []Mount, target string) error { return notSupported() }

// Unmount unmounts target; only Linux can.
func Unmount(target string) error { return notSupported() }

// UnmountAll unmounts everything at target; only Linux can.
func UnmountAll(target string) error { return notSupported() }

// MountedUnder lists the mount points at or below dir; only Linux can.
func MountedUnder(dir string) ([]string, error) { return nil, notSupported() }
