package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Diff writes to w a tar of the changes that turn the tree lowerRoot into
// the tree upperRoot: entries added or changed in upperRoot in full, and a
// ".wh.<name>" whiteout for each entry upperRoot no longer has (one for a
// whole removed directory). Applying it to a copy of lowerRoot reproduces
// upperRoot.
//
// An entry counts as changed if its type, mode, owner, modification time,
// extended attributes, symbolic link target or device number differ, or,
// for a regular file, its size, or its content when the modification times
// have no sub-second part (and so may have lost it on the way). A
// directory's own entry is written only when it changed; its content is
// compared either way.
//
// The output is deterministic: entries in lexical order, each directory
// before its content; PAX headers carrying modification times to the
// nanosecond and extended attributes as SCHILY.xattr records (but not
// trusted.overlay.*, user.overlay.* or security.selinux); no access times
// and no user or group names. Files sharing an inode in upperRoot are
// written once, later names as hard links to the first written. Sockets
// are left out (tar cannot hold them). The trees are read without following
// any symbolic link, so a container that modifies them meanwhile cannot
// make Diff read outside them.
func Diff(ctx context.Context, lowerRoot, upperRoot string, w io.Writer) error {
	lfd, err := openDirPath(lowerRoot)
	if err != nil {
		return fmt.Errorf("archive: diff: %w", err)
	}
	defer unix.Close(lfd)
	ufd, err := openDirPath(upperRoot)
	if err != nil {
		return fmt.Errorf("archive: diff: %w", err)
	}
	defer unix.Close(ufd)
	d := newDiffer(ctx, w)
	if err := d.doubleWalk(lfd, ufd, ""); err != nil {
		return fmt.Errorf("archive: diff: %w", err)
	}
	return d.close()
}

// DiffOverlayUpper writes to w a tar of the changes an overlay upper
// directory holds over its lower layers, without mounting anything. Every
// entry of upperdir is a change, except a directory whose metadata equals
// that of the same directory in the first of lowerRoots (topmost first,
// as in the lowerdir option) that has it: overlayfs copies directories up
// only to hold changed content. Whiteouts (0/0 character devices) become
// ".wh.<name>" entries and trusted.overlay.opaque directories get a
// ".wh..wh..opq" entry; other trusted.overlay.* attributes are left out.
//
// Upper directories written with overlayfs's metacopy or redirect_dir
// features need their lower layers to make sense; DiffOverlayUpper returns
// an errdefs.ErrNotImplemented error for them, and the caller should diff
// the mounted trees instead.
//
// The output follows Diff's rules (ordering, headers, hard links).
func DiffOverlayUpper(ctx context.Context, upperdir string, lowerRoots []string, w io.Writer) error {
	ufd, err := openDirPath(upperdir)
	if err != nil {
		return fmt.Errorf("archive: diff: %w", err)
	}
	defer unix.Close(ufd)
	var lowers []int
	defer func() {
		for _, fd := range lowers {
			unix.Close(fd)
		}
	}()
	for _, l := range lowerRoots {
		fd, err := openDirPath(l)
		if err != nil {
			return fmt.Errorf("archive: diff: lower layer: %w", err)
		}
		lowers = append(lowers, fd)
	}
	d := newDiffer(ctx, w)
	d.lowers = lowers
	if err := d.upperWalk(ufd, "", false); err != nil {
		return fmt.Errorf("archive: diff: %w", err)
	}
	return d.close()
}

type devIno struct{ dev, ino uint64 }

// differ is the state of one Diff or DiffOverlayUpper.
type differ struct {
	ctx    context.Context
	tw     *tar.Writer
	buf    []byte
	lowers []int // DiffOverlayUpper's lower layers
	// links maps inodes with more than one name to the first name
	// written; only such inodes are kept.
	links map[devIno]string
}

func newDiffer(ctx context.Context, w io.Writer) *differ {
	return &differ{ctx: ctx, tw: tar.NewWriter(w), buf: make([]byte, 128<<10), links: map[devIno]string{}}
}

func (d *differ) close() error {
	if err := d.tw.Close(); err != nil {
		return fmt.Errorf("archive: diff: %w", err)
	}
	return nil
}

