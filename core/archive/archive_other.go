//go:build !linux

package archive

import (
	"context"
	"fmt"
	"io"

	"github.com/containerd/errdefs"
)

func notSupported() error {
	return fmt.Errorf("archive: layers can only be applied and created on Linux: %w", errdefs.ErrNotImplemented)
}

// Apply writes the tar stream r under root; only Linux can.
func Apply(ctx context.Context, root string, r io.Reader, opts ...ApplyOpt) (int64, error) {
	return 0, notSupported()
}

// Diff writes the changes from lowerRoot to upperRoot as a tar; only Linux
// can.
func Diff(ctx context.Context, lowerRoot, upperRoot string, w io.Writer) error {
	return notSupported()
}

// DiffOverlayUpper writes an overlay upper directory as a tar; only Linux
// can.
func DiffOverlayUpper(ctx context.Context, upperdir string, lowerRoots []string, w io.Writer) error {
	return notSupported()
}

// HasImplicitParents reports whether a detached apply left directories to
// fix; only Linux can.
func HasImplicitParents(root string) (bool, error) {
	return false, notSupported()
}

// FixImplicitParents gives the directories a detached apply created the
// metadata of the lower layers; only Linux can.
func FixImplicitParents(root string, lowers ...string) error {
	return notSupported()
}
