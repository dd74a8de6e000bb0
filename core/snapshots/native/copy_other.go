//go:build !linux

package native

import (
	"context"
	"fmt"
	"runtime"

	"github.com/containerd/errdefs"
)

func copyTree(ctx context.Context, src, dst string) error {
	return fmt.Errorf("copying trees on %s: %w", runtime.GOOS, errdefs.ErrNotImplemented)
}
