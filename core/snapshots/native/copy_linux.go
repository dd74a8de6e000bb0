package native

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// copyTree copies the contents of directory src into the existing directory
// dst, and src's own metadata onto dst, so that dst is the same tree: modes,
// owners, times, extended attributes (ACLs and file capabilities among
// them), symlinks, device nodes, fifos and sockets, with files hard-linked
// within src hard-linked within dst.
func copyTree(ctx context.Context, src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	c := &copier{ctx: ctx, links: map[fileID]string{}}
	return c.dir(src, dst, fi)
}

type fileID struct{ dev, ino uint64 }

type copier struct {
	ctx context.Context
	// links maps the inodes with several links to their first copy.
	links map[fileID]string
}

func (c *copier) dir(src, dst string, fi os.FileInfo) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		s, d := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		efi, err := os.Lstat(s)
		if err != nil {
			return err
		}
		if err := c.entry(s, d, efi); err != nil {
			return err
		}
	}
	// Last: making the entries changed the directory's times.
	return copyMetadata(src, dst, fi)
}

func (c *copier) entry(src, dst string, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("copy %s: no stat data", src)
	}
	if !fi.IsDir() && st.Nlink > 1 {
		id := fileID{uint64(st.Dev), st.Ino}
		if first, ok := c.links[id]; ok {
			if err := os.Link(first, dst); err != nil {
				return fmt.Errorf("copy hard link %s: %w", src, err)
			}
			return nil
		}
		c.links[id] = dst
	}
	mode := fi.Mode()
	switch {
	case mode.IsDir():
		if err := os.Mkdir(dst, 0o700); err != nil {
			return err
		}
		return c.dir(src, dst, fi)
	case mode.IsRegular():
		if err := copyFile(src, dst); err != nil {
			return err
		}
	case mode&os.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	case mode&(os.ModeDevice|os.ModeCharDevice|os.ModeNamedPipe|os.ModeSocket) != 0:
		// st.Mode carries the file type mknod needs.
		if err := unix.Mknod(dst, st.Mode, int(st.Rdev)); err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
	default:
		return fmt.Errorf("copy %s: unsupported file type %v", src, mode.Type())
	}
	return copyMetadata(src, dst, fi)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	// io.Copy between files uses copy_file_range, which lets the
	// filesystem share or copy extents without a trip through us.
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

// copyMetadata gives dst src's owner, mode, extended attributes and times,
// in that order: a chown clears set-id bits and file capabilities, and every
// change but the last updates times.
func copyMetadata(src, dst string, fi os.FileInfo) error {
	st := fi.Sys().(*syscall.Stat_t)
	if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	isLink := fi.Mode()&os.ModeSymlink != 0
	if !isLink {
		if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
			return fmt.Errorf("chmod %s: %w", dst, err)
		}
	}
	if err := copyXattrs(src, dst, isLink); err != nil {
		return err
	}
	ts := []unix.Timespec{unix.NsecToTimespec(st.Atim.Nano()), unix.NsecToTimespec(st.Mtim.Nano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", dst, err)
	}
	return nil
}

func copyXattrs(src, dst string, isLink bool) error {
	names, err := listXattrs(src)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		return fmt.Errorf("list extended attributes of %s: %w", src, err)
	}
	for _, name := range names {
		v, err := getXattr(src, name)
		if err != nil {
			if errors.Is(err, unix.ENODATA) {
				continue // removed meanwhile
			}
			return fmt.Errorf("read extended attribute %s of %s: %w", name, src, err)
		}
		if err := unix.Lsetxattr(dst, name, v, 0); err != nil {
			// Only trusted and security attributes can be set on a
			// symlink; others cannot exist on one either, but a
			// filesystem may report them anyway.
			if errors.Is(err, unix.ENOTSUP) || isLink && errors.Is(err, unix.EPERM) {
				continue
			}
			return fmt.Errorf("set extended attribute %s of %s: %w", name, dst, err)
		}
	}
	return nil
}

// listXattrs returns the names of path's extended attributes, retrying if
// they grow between sizing and reading.
func listXattrs(path string) ([]string, error) {
	for {
		n, err := unix.Llistxattr(path, nil)
		if err != nil || n == 0 {
			return nil, err
		}
		buf := make([]byte, n)
		n, err = unix.Llistxattr(path, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var names []string
		start := 0
		for i, b := range buf[:n] {
			if b == 0 {
				if i > start {
					names = append(names, string(buf[start:i]))
				}
				start = i + 1
			}
		}
		return names, nil
	}
}

func getXattr(path, name string) ([]byte, error) {
	for {
		n, err := unix.Lgetxattr(path, name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, n)
		n, err = unix.Lgetxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}
