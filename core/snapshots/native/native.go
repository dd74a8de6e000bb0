// Package native is the snapshotter of last resort, for filesystems that
// overlayfs cannot use: every snapshot is a full copy of its parent, mounted
// with a bind mount. It costs disk and time in proportion to the image, but
// needs nothing from the kernel beyond bind mounts.
//
// Layout under the root:
//
//	metadata.db       snapshot records (core/snapshots/storage)
//	snapshots/<id>    the snapshot's tree
//	trash/            directories being deleted by Cleanup
//
// A new snapshot is copied into a temporary directory beside the others and
// renamed into place in the write transaction that records it, so that a
// crash leaves either a whole snapshot or a directory no record names,
// which Cleanup deletes. The copy itself runs outside any transaction, so
// that a large copy does not hold up other changes. Remove only deletes the
// record; Cleanup frees the disk.
package native

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/core/snapshots/storage"
	"github.com/hullrt/hull/internal/fsfull"
)

// Snapshotter is the native snapshotter. It implements
// snapshots.Snapshotter and snapshots.Cleaner.
type Snapshotter struct {
	root string
	ms   *storage.MetaStore

	// making holds the names of the temporary directories of creations
	// in progress, which Cleanup must spare.
	mu     sync.Mutex
	making map[string]struct{}
}

var (
	_ snapshots.Snapshotter = (*Snapshotter)(nil)
	_ snapshots.Cleaner     = (*Snapshotter)(nil)
)

// New opens the snapshotter at root, creating it if needed.
func New(root string) (*Snapshotter, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{root, filepath.Join(root, "snapshots")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	ms, err := storage.NewMetaStore(filepath.Join(root, "metadata.db"))
	if err != nil {
		return nil, err
	}
	return &Snapshotter{root: root, ms: ms, making: map[string]struct{}{}}, nil
}

func (s *Snapshotter) snapshotsDir() string { return filepath.Join(s.root, "snapshots") }

func (s *Snapshotter) dir(id uint64) string {
	return filepath.Join(s.snapshotsDir(), strconv.FormatUint(id, 10))
}

// Stat returns the Info of snapshot key.
func (s *Snapshotter) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	var info snapshots.Info
	err := s.ms.View(ctx, func(tx *storage.Tx) error {
		var err error
		_, info, _, err = tx.GetInfo(key)
		return err
	})
	return info, err
}

// Update changes the labels of snapshot info.Name.
func (s *Snapshotter) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	var updated snapshots.Info
	err := s.ms.Update(ctx, func(tx *storage.Tx) error {
		var err error
		updated, err = tx.UpdateInfo(info, fieldpaths...)
		return err
	})
	return updated, err
}

// Usage returns the disk snapshot key uses: measured now for an active
// snapshot, as measured at Commit for a committed one. Each snapshot is a
// full copy, so this includes what its parents hold.
func (s *Snapshotter) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	return s.ms.Usage(ctx, key, s.dir)
}

// Mounts returns the mounts of active snapshot or view key.
func (s *Snapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	snap, err := s.ms.Snapshot(ctx, key)
	if err != nil {
		return nil, err
	}
	return s.mounts(snap), nil
}

func (s *Snapshotter) mounts(snap storage.Snapshot) []mount.Mount {
	mode := "rw"
	if snap.Kind == snapshots.KindView {
		mode = "ro"
	}
	return []mount.Mount{{Type: "bind", Source: s.dir(snap.ID), Options: []string{mode, "rbind"}}}
}

// Prepare makes active snapshot key, a copy of parent, and returns its
// mounts.
func (s *Snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	m, err := s.create(ctx, snapshots.KindActive, key, parent, opts)
	return m, s.full(err)
}

// View makes view key, a copy of parent, and returns its mounts.
func (s *Snapshotter) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	m, err := s.create(ctx, snapshots.KindView, key, parent, opts)
	return m, s.full(err)
}

// full names the snapshotter's filesystem in err if err says it is full.
func (s *Snapshotter) full(err error) error { return fsfull.Wrap(err, "snapshotter native", s.root) }