// sortedNames lists the directory dirfd in lexical order.
func sortedNames(dirfd int) ([]string, error) {
	names, err := readDirNames(dirfd)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// openSubdir opens the directory name in dirfd, never following a symbolic
// link.
func openSubdir(dirfd int, name string) (int, error) {
	return unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// doubleWalk diffs the directory rel, open as lowerfd (-1 if the lower tree
// has no such directory) and upperfd.
func (d *differ) doubleWalk(lowerfd, upperfd int, rel string) error {
	if err := d.ctx.Err(); err != nil {
		return err
	}
	unames, err := sortedNames(upperfd)
	if err != nil {
		return fmt.Errorf("list %s: %w", displayDir(rel), err)
	}
	var lnames []string
	if lowerfd >= 0 {
		if lnames, err = sortedNames(lowerfd); err != nil {
			return fmt.Errorf("list lower %s: %w", displayDir(rel), err)
		}
	}
	i, j := 0, 0
	for i < len(unames) || j < len(lnames) {
		switch {
		case j == len(lnames) || (i < len(unames) && unames[i] < lnames[j]):
			if err := d.added(upperfd, unames[i], rel); err != nil {
				return err
			}
			i++
		case i == len(unames) || lnames[j] < unames[i]:
			if err := d.whiteout(join(rel, whiteoutPrefix+lnames[j])); err != nil {
				return err
			}
			j++
		default:
			if err := d.both(lowerfd, upperfd, unames[i], rel); err != nil {
				return err
			}
			i++
			j++
		}
	}
	return nil
}

// added writes the entry name of upperfd, and its whole content if it is a
// directory.
func (d *differ) added(upperfd int, name, rel string) error {
	st, err := lstatAt(upperfd, name)
	if err != nil {
		return err
	}
	p := join(rel, name)
	if err := d.write(upperfd, name, p, &st, nil); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	sub, err := openSubdir(upperfd, name)
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	defer unix.Close(sub)
	return d.doubleWalk(-1, sub, p)
}

// both diffs name, present in both trees.
func (d *differ) both(lowerfd, upperfd int, name, rel string) error {
	p := join(rel, name)
	ust, err := lstatAt(upperfd, name)
	if err != nil {
		return err
	}
	lst, err := lstatAt(lowerfd, name)
	if err != nil {
		return err
	}
	uxattrs, err := listXattrs(procFdChild(upperfd, name))
	if err != nil {
		return fmt.Errorf("xattrs of %s: %w", p, err)
	}
	changed, err := d.changed(lowerfd, upperfd, name, &lst, &ust, uxattrs)
	if err != nil {
		return fmt.Errorf("compare %s: %w", p, err)
	}
	if changed {
		if err := d.write(upperfd, name, p, &ust, uxattrs); err != nil {
			return err
		}
	}
	if ust.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	usub, err := openSubdir(upperfd, name)
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	defer unix.Close(usub)
	lsub := -1
	if lst.Mode&unix.S_IFMT == unix.S_IFDIR {
		if lsub, err = openSubdir(lowerfd, name); err != nil {
			return fmt.Errorf("open lower %s: %w", p, err)
		}
		defer unix.Close(lsub)
	}
	return d.doubleWalk(lsub, usub, p)
}

// changed reports whether name differs between the two trees.
func (d *differ) changed(lowerfd, upperfd int, name string, lst, ust *unix.Stat_t, uxattrs map[string]string) (bool, error) {
	if lst.Dev == ust.Dev && lst.Ino == ust.Ino {
		return false, nil
	}
	if !sameMeta(lst, ust) {
		return true, nil
	}
	lxattrs, err := listXattrs(procFdChild(lowerfd, name))
	if err != nil {
		return false, err
	}
	if !maps.Equal(lxattrs, uxattrs) {
		return true, nil
	}
	switch ust.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		lt, err := readlinkAt(lowerfd, name)
		if err != nil {
			return false, err
		}
		ut, err := readlinkAt(upperfd, name)
		if err != nil {
			return false, err
		}
		return lt != ut, nil
	case unix.S_IFREG:
		if ust.Mtim.Nsec != 0 {
			return false, nil
		}
		// A whole-second time may have been truncated by a copy or a tar
		// without PAX times: only the content tells.
		return contentDiffers(lowerfd, upperfd, name, d.buf)
	}
	return false, nil
}

// sameMeta compares what the stat of two entries of the same name says.
func sameMeta(a, b *unix.Stat_t) bool {
	if a.Mode != b.Mode || a.Uid != b.Uid || a.Gid != b.Gid || a.Mtim != b.Mtim {
		return false
	}
	switch a.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return a.Size == b.Size
	case unix.S_IFCHR, unix.S_IFBLK:
		return a.Rdev == b.Rdev
	}
	return true
}

