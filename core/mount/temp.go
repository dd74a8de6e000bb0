package mount

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// TempMountOpt configures WithTempMount.
type TempMountOpt func(*tempMountConfig)

type tempMountConfig struct {
	dir string
}

// WithTempMountDir makes WithTempMount create its mount point in dir rather
// than in os.TempDir(), for callers that keep their scratch space on the
// same filesystem as their data.
func WithTempMountDir(dir string) TempMountOpt {
	return func(c *tempMountConfig) { c.dir = dir }
}

// WithTempMount mounts mounts at a new temporary directory, calls fn with
// it, and unmounts and removes the directory again, also when fn fails or
// panics. fn's error comes first in the result; an unmount failure is
// joined to it.
//
// The directory is removed only if it is empty once unmounted: removing a
// tree that is still mounted would delete the mounted files.
func WithTempMount(ctx context.Context, mounts []Mount, fn func(root string) error, opts ...TempMountOpt) (retErr error) {
	var cfg tempMountConfig
	for _, o := range opts {
		o(&cfg)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	root, err := os.MkdirTemp(cfg.dir, "hull-mount-")
	if err != nil {
		return fmt.Errorf("create temporary mount point: %w", err)
	}
	if err := All(mounts, root); err != nil {
		// All unmounted what it had mounted.
		return errors.Join(err, os.Remove(root))
	}
	defer func() {
		uerr := UnmountAll(root)
		if uerr != nil {
			retErr = errors.Join(retErr, fmt.Errorf("unmount temporary mount %s: %w", root, uerr))
			return
		}
		if rerr := os.Remove(root); rerr != nil {
			retErr = errors.Join(retErr, fmt.Errorf("remove temporary mount point: %w", rerr))
		}
	}()
	return fn(root)
}