func (s *Snapshotter) create(ctx context.Context, kind snapshots.Kind, key, parent string, opts []snapshots.Opt) ([]mount.Mount, error) {
	// Check what can be checked before a copy that may take long; the
	// transaction at the end checks it all again.
	var parentID uint64
	err := s.ms.View(ctx, func(tx *storage.Tx) error {
		if key == "" {
			return fmt.Errorf("snapshot key must not be empty: %w", errdefs.ErrInvalidArgument)
		}
		if _, _, _, err := tx.GetInfo(key); err == nil {
			return fmt.Errorf("snapshot %q: %w", key, errdefs.ErrAlreadyExists)
		}
		if parent == "" {
			return nil
		}
		id, info, _, err := tx.GetInfo(parent)
		if err != nil {
			return fmt.Errorf("parent of %q: %w", key, err)
		}
		if info.Kind != snapshots.KindCommitted {
			return fmt.Errorf("parent %q of snapshot %q is not committed: %w", parent, key, errdefs.ErrInvalidArgument)
		}
		parentID = id
		return nil
	})
	if err != nil {
		return nil, err
	}

	tmp, err := s.tempDir()
	if err != nil {
		return nil, err
	}
	defer s.doneWith(tmp)
	if parent != "" {
		if err := copyTree(ctx, s.dir(parentID), tmp); err != nil {
			return nil, fmt.Errorf("copy parent %q of snapshot %q: %w", parent, key, err)
		}
	} else if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}

	var snap storage.Snapshot
	// Alone: the copy in tmp is placed once and cannot be made again
	// inside the transaction, as a shared one may need.
	err = s.ms.UpdateAlone(ctx, func(tx *storage.Tx) error {
		var err error
		if snap, err = tx.CreateSnapshot(kind, key, parent, opts...); err != nil {
			return err
		}
		if len(snap.ParentIDs) > 0 && snap.ParentIDs[0] != parentID {
			return fmt.Errorf("snapshot %q: parent %q was replaced during the copy: %w", key, parent, errdefs.ErrAborted)
		}
		if err := storage.PlaceDir(tmp, s.dir(snap.ID)); err != nil {
			return fmt.Errorf("create snapshot %q: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.mounts(snap), nil
}

// tempDir makes a temporary directory for a new snapshot and registers it
// with Cleanup as in use, in one step under the lock, so that Cleanup never
// sees it unregistered.
func (s *Snapshotter) tempDir() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tmp, err := os.MkdirTemp(s.snapshotsDir(), "new-")
	if err != nil {
		return "", err
	}
	s.making[filepath.Base(tmp)] = struct{}{}
	return tmp, nil
}

// doneWith removes what is left of a creation's temporary directory (all of
// it if the creation failed, nothing if it was moved into place) and
// unregisters it.
func (s *Snapshotter) doneWith(tmp string) {
	os.RemoveAll(tmp)
	s.mu.Lock()
	delete(s.making, filepath.Base(tmp))
	s.mu.Unlock()
}

func (s *Snapshotter) inProgress(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.making[name]
	return ok
}

// Commit seals active snapshot key as committed snapshot name, recording
// its disk usage. snapshots.WithParent is refused with
// errdefs.ErrNotImplemented: a native snapshot is a whole tree, copied
// from its parent when prepared, so one prepared alone cannot become a
// child afterwards.
func (s *Snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	parent, err := snapshots.ParentOf(opts)
	if err != nil {
		return err
	}
	if parent != "" {
		return fmt.Errorf("commit %q onto %q: the native snapshotter copies a parent when preparing and cannot give a snapshot one later: %w", key, parent, errdefs.ErrNotImplemented)
	}
	return s.full(s.ms.Commit(ctx, name, key, s.dir, opts...))
}

// Remove removes snapshot key, which must have no children. Its directory
// stays until Cleanup.
func (s *Snapshotter) Remove(ctx context.Context, key string) error {
	return s.ms.RemoveSnapshot(ctx, key)
}

// Walk calls fn for each snapshot matching any of filters.
func (s *Snapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	// fn runs after the transaction: it may call back into the
	// snapshotter, and a write from inside a read transaction can
	// deadlock bbolt.
	var infos []snapshots.Info
	if err := s.ms.View(ctx, func(tx *storage.Tx) error {
		return tx.WalkInfo(func(_ uint64, info snapshots.Info) error {
			infos = append(infos, info)
			return nil
		}, filters...)
	}); err != nil {
		return err
	}
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(ctx, info); err != nil {
			return err
		}
	}
	return nil
}

// Cleanup deletes the directories of removed snapshots and whatever an
// interrupted creation or Cleanup left behind.
func (s *Snapshotter) Cleanup(ctx context.Context) error {
	return s.ms.CleanupDirs(ctx, s.snapshotsDir(), filepath.Join(s.root, "trash"), s.inProgress)
}

// Close closes the snapshotter's database.
func (s *Snapshotter) Close() error { return s.ms.Close() }
