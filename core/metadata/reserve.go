package metadata

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/internal/fsfull"
)

// DefaultReserveSize is how much disk the metadata database keeps in
// reserve for the transactions that free space (see reserve).
const DefaultReserveSize = 4 << 20

// reserve is disk space held back for the database's own use on a full disk.
//
// bbolt writes every change copy-on-write into new pages and grows its file
// with ftruncate, which allocates nothing: a transaction that only deletes
// records still needs fresh disk blocks, and on a full filesystem it fails
// with ENOSPC. Then garbage collection, the one thing that could free the
// disk, cannot commit, and nothing can be deleted through the API either.
// So the database keeps a file of allocated (fallocate'd, not sparse) blocks
// next to itself; a transaction that frees space and fails for want of it
// removes the file and tries again, and the space comes back once a
// collection has freed more than the reserve. Writes that add data never use
// the reserve: a pull that fills the disk must not eat what gc needs.
type reserve struct {
	path string
	size int64
}

// fill (re)creates the reserve file if it is missing or short. It fails on
// a full disk, leaving no partial file behind.
func (r *reserve) fill() error {
	if r.size <= 0 {
		return nil
	}
	if fi, err := os.Stat(r.path); err == nil && fi.Size() >= r.size {
		return nil
	}
	tmp := r.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = unix.Fallocate(int(f.Fd()), 0, 0, r.size)
	if errors.Is(err, unix.EOPNOTSUPP) {
		// Without fallocate, write the blocks out: the point is that they
		// are allocated.
		_, err = f.WriteAt(make([]byte, r.size), 0)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, r.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("metadata reserve %s: %w", r.path, err)
	}
	return nil
}

// release removes the reserve file and reports whether there was one to
// free.
func (r *reserve) release() bool {
	os.Remove(r.path + ".tmp")
	err := os.Remove(r.path)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}

// boltUpdate runs fn in a read-write transaction. A transaction that frees
// space (freeing) and fails because the disk is full is run again once
// after the reserve is released. Errors of a full disk name the database's
// filesystem.
func (db *DB) boltUpdate(freeing bool, fn func(*bolt.Tx) error) error {
	return db.boltUpdateWith(db.bolt.Update, freeing, fn)
}

// boltUpdateWith is boltUpdate running its transactions through update
// (bbolt's own, or the batcher's).
func (db *DB) boltUpdateWith(update func(func(*bolt.Tx) error) error, freeing bool, fn func(*bolt.Tx) error) error {
	err := update(fn)
	if fsfull.Is(err) && freeing {
		// Another deletion of the same batch may have released the
		// reserve already: try again all the same.
		if db.reserve.release() {
			db.log.Warn("metadata database: disk full, released the reserve to let a deletion commit", "path", db.path, "reserve", db.reserve.path)
		}
		err = update(fn)
	}
	if fsfull.Is(err) && !freeing {
		// Whatever was being written, a collection is what can help now
		// (not after a failed collection, which would only fail again).
		db.kickGC()
	}
	return fsfull.Wrap(err, "metadata database", filepath.Dir(db.path))
}
