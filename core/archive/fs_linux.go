package archive

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// procFd names the file an fd refers to. The kernel resolves the magic link
// to exactly that inode, which lets chmod, setxattr and utimensat work on
// O_PATH descriptors (whose f* variants fail with EBADF) without a path
// that could be swapped for a symbolic link.
func procFd(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// procFdChild names the entry name of the directory dirfd. Only the
// directory is reached through the magic link; name is a single component,
// which the l* system calls do not follow.
func procFdChild(dirfd int, name string) string { return procFd(dirfd) + "/" + name }

// openInRoot opens p (relative, cleaned) below the directory rootfd with
// every symbolic link and ".." resolved as if rootfd were "/".
func openInRoot(rootfd int, p string, flags int) (int, error) {
	return openat2(rootfd, p, flags, unix.RESOLVE_IN_ROOT|unix.RESOLVE_NO_MAGICLINKS)
}

// openBeneath opens p below dirfd without following any symbolic link, as
// overlayfs looks paths up in its lower layers.
func openBeneath(dirfd int, p string, flags int) (int, error) {
	return openat2(dirfd, p, flags, unix.RESOLVE_BENEATH|unix.RESOLVE_NO_SYMLINKS|unix.RESOLVE_NO_MAGICLINKS)
}

func openat2(dirfd int, p string, flags int, resolve uint64) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: resolve}
	for range 64 {
		fd, err := unix.Openat2(dirfd, p, &how)
		switch {
		case err == nil:
			return fd, nil
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			// RESOLVE_IN_ROOT gives EAGAIN when a concurrent rename might
			// have let the lookup escape; it is safe to retry.
			continue
		case errors.Is(err, unix.ENOSYS):
			return -1, fmt.Errorf("openat2 (Linux 5.6 or later) is required to extract layers safely: %w", err)
		default:
			return -1, err
		}
	}
	return -1, unix.EAGAIN
}

// openDirPath opens a directory the caller names, following its path: the
// caller, not the layer, chose it.
func openDirPath(p string) (int, error) {
	fd, err := unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return fd, nil
}

// readDirNames lists the directory dirfd refers to (an O_PATH descriptor is
// fine), unsorted.
func readDirNames(dirfd int) ([]string, error) {
	fd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), ".")
	defer f.Close()
	return f.Readdirnames(-1)
}

// removeAllAt removes name from the directory dirfd, with everything below
// it if it is a directory. It never follows a symbolic link: each level is
// opened O_NOFOLLOW relative to its parent's descriptor. A missing name is
// not an error.
func removeAllAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	fd, oerr := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if oerr != nil {
		if errors.Is(oerr, unix.ENOENT) {
			return nil
		}
		if errors.Is(oerr, unix.ENOTDIR) || errors.Is(oerr, unix.ELOOP) {
			return err // not a directory after all: the unlink error stands
		}
		return oerr
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	for {
		// Batches keep memory small for huge directories; each batch is
		// removed before the next is read, so names never repeat.
		names, rerr := f.Readdirnames(1024)
		for _, n := range names {
			if err := removeAllAt(fd, n); err != nil {
				return err
			}
		}
		if rerr == io.EOF || (rerr == nil && len(names) == 0) {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// fdWriter writes to a raw descriptor. It has no ReadFrom, so io.CopyBuffer
// uses the caller's buffer rather than allocating one per file.
type fdWriter int

func (w fdWriter) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Write(int(w), p[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			return n, io.ErrShortWrite
		}
		n += m
	}
	return n, nil
}

// fdReader reads from a raw descriptor; see fdWriter.
type fdReader int

func (r fdReader) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(int(r), p)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 && len(p) > 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

func timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

func timeOf(ts unix.Timespec) time.Time { return time.Unix(ts.Sec, ts.Nsec) }

// listXattrs returns the extended attributes of the file at p, not
// following a final symbolic link, without those skipXattr leaves out.
func listXattrs(p string) (map[string]string, error) {
	size, err := unix.Llistxattr(p, nil)
	for {
		if err != nil {
			if errors.Is(err, unix.ENOTSUP) {
				return nil, nil
			}
			return nil, err
		}
		if size == 0 {
			return nil, nil
		}
		buf := make([]byte, size)
		size, err = unix.Llistxattr(p, buf)
		if errors.Is(err, unix.ERANGE) {
			// Grew since the size query.
			size, err = unix.Llistxattr(p, nil)
			continue
		}
		if err != nil {
			return nil, err
		}
		return readXattrValues(p, buf[:size])
	}
}

func readXattrValues(p string, names []byte) (map[string]string, error) {
	var out map[string]string
	for len(names) > 0 {
		i := 0
		for i < len(names) && names[i] != 0 {
			i++
		}
		name := string(names[:i])
		if i < len(names) {
			i++
		}
		names = names[i:]
		if name == "" || skipXattr(name) {
			continue
		}
		v, err := getXattr(p, name)
		if errors.Is(err, unix.ENODATA) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("get xattr %s: %w", name, err)
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = v
	}
	return out, nil
}

// getXattr reads one extended attribute of p, not following a final
// symbolic link.
func getXattr(p, name string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			size, serr := unix.Lgetxattr(p, name, nil)
			if serr != nil {
				return "", serr
			}
			buf = make([]byte, size+1)
			continue
		}
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
}
