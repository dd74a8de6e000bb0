package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hullrt/hull/core/mount"
)

// CleanupDirs frees the directories of dir that belong to no snapshot: those
// whose name is not the decimal ID of a live snapshot and that keep (if not
// nil) does not claim. They are what Remove left for later and what a crash
// left half made.
//
// The unused directories are moved to trash inside a write transaction, so
// that no snapshotter operation (which makes and renames its directories in
// write transactions) can be between steps while the set of live IDs is
// read; they are deleted afterwards, outside it, where a slow deletion
// blocks nobody. A directory with something mounted in it is left alone and
// reported, since deleting it would delete through the mount.
func (ms *MetaStore) CleanupDirs(ctx context.Context, dir, trash string, keep func(name string) bool) error {
	ms.cleanMu.Lock()
	defer ms.cleanMu.Unlock()
	if err := os.MkdirAll(trash, 0o700); err != nil {
		return err
	}
	var errs []error
	// Alone: the moves to trash are of directories it did not make.
	err := ms.UpdateAlone(ctx, func(tx *Tx) error {
		ids, err := tx.IDMap()
		if err != nil {
			return err
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		inUse, err := mountChecker(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			name := e.Name()
			if id, err := strconv.ParseUint(name, 10, 64); err == nil && strconv.FormatUint(id, 10) == name {
				if _, live := ids[id]; live {
					continue
				}
			}
			if keep != nil && keep(name) {
				continue
			}
			p := filepath.Join(dir, name)
			if err := inUse(name); err != nil {
				errs = append(errs, err)
				continue
			}
			dest := filepath.Join(trash, name+"-"+strconv.FormatInt(time.Now().UnixNano(), 10))
			if err := os.Rename(p, dest); err != nil {
				errs = append(errs, fmt.Errorf("move unused %s aside: %w", p, err))
			}
		}
		return nil
	})
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	return errors.Join(append(errs, emptyTrash(ctx, trash))...)
}

// emptyTrash deletes everything in trash, including what an earlier
// cleanup moved there and did not finish deleting.
func emptyTrash(ctx context.Context, trash string) error {
	entries, err := os.ReadDir(trash)
	if err != nil {
		return err
	}
	inUse, err := mountChecker(trash)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		p := filepath.Join(trash, e.Name())
		if err := inUse(e.Name()); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// mountChecker returns a function that reports an error for an entry of dir
// with something mounted at or below it. It reads the mount table once.
func mountChecker(dir string) (func(name string) error, error) {
	mounted, err := mount.MountedUnder(dir)
	if err != nil {
		return nil, fmt.Errorf("check mounts under %s: %w", dir, err)
	}
	if len(mounted) == 0 {
		return func(string) error { return nil }, nil
	}
	// MountedUnder reports real paths.
	real := dir
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		real = r
	}
	return func(name string) error {
		p := filepath.Join(real, name)
		var here []string
		for _, m := range mounted {
			if m == p || strings.HasPrefix(m, p+"/") {
				here = append(here, m)
			}
		}
		if len(here) > 0 {
			return fmt.Errorf("not removing %s: %s mounted there", filepath.Join(dir, name), strings.Join(here, ", "))
		}
		return nil
	}, nil
}