func contentDiffers(lowerfd, upperfd int, name string, buf []byte) (bool, error) {
	lf, err := unix.Openat(lowerfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(lf)
	uf, err := unix.Openat(upperfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(uf)
	half := len(buf) / 2
	lb, ub := buf[:half], buf[half:]
	for {
		ln, lerr := io.ReadFull(fdReader(lf), lb)
		un, uerr := io.ReadFull(fdReader(uf), ub)
		if ln != un || !bytes.Equal(lb[:ln], ub[:un]) {
			return true, nil
		}
		lend := lerr == io.EOF || lerr == io.ErrUnexpectedEOF
		uend := uerr == io.EOF || uerr == io.ErrUnexpectedEOF
		if lerr != nil && !lend {
			return false, lerr
		}
		if uerr != nil && !uend {
			return false, uerr
		}
		if lend || uend {
			return lend != uend, nil
		}
	}
}

// upperWalk writes the overlay upper directory rel, open as upperfd.
// hidden is set below an opaque directory, where nothing of the lower
// layers shows.
func (d *differ) upperWalk(upperfd int, rel string, hidden bool) error {
	if err := d.ctx.Err(); err != nil {
		return err
	}
	names, err := sortedNames(upperfd)
	if err != nil {
		return fmt.Errorf("list %s: %w", displayDir(rel), err)
	}
	for _, name := range names {
		p := join(rel, name)
		st, err := lstatAt(upperfd, name)
		if err != nil {
			return err
		}
		ft := st.Mode & unix.S_IFMT
		if ft == unix.S_IFCHR && st.Rdev == 0 {
			if err := d.whiteout(join(rel, whiteoutPrefix+name)); err != nil {
				return err
			}
			continue
		}
		raw, err := rawOverlayXattrs(procFdChild(upperfd, name))
		if err != nil {
			return fmt.Errorf("xattrs of %s: %w", p, err)
		}
		for _, x := range []string{"trusted.overlay.metacopy", "trusted.overlay.redirect"} {
			if _, ok := raw[x]; ok {
				return fmt.Errorf("%s has %s: overlayfs metacopy and redirect_dir upper directories can only be diffed mounted: %w", p, x, errdefs.ErrNotImplemented)
			}
		}
		xattrs, err := listXattrs(procFdChild(upperfd, name))
		if err != nil {
			return fmt.Errorf("xattrs of %s: %w", p, err)
		}
		if ft != unix.S_IFDIR {
			if err := d.write(upperfd, name, p, &st, xattrs); err != nil {
				return err
			}
			continue
		}
		opaque := raw[overlayOpaqueXattr] == "y"
		emit := hidden || opaque
		if !emit {
			same, err := d.sameAsLower(p, &st, xattrs)
			if err != nil {
				return err
			}
			emit = !same
		}
		if emit {
			if err := d.write(upperfd, name, p, &st, xattrs); err != nil {
				return err
			}
		}
		if opaque {
			if err := d.whiteout(p + "/" + whiteoutOpaque); err != nil {
				return err
			}
		}
		sub, err := openSubdir(upperfd, name)
		if err != nil {
			return fmt.Errorf("open %s: %w", p, err)
		}
		err = d.upperWalk(sub, p, hidden || opaque)
		unix.Close(sub)
		if err != nil {
			return err
		}
	}
	return nil
}

// sameAsLower reports whether the directory p of the first lower layer that
// has p has the metadata st and xattrs; then the upper directory is only a
// copy-up holding changed content and needs no entry of its own.
func (d *differ) sameAsLower(p string, st *unix.Stat_t, xattrs map[string]string) (bool, error) {
	for _, lfd := range d.lowers {
		fd, err := openBeneath(lfd, p, unix.O_PATH|unix.O_NOFOLLOW)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return false, nil // something else hides it: the directory is new
		}
		var lst unix.Stat_t
		err = unix.Fstat(fd, &lst)
		if err != nil || lst.Mode&unix.S_IFMT != unix.S_IFDIR || !sameMeta(&lst, st) {
			unix.Close(fd)
			return false, err
		}
		lx, err := listXattrs(procFd(fd) + "/.")
		unix.Close(fd)
		if err != nil {
			return false, err
		}
		return maps.Equal(lx, xattrs), nil
	}
	return false, nil
}

// rawOverlayXattrs returns the trusted.overlay.* attributes of p, which
// listXattrs leaves out.
func rawOverlayXattrs(p string) (map[string]string, error) {
	var out map[string]string
	for _, name := range []string{overlayOpaqueXattr, "trusted.overlay.metacopy", "trusted.overlay.redirect"} {
		v, err := getXattr(p, name)
		if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = v
	}
	return out, nil
}

// whiteout writes a whiteout entry named p.
func (d *differ) whiteout(p string) error {
	return d.tw.WriteHeader(&tar.Header{Name: p, Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0), Format: tar.FormatPAX})
}

