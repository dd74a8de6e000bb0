//go:build !linux

package manager

import (
	"fmt"
	"runtime"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/mount"
)

func canPerform(t string) error {
	return fmt.Errorf("mount type %q: mounting on %s: %w", t, runtime.GOOS, errdefs.ErrNotImplemented)
}

func perform(m mount.Mount, mp string) error { return canPerform(m.Type) }
