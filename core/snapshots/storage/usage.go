package storage

import (
	"context"
	"io/fs"
	"path/filepath"
	"syscall"

	"github.com/hullrt/hull/core/snapshots"
)

// DiskUsage measures the tree at dir as containerd does: the number of
// distinct inodes (a file with several hard links counts once) and the disk
// they occupy, in allocated blocks rather than apparent sizes, so that
// sparse files count for what they use.
func DiskUsage(ctx context.Context, dir string) (snapshots.Usage, error) {
	type fileID struct{ dev, ino uint64 }
	seen := map[fileID]struct{}{}
	var u snapshots.Usage
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			u.Inodes++
			u.Size += fi.Size()
			return nil
		}
		id := fileID{uint64(st.Dev), st.Ino}
		if _, dup := seen[id]; dup {
			return nil
		}
		seen[id] = struct{}{}
		u.Inodes++
		u.Size += st.Blocks * 512
		return nil
	})
	return u, err
}
