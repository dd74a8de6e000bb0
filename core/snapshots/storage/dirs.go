package storage

import (
	"fmt"
	"os"
	"path/filepath"
)

// PlaceDir moves the directory a snapshotter prepared at tmp to target, the
// directory of a snapshot whose record the current write transaction has
// just made, and makes the move durable before the transaction commits:
// otherwise a crash could leave a record whose directory never reached the
// disk.
//
// Anything already at target is removed first. It can only be what a
// transaction that failed to commit left there: the ID was allocated in that
// transaction, rolled back with it and allocated again in this one.
func PlaceDir(tmp, target string) error {
	if err := os.RemoveAll(target); err != nil {
		return fmt.Errorf("remove leftover %s: %w", target, err)
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, target); err != nil {
		return fmt.Errorf("move new snapshot into place: %w", err)
	}
	return syncDir(filepath.Dir(target))
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
