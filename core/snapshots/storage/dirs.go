package storage

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/internal/durable"
)

// PlaceDir moves the directory a snapshotter prepared at tmp to target, the
// directory of a snapshot whose record the current write transaction has
// just made, and makes the move durable before the transaction commits:
// otherwise a crash could leave a record whose directory never reached the
// disk.
//
// Anything already at target is replaced. It can only be what a
// transaction that failed to commit left there: the ID was allocated in that
// transaction, rolled back with it and allocated again in this one. As that
// is rare, the move is tried first and the leftover removed only when the
// move finds one.
func PlaceDir(tmp, target string) error {
	if err := MoveDir(tmp, target); err != nil {
		return err
	}
	return durable.SyncDir(filepath.Dir(target))
}

// MoveDir is PlaceDir without the sync of target's parent directory, for a
// transaction that places many snapshots' directories in one parent: it
// syncs that once (durable.SyncDir) after the last move, before it
// commits.
func MoveDir(tmp, target string) error {
	if err := durable.SyncDir(tmp); err != nil {
		return err
	}
	// rename(2) itself, not os.Rename, which looks at target first.
	err := unix.Rename(tmp, target)
	if err != nil {
		if _, serr := os.Lstat(target); serr == nil {
			if err := os.RemoveAll(target); err != nil {
				return fmt.Errorf("remove leftover %s: %w", target, err)
			}
			err = unix.Rename(tmp, target)
		}
	}
	if err != nil {
		return fmt.Errorf("move new snapshot %s into place at %s: %w", tmp, target, err)
	}
	return nil
}