// write writes the entry name of dirfd, whose stat is st, as p.
// xattrs may be nil to have write read them.
func (d *differ) write(dirfd int, name, p string, st *unix.Stat_t, xattrs map[string]string) error {
	hdr := &tar.Header{
		Name:    p,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: timeOf(st.Mtim),
		Format:  tar.FormatPAX,
	}
	ft := st.Mode & unix.S_IFMT
	if ft == unix.S_IFSOCK {
		return nil
	}
	if ft != unix.S_IFDIR && st.Nlink > 1 {
		key := devIno{uint64(st.Dev), st.Ino}
		if first, ok := d.links[key]; ok {
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = first
			return d.tw.WriteHeader(hdr)
		}
		d.links[key] = p
	}
	if xattrs == nil {
		var err error
		if xattrs, err = listXattrs(procFdChild(dirfd, name)); err != nil {
			return fmt.Errorf("xattrs of %s: %w", p, err)
		}
	}
	for k, v := range xattrs {
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords[paxXattrPrefix+k] = v
	}
	switch ft {
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
	case unix.S_IFLNK:
		hdr.Typeflag = tar.TypeSymlink
		target, err := readlinkAt(dirfd, name)
		if err != nil {
			return fmt.Errorf("readlink %s: %w", p, err)
		}
		hdr.Linkname = target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if ft == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor = int64(unix.Major(st.Rdev))
		hdr.Devminor = int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	case unix.S_IFREG:
		return d.writeFile(dirfd, name, hdr)
	default:
		return fmt.Errorf("%s: unknown file type %o", p, ft)
	}
	return d.tw.WriteHeader(hdr)
}

// writeFile writes a regular file's header and content. The size comes
// from the opened file, so a file replaced since the directory was read is
// still written consistently; one that changes size while being read is an
// error. Files are opened O_NONBLOCK so that one replaced by a fifo
// meanwhile fails the type check rather than block the open.
func (d *differ) writeFile(dirfd int, name string, hdr *tar.Header) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", hdr.Name, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", hdr.Name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%s changed while being read", hdr.Name)
	}
	hdr.Typeflag = tar.TypeReg
	hdr.Size = st.Size
	if err := d.tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.CopyBuffer(tarFileWriter{d.tw}, io.LimitReader(fdReader(fd), st.Size), d.buf)
	if err != nil {
		return fmt.Errorf("read %s: %w", hdr.Name, err)
	}
	if n != st.Size {
		return fmt.Errorf("%s shrank while being read", hdr.Name)
	}
	return nil
}

// tarFileWriter hides tar.Writer's ReadFrom so that io.CopyBuffer uses the
// differ's buffer.
type tarFileWriter struct{ tw *tar.Writer }

func (w tarFileWriter) Write(p []byte) (int, error) { return w.tw.Write(p) }

func lstatAt(dirfd int, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return st, fmt.Errorf("stat %s: %w", name, err)
	}
	return st, nil
}

func readlinkAt(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

func displayDir(rel string) string {
	if rel == "" {
		return "."
	}
	return path.Clean(rel)
}
