// Package durable makes what the stores write to the filesystem survive a
// crash: a new name (a linked blob, a renamed snapshot directory) is on
// disk only once its directory is synced.
package durable

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// SyncDir syncs directory dir, so that the names made or removed in it
// are on disk.
//
// It opens the directory with open(2) rather than os.Open: os.Open tries
// to register every file with the runtime's poller, which for a directory
// costs four more system calls each time, and the stores sync a directory
// for every blob and snapshot they make.
func SyncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	err = unix.Fsync(fd)
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
