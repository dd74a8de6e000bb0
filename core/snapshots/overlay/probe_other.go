//go:build !linux

package overlay

import (
	"fmt"
	"runtime"

	"github.com/containerd/errdefs"
)

func probe(root string) (Features, error) {
	return Features{}, fmt.Errorf("overlayfs on %s: %w", runtime.GOOS, errdefs.ErrNotImplemented)
}
