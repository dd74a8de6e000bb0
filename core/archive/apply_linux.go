package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/internal/crashpoint"
	"github.com/hullrt/hull/internal/fsfull"
)

// Apply reads the uncompressed tar stream r and writes its entries under
// root, returning the number of bytes it read. It stops at the tar's
// end-of-archive marker; what follows (the padding of the last record) is
// left in r for a caller that hashes the whole stream.
//
// Entries keep their mode (with setuid, setgid and sticky bits), owner
// (unless WithNoSameOwner), modification and access times, and the
// extended attributes of their SCHILY.xattr.* PAX records. Directories get
// their times after their content is written. Hard links must name an
// entry already extracted. An existing directory is kept when the layer
// has a directory of the same name (its metadata is updated); anything else
// in the way of an entry is removed first.
//
// Nothing outside root is ever created, changed or removed: see the package
// documentation. A leading "/" is taken relative to root, as containerd
// does ("/a/../../b" is root/b); a relative name or hard link target that
// climbs out of root ("../x", "a/../../x") is an error naming the entry, as
// are whiteouts of "." or "..", device nodes the caller may not create,
// entry types other than files, directories, links, devices and fifos
// (PAX global headers are skipped; aufs ".wh..wh.*" bookkeeping entries
// too), GNU sparse files (whose holes archive/tar would expand into
// arbitrarily many zeros), and a stream that ends inside an entry.
// Extended attributes in the trusted.overlay.* and user.overlay.*
// namespaces and security.selinux are not set: they are overlayfs's and
// the host's, not the image's. An entry whose parent is a symbolic link pointing
// at nothing is an error too: Apply does not create the link's target.
//
// Apply keeps no state per entry, only per open directory, so memory stays
// small for layers of millions of files. One case needs more than that and
// is refused: without WithOverlayWhiteouts, an opaque whiteout
// (".wh..wh..opq") for a directory that existed before the layer must come
// before the layer's other entries in that directory, as every known layer
// writer puts it, so that Apply knows which entries are the layer's own.
func Apply(ctx context.Context, root string, r io.Reader, opts ...ApplyOpt) (int64, error) {
	var cfg applyConfig
	for _, o := range opts {
		o(&cfg)
	}
	cr := &countingReader{r: r}
	a, err := newApplier(ctx, root, cfg)
	if err != nil {
		return 0, err
	}
	defer a.close()
	tr := tar.NewReader(cr)
	for {
		if err := ctx.Err(); err != nil {
			return cr.n, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil && !(hdr != nil && errors.Is(err, tar.ErrInsecurePath)) {
			// ErrInsecurePath (GODEBUG=tarinsecurepath=0) comes with a
			// usable header; the checks below are stricter anyway.
			return cr.n, fmt.Errorf("archive: read tar header: %w", err)
		}
		if err := a.entry(hdr, tr); err != nil {
			return cr.n, fsfull.Wrap(fmt.Errorf("archive: entry %q: %w", hdr.Name, err), "layer being unpacked", root)
		}
		// Each entry is a point at which a layer is half written: the
		// chaos tests pick one by its count.
		crashpoint.Hit(crashpoint.UnpackMid)
	}
	if err := a.finish(); err != nil {
		return cr.n, fsfull.Wrap(fmt.Errorf("archive: %w", err), "layer being unpacked", root)
	}
	return cr.n, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// applier is the state of one Apply: root, the stack of open directories
// and a copy buffer.
type applier struct {
	ctx     context.Context
	cfg     applyConfig
	rootfd  int
	parents []int // O_PATH descriptors of cfg.parents
	// stack is the chain of directories from root to the parent of the
	// last entry, each held open. Tar writers list a directory's content
	// together, so the stack follows the tree depth first and stays as
	// deep as the tree, whatever the number of entries.
	stack []frame
	buf   []byte
	// seen records, for opaque whiteouts without WithOverlayWhiteouts,
	// directories this layer created or wrote into and has since left:
	// per directory, never per file.
	seen map[uint64]uint8
	seed maphash.Seed
	// implicit lists, for WithDetachedUpper, the directories created
	// because entries needed them (implicitParentsXattr); implicitSize is
	// the attribute's size so far.
	implicit     []string
	implicitSize int
	// umask is the process's, given (WithUmask) or read once per apply
	// when its first regular file is written (umaskRead): a file whose
	// mode the umask leaves alone is created with it and needs no chmod.
	umask     uint32
	umaskRead bool
}

// frame is an open directory of the stack.
type frame struct {
	path string // the name the layer uses, "." for root
	fd   int    // O_PATH
	// atime and mtime are the directory's times when it was entered:
	// those of its own tar entry if the layer had one (Apply sets them
	// when it creates the directory) or those it had before. Creating
	// entries in it changes its mtime; leaving restores these.
	atime, mtime unix.Timespec
	touched      bool // something in it was created or removed
	created      bool // the layer created it
}

const (
	seenCreated uint8 = 1 << iota
	seenTouched
)

func newApplier(ctx context.Context, root string, cfg applyConfig) (*applier, error) {
	rootfd, err := openDirPath(root)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	a := &applier{ctx: ctx, cfg: cfg, rootfd: rootfd, umask: cfg.umask, umaskRead: cfg.umaskSet}
	for _, p := range cfg.parents {
		fd, err := openDirPath(p)
		if err != nil {
			a.close()
			return nil, fmt.Errorf("archive: parent layer: %w", err)
		}
		a.parents = append(a.parents, fd)
	}
	var st unix.Stat_t
	if err := unix.Fstat(rootfd, &st); err != nil {
		a.close()
		return nil, fmt.Errorf("archive: stat %s: %w", root, err)
	}
	a.stack = []frame{{path: ".", fd: rootfd, atime: st.Atim, mtime: st.Mtim}}
	if !cfg.overlay {
		a.seen = map[uint64]uint8{}
		a.seed = maphash.MakeSeed()
	}
	return a, nil
}

func (a *applier) close() {
	for len(a.stack) > 1 {
		f := a.stack[len(a.stack)-1]
		a.stack = a.stack[:len(a.stack)-1]
		unix.Close(f.fd)
	}
	a.stack = nil
	for _, fd := range a.parents {
		unix.Close(fd)
	}
	a.parents = nil
	if a.rootfd >= 0 {
		unix.Close(a.rootfd)
		a.rootfd = -1
	}
}

// finish leaves every open directory, restoring its times, and records
// the implicit parents of a detached apply.
func (a *applier) finish() error {
	for len(a.stack) > 1 {
		if err := a.pop(); err != nil {
			return err
		}
	}
	if len(a.implicit) > 0 {
		v := strings.Join(a.implicit, "\x00")
		if err := unix.Setxattr(procFd(a.rootfd), implicitParentsXattr, []byte(v), 0); err != nil {
			return fmt.Errorf("record the directories not in the layer (%v): %w", err, ErrNeedsLower)
		}
	}
	if root := &a.stack[0]; root.touched {
		if err := restoreTimes(root); err != nil {
			return fmt.Errorf("set times of root: %w", err)
		}
	}
	return nil
}

func (a *applier) top() *frame { return &a.stack[len(a.stack)-1] }

// cleanName maps an entry name (or hard link target) to a clean path
// relative to root: "." for root itself.
func cleanName(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty name")
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", errors.New("name contains a NUL byte")
	}
	p := path.Clean(name)
	if path.IsAbs(p) {
		// Clean has already dropped any ".." above "/".
		p = strings.TrimLeft(p, "/")
		if p == "" {
			p = "."
		}
		return p, nil
	}
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("path %q leads outside the root", name)
	}
	return p, nil
}

// within reports whether dir is p or below p.
func within(dir, p string) bool {
	return p == "." || dir == p || (len(dir) > len(p) && dir[len(p)] == '/' && dir[:len(p)] == p)
}

// enter makes dir (a clean relative path) the top of the stack, leaving
// the directories that are not its ancestors and opening (or creating) the
// missing ones, and returns its descriptor.
func (a *applier) enter(dir string) (int, error) {
	for len(a.stack) > 1 && !within(dir, a.top().path) {
		if err := a.pop(); err != nil {
			return -1, err
		}
	}
	for {
		top := a.top()
		if top.path == dir {
			return top.fd, nil
		}
		rest := dir
		if top.path != "." {
			rest = dir[len(top.path)+1:]
		}
		comp, _, _ := strings.Cut(rest, "/")
		full := comp
		if top.path != "." {
			full = top.path + "/" + comp
		}
		fd, created, err := a.openParent(top.fd, full, comp)
		if err != nil {
			return -1, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("stat %s: %w", full, err)
		}
		if created {
			top.touched = true
		}
		a.stack = append(a.stack, frame{path: full, fd: fd, atime: st.Atim, mtime: st.Mtim, created: created})
	}
}

// openParent opens the directory full, a parent of an entry, creating it in
// parentfd as comp if it does not exist.
func (a *applier) openParent(parentfd int, full, comp string) (fd int, created bool, err error) {
	// Resolved from root rather than from parentfd, so that a symbolic link
	// among the components means what it would inside a container.
	fd, err = openInRoot(a.rootfd, full, unix.O_PATH|unix.O_DIRECTORY)
	if err == nil {
		return fd, false, nil
	}
	if !errors.Is(err, unix.ENOENT) {
		return -1, false, fmt.Errorf("open parent directory %s: %w", full, err)
	}
	if a.cfg.detached {
		// Its mode, owner and times are those of the lower layers'
		// directory, which a detached apply cannot see yet:
		// FixImplicitParents sets them from the attribute finish writes.
		if a.implicitSize += len(full) + 1; a.implicitSize > maxImplicitParents {
			return -1, false, fmt.Errorf("more directories not in the layer than one attribute lists (at %s): %w", full, ErrNeedsLower)
		}
		a.implicit = append(a.implicit, full)
	}
	if err := unix.Mkdirat(parentfd, comp, 0o700); err != nil {
		if errors.Is(err, unix.EEXIST) {
			// comp exists, yet resolving it found nothing: a symbolic
			// link to nowhere.
			return -1, false, fmt.Errorf("parent directory %s is a symbolic link to nothing", full)
		}
		return -1, false, fmt.Errorf("create parent directory %s: %w", full, err)
	}
	fd, err = unix.Openat(parentfd, comp, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, false, fmt.Errorf("open parent directory %s: %w", full, err)
	}
	if err := a.initParent(fd, full); err != nil {
		unix.Close(fd)
		return -1, false, fmt.Errorf("create parent directory %s: %w", full, err)
	}
	return fd, true, nil
}

// initParent gives a directory Apply had to create the metadata of the
// same directory in the first parent layer that has it, or mode 0755.
func (a *applier) initParent(fd int, full string) error {
	for _, pfd := range a.parents {
		lfd, err := openBeneath(pfd, full, unix.O_PATH|unix.O_NOFOLLOW)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			break // a symbolic link or file on the way: hidden below
		}
		var st unix.Stat_t
		err = unix.Fstat(lfd, &st)
		if err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			unix.Close(lfd)
			break // a whiteout or file hides the layers below
		}
		xattrs, err := listXattrs(procFd(lfd) + "/.")
		unix.Close(lfd)
		if err != nil {
			return fmt.Errorf("read parent layer's directory: %w", err)
		}
		return a.setMetaFd(fd, st.Mode&0o7777, int(st.Uid), int(st.Gid), xattrs, st.Atim, st.Mtim)
	}
	p := procFd(fd)
	if err := unix.Fchmodat(unix.AT_FDCWD, p, 0o755, 0); err != nil {
		return err
	}
	return nil
}

// pop leaves the top directory, restoring its times if the layer changed
// its content.
func (a *applier) pop() error {
	f := a.stack[len(a.stack)-1]
	a.stack = a.stack[:len(a.stack)-1]
	defer unix.Close(f.fd)
	if a.seen != nil && (f.touched || f.created) {
		var bits uint8
		if f.touched {
			bits |= seenTouched
		}
		if f.created {
			bits |= seenCreated
		}
		a.seen[maphash.String(a.seed, f.path)] |= bits
	}
	if f.touched {
		if err := restoreTimes(&f); err != nil {
			return fmt.Errorf("set times of %s: %w", f.path, err)
		}
	}
	return nil
}

// restoreTimes sets a directory's times back to those it had when entered.
// It is best effort where the directory is gone (removed by a later entry
// through another name) or not the caller's to change (an unprivileged
// caller writing into another user's directory).
func restoreTimes(f *frame) error {
	err := unix.UtimesNanoAt(unix.AT_FDCWD, procFd(f.fd), []unix.Timespec{f.atime, f.mtime}, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return nil
	}
	return err
}

// entry applies one tar entry.
func (a *applier) entry(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "." {
		return a.rootEntry(hdr)
	}
	dir, base := path.Dir(name), path.Base(name)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return a.whiteout(dir, base)
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeCont,
		tar.TypeDir, tar.TypeSymlink, tar.TypeLink,
		tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return fmt.Errorf("unsupported entry type %q", hdr.Typeflag)
	}
	if isSparse(hdr) {
		// archive/tar expands holes into zeros, and a few bytes of sparse
		// map can describe petabytes of them.
		return errors.New("sparse files are not supported")
	}
	dirfd, err := a.enter(dir)
	if err != nil {
		return err
	}
	a.top().touched = true

	var linkfd int = -1
	var linkBase string
	if hdr.Typeflag == tar.TypeLink {
		var done bool
		linkfd, linkBase, done, err = a.linkTarget(dirfd, dir, base, hdr.Linkname)
		if err != nil || done {
			return err
		}
		if linkfd != dirfd {
			defer unix.Close(linkfd)
		}
	}

	// Most entries name nothing there yet (a layer's files are new to
	// its directory): make the entry first, and look at what is in the
	// way only when making it says something is. A lookup first would
	// cost every entry a system call.
	exists, err := a.create(dirfd, name, base, hdr, r, linkfd, linkBase)
	if !exists {
		return err
	}
	var st unix.Stat_t
	err = unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOENT):
	case err != nil:
		return fmt.Errorf("stat: %w", err)
	case hdr.Typeflag == tar.TypeDir && st.Mode&unix.S_IFMT == unix.S_IFDIR:
		return a.dir(dirfd, name, base, hdr, false)
	default:
		if err := removeAllAt(dirfd, base); err != nil {
			return fmt.Errorf("remove what is in the way: %w", err)
		}
	}
	if exists, err = a.create(dirfd, name, base, hdr, r, linkfd, linkBase); exists {
		return fmt.Errorf("create: %w", unix.EEXIST)
	}
	return err
}

// create makes the entry hdr describes as base in dirfd (name in the
// layer), a hard link's target being linkBase in linkfd. exists reports
// that something named base was in the way, in which case nothing was
// made, nothing read from r, and err says so.
func (a *applier) create(dirfd int, name, base string, hdr *tar.Header, r io.Reader, linkfd int, linkBase string) (exists bool, err error) {
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := unix.Mkdirat(dirfd, base, 0o700); err != nil {
			return errors.Is(err, unix.EEXIST), fmt.Errorf("mkdir: %w", err)
		}
		return false, a.dir(dirfd, name, base, hdr, true)
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, dirfd, base); err != nil {
			return errors.Is(err, unix.EEXIST), fmt.Errorf("symlink: %w", err)
		}
		return false, a.setMetaSymlink(dirfd, base, hdr)
	case tar.TypeLink:
		// No AT_SYMLINK_FOLLOW: a link to a symbolic link links the
		// symbolic link itself. The inode's metadata is the target's.
		if err := unix.Linkat(linkfd, linkBase, dirfd, base, 0); err != nil {
			return errors.Is(err, unix.EEXIST), fmt.Errorf("link to %q: %w", hdr.Linkname, err)
		}
		return false, nil
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := uint32(unix.S_IFIFO)
		if hdr.Typeflag == tar.TypeChar {
			mode = unix.S_IFCHR
		} else if hdr.Typeflag == tar.TypeBlock {
			mode = unix.S_IFBLK
		}
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknodat(dirfd, base, mode|0o600, int(dev)); err != nil {
			return errors.Is(err, unix.EEXIST), fmt.Errorf("mknod: %w", err)
		}
		fd, err := unix.Openat(dirfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return false, err
		}
		defer unix.Close(fd)
		return false, a.setMetaHdr(fd, hdr)
	default:
		return a.regular(dirfd, base, hdr, r)
	}
}

// rootEntry applies the tar entry for root itself ("./"), which can only
// update root's metadata.
func (a *applier) rootEntry(hdr *tar.Header) error {
	if hdr.Typeflag != tar.TypeDir {
		return fmt.Errorf("entry of type %q would replace the root directory", hdr.Typeflag)
	}
	if err := a.setMetaHdr(a.rootfd, hdr); err != nil {
		return err
	}
	// Root stays entered; leaving it at the end restores these times.
	root := &a.stack[0]
	root.atime, root.mtime = hdrTimes(hdr)
	return nil
}

// dir sets the metadata of the directory base in dirfd, just created or
// kept.
func (a *applier) dir(dirfd int, name, base string, hdr *tar.Header, created bool) error {
	fd, err := unix.Openat(dirfd, base, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if created && a.seen != nil {
		a.seen[maphash.String(a.seed, name)] |= seenCreated
	}
	if slices.Contains(a.implicit, name) {
		// Named after entries were written into it (or after it was
		// removed and made again): over its lowers it would have
		// their extended attributes and this entry's metadata, and
		// FixImplicitParents would replace the latter.
		return fmt.Errorf("directory named after entries were written into it: %w", ErrNeedsLower)
	}
	return a.setMetaHdr(fd, hdr)
}

// HasImplicitParents reports whether a WithDetachedUpper apply into root
// created directories that FixImplicitParents must still fix. Most layers
// list every directory they write into, so a caller checks this first and
// looks up the lower layers (a walk down the whole chain, and a descriptor
// for each) only for the few that did not.
func HasImplicitParents(root string) (bool, error) {
	_, err := unix.Lgetxattr(root, implicitParentsXattr, nil)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENODATA):
		return false, nil
	}
	return false, fmt.Errorf("archive: read %s of %s: %w", implicitParentsXattr, root, err)
}

// FixImplicitParents gives each directory that a WithDetachedUpper apply
// into root created for entries of a layer that did not list it the mode,
// owner, extended attributes and times of the same directory in the first
// of lowers (topmost first) that has it, as WithParents would have when
// applying over them, and drops the record of them. A root without such
// a record is left as it is.
func FixImplicitParents(root string, lowers ...string) error {
	if ok, err := HasImplicitParents(root); err != nil || !ok {
		return err
	}
	a, err := newApplier(context.Background(), root, applyConfig{parents: lowers})
	if err != nil {
		return err
	}
	defer a.close()
	rootPath := procFd(a.rootfd)
	v, err := getXattr(rootPath+"/.", implicitParentsXattr) // "/.": the directory, not the magic link
	if errors.Is(err, unix.ENODATA) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("archive: read %s of %s: %w", implicitParentsXattr, root, err)
	}
	for _, p := range strings.Split(v, "\x00") {
		fd, err := openBeneath(a.rootfd, p, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW)
		if err != nil {
			// Removed or replaced by a later entry of the layer.
			continue
		}
		err = a.initParent(fd, p)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("archive: directory %s: %w", p, err)
		}
	}
	if err := unix.Removexattr(rootPath, implicitParentsXattr); err != nil {
		return fmt.Errorf("archive: remove %s of %s: %w", implicitParentsXattr, root, err)
	}
	return nil
}

// regular writes a regular file's content, copying exactly hdr.Size bytes
// through the one buffer.
func (a *applier) regular(dirfd int, base string, hdr *tar.Header, r io.Reader) (exists bool, err error) {
	// Created with its final permissions when the umask keeps them and
	// there are no setuid, setgid or sticky bits (which chown clears):
	// one system call fewer per file. The snapshot is private meanwhile.
	mode := uint32(hdr.Mode) & 0o7777
	perm, chmod := uint32(0o600), true
	if !a.umaskRead {
		a.umask, a.umaskRead = ProcessUmask(), true
	}
	if mode&0o7000 == 0 && mode&a.umask == 0 {
		perm, chmod = mode, false
	}
	fd, err := unix.Openat(dirfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return errors.Is(err, unix.EEXIST), fmt.Errorf("create: %w", err)
	}
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
	}()
	if err := copyN(a.ctx, fdWriter(fd), r, hdr.Size, a.buffer(hdr.Size)); err != nil {
		return false, fmt.Errorf("write content: %w", err)
	}
	// chown before chmod and setxattr: it clears setuid, setgid and
	// security.capability.
	if !a.cfg.noSameOwner {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return false, fmt.Errorf("chown: %w", err)
		}
	}
	if chmod {
		if err := unix.Fchmod(fd, mode); err != nil {
			return false, fmt.Errorf("chmod: %w", err)
		}
	}
	for k, v := range hdrXattrs(hdr) {
		if err := a.xattrErr(k, unix.Fsetxattr(fd, k, []byte(v), 0)); err != nil {
			return false, err
		}
	}
	err = unix.Close(fd)
	fd = -1
	if err != nil {
		return false, fmt.Errorf("close: %w", err)
	}
	atime, mtime := hdrTimes(hdr)
	if err := unix.UtimesNanoAt(dirfd, base, []unix.Timespec{atime, mtime}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return false, fmt.Errorf("set times: %w", err)
	}
	return false, nil
}

// maxCopyBuffer is the largest buffer file contents are copied through.
const maxCopyBuffer = 128 << 10

// buffer returns the applier's copy buffer, grown for a file of size bytes
// up to maxCopyBuffer: made when first needed and only as large as the
// layer's files need, since a layer of a few small files is common and
// each layer has an applier of its own.
func (a *applier) buffer(size int64) []byte {
	if len(a.buf) < maxCopyBuffer && int64(len(a.buf)) < max(size, 1) {
		a.buf = make([]byte, min(max(size, 4<<10), maxCopyBuffer))
	}
	return a.buf
}

// copyN copies exactly n bytes from r to w through buf. A reader that
// stops making progress is an error rather than a loop, and a canceled ctx
// stops a large file without waiting for its end.
func copyN(ctx context.Context, w io.Writer, r io.Reader, n int64, buf []byte) error {
	var done int64
	idle := 0
	for i := 0; done < n; i++ {
		if i%64 == 63 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		chunk := buf
		if rest := n - done; rest < int64(len(chunk)) {
			chunk = chunk[:rest]
		}
		m, err := r.Read(chunk)
		if m > 0 {
			idle = 0
			if _, werr := w.Write(chunk[:m]); werr != nil {
				return werr
			}
			done += int64(m)
		}
		switch {
		case err == io.EOF:
			if done < n {
				return fmt.Errorf("%w (%d of %d bytes)", io.ErrUnexpectedEOF, done, n)
			}
		case err != nil:
			return err
		case m == 0:
			if idle++; idle > 100 {
				return io.ErrNoProgress
			}
		}
	}
	return nil
}

// linkTarget resolves a hard link's target inside root, returning the
// directory holding it and its name there. done is set when the entry
// already is that file.
func (a *applier) linkTarget(dirfd int, dir, base, linkname string) (fd int, name string, done bool, err error) {
	target, err := cleanName(linkname)
	if err != nil {
		return -1, "", false, fmt.Errorf("hard link target: %w", err)
	}
	if target == "." {
		return -1, "", false, errors.New("hard link to the root directory")
	}
	tdir, tbase := path.Dir(target), path.Base(target)
	if len(a.parents) > 0 && !a.cfg.detached {
		// A link to a file of a lower layer: copy it up first, as
		// overlayfs does when a link is made through a mounted overlay.
		if err := a.copyUp(target); err != nil {
			return -1, "", false, fmt.Errorf("hard link target %q: %w", linkname, err)
		}
	}
	fd = dirfd
	if tdir != dir {
		fd, err = openInRoot(a.rootfd, tdir, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return -1, "", false, a.linkTargetErr(linkname, err)
		}
	}
	closeFd := func() {
		if fd != dirfd {
			unix.Close(fd)
		}
	}
	var tst, st unix.Stat_t
	if err := unix.Fstatat(fd, tbase, &tst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		closeFd()
		return -1, "", false, a.linkTargetErr(linkname, err)
	}
	if tst.Mode&unix.S_IFMT == unix.S_IFDIR {
		closeFd()
		return -1, "", false, fmt.Errorf("hard link target %q is a directory", linkname)
	}
	if unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Dev == tst.Dev && st.Ino == tst.Ino {
		closeFd()
		return -1, "", true, nil
	}
	return fd, tbase, false, nil
}

// copyUp makes the regular file target (a path in the layer) exist in
// root when only a lower layer has it: its parent directories are created
// with the lower layers' metadata and the file is copied with its mode,
// owner, extended attributes and times. Nothing happens when root has the
// target, or something else in its place (a whiteout, a symbolic link on
// the way, an opaque directory hiding the lowers), or no lower has it; the
// link then fails or succeeds as it would without the lowers.
func (a *applier) copyUp(target string) error {
	if fd, err := openInRoot(a.rootfd, target, unix.O_PATH|unix.O_NOFOLLOW); err == nil {
		unix.Close(fd)
		return nil
	} else if !errors.Is(err, unix.ENOENT) {
		return nil
	}
	// Walk the target's directories in root: an opaque one hides the
	// lowers; a missing one is created like an implicit parent.
	comps := strings.Split(target, "/")
	cur, err := unix.Dup(a.rootfd)
	if err != nil {
		return err
	}
	defer func() { unix.Close(cur) }()
	for i, comp := range comps[:len(comps)-1] {
		full := strings.Join(comps[:i+1], "/")
		next, err := unix.Openat(cur, comp, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			if err := unix.Mkdirat(cur, comp, 0o700); err != nil {
				return fmt.Errorf("create directory %s: %w", full, err)
			}
			if next, err = unix.Openat(cur, comp, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err != nil {
				return err
			}
			if err := a.initParent(next, full); err != nil {
				unix.Close(next)
				return err
			}
		} else if err != nil {
			return nil // not a directory here: the lowers are hidden
		} else if v, _ := getXattr(procFd(next)+"/.", overlayOpaqueXattr); v == "y" {
			unix.Close(next)
			return nil
		}
		unix.Close(cur)
		cur = next
	}
	base := comps[len(comps)-1]
	src, srcDir := -1, -1
	for _, pfd := range a.parents {
		ldir, err := openBeneath(pfd, path.Dir(target), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return nil // hidden below: nothing to copy
		}
		lfd, err := unix.Openat(ldir, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if errors.Is(err, unix.ENOENT) {
			unix.Close(ldir)
			continue
		}
		if err != nil {
			unix.Close(ldir)
			return nil // a symbolic link or whiteout below: nothing to copy
		}
		src, srcDir = lfd, ldir
		break
	}
	if src < 0 {
		return nil
	}
	defer unix.Close(src)
	defer unix.Close(srcDir)
	var st unix.Stat_t
	if err := unix.Fstat(src, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	xattrs, err := listXattrs(procFdChild(srcDir, base))
	if err != nil {
		return err
	}
	// The directory cur is an O_PATH descriptor: create through /proc.
	dst, err := unix.Open(procFdChild(cur, base), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("copy up %s: %w", target, err)
	}
	defer unix.Close(dst)
	if _, err := io.CopyBuffer(fdWriter(dst), fdReader(src), a.buffer(st.Size)); err != nil {
		return fmt.Errorf("copy up %s: %w", target, err)
	}
	return a.setMetaFd(dst, st.Mode&07777, int(st.Uid), int(st.Gid), xattrs, st.Atim, st.Mtim)
}

// linkTargetErr is the error of a hard link whose target cannot be found:
// in a detached apply, the target may be in the layers below.
func (a *applier) linkTargetErr(linkname string, err error) error {
	if a.cfg.detached && errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("hard link target %q is not in the layer: %w", linkname, ErrNeedsLower)
	}
	return fmt.Errorf("hard link target %q: %w", linkname, err)
}

// whiteout applies ".wh.<name>" or ".wh..wh..opq" found in dir.
func (a *applier) whiteout(dir, base string) error {
	dirfd, err := a.enter(dir)
	if err != nil {
		return err
	}
	top := a.top()
	if base == whiteoutOpaque {
		if a.cfg.overlay {
			if err := unix.Setxattr(procFd(dirfd), overlayOpaqueXattr, []byte("y"), 0); err != nil {
				return fmt.Errorf("mark directory opaque: %w", err)
			}
			return nil
		}
		return a.nativeOpaque(top)
	}
	if strings.HasPrefix(base, whiteoutMetaPrefix) {
		return nil
	}
	name := base[len(whiteoutPrefix):]
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("whiteout of %q", name)
	}
	top.touched = true
	if err := removeAllAt(dirfd, name); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	if a.cfg.overlay {
		if err := unix.Mknodat(dirfd, name, unix.S_IFCHR, 0); err != nil {
			return fmt.Errorf("create whiteout device %s: %w", name, err)
		}
	}
	return nil
}

// nativeOpaque removes the entries an opaque directory had before this
// layer.
func (a *applier) nativeOpaque(top *frame) error {
	bits := a.seen[maphash.String(a.seed, top.path)]
	if top.created || bits&seenCreated != 0 {
		return nil // new in this layer: everything in it is the layer's
	}
	if top.touched || bits&seenTouched != 0 {
		return errors.New("opaque whiteout after other entries of its directory: the layer's own entries can no longer be told from the old ones")
	}
	names, err := readDirNames(top.fd)
	if err != nil {
		return fmt.Errorf("list opaque directory: %w", err)
	}
	top.touched = true
	for _, n := range names {
		if err := removeAllAt(top.fd, n); err != nil {
			return fmt.Errorf("remove %s from opaque directory: %w", n, err)
		}
	}
	return nil
}

// setMetaHdr gives the file fd refers to (any descriptor, O_PATH too; not
// a symbolic link) the owner, mode, extended attributes and times of hdr.
func (a *applier) setMetaHdr(fd int, hdr *tar.Header) error {
	atime, mtime := hdrTimes(hdr)
	return a.setMetaFd(fd, uint32(hdr.Mode)&0o7777, hdr.Uid, hdr.Gid, hdrXattrs(hdr), atime, mtime)
}

func (a *applier) setMetaFd(fd int, mode uint32, uid, gid int, xattrs map[string]string, atime, mtime unix.Timespec) error {
	if !a.cfg.noSameOwner {
		if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	p := procFd(fd)
	if err := unix.Fchmodat(unix.AT_FDCWD, p, mode, 0); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	for k, v := range xattrs {
		if err := a.xattrErr(k, unix.Setxattr(p, k, []byte(v), 0)); err != nil {
			return err
		}
	}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{atime, mtime}, 0); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// setMetaSymlink sets the owner, extended attributes and times of the
// symbolic link base in dirfd (symbolic links have no mode of their own).
func (a *applier) setMetaSymlink(dirfd int, base string, hdr *tar.Header) error {
	if !a.cfg.noSameOwner {
		if err := unix.Fchownat(dirfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if xattrs := hdrXattrs(hdr); len(xattrs) > 0 {
		p := procFdChild(dirfd, base)
		for k, v := range xattrs {
			if err := a.xattrErr(k, unix.Lsetxattr(p, k, []byte(v), 0)); err != nil {
				return err
			}
		}
	}
	atime, mtime := hdrTimes(hdr)
	if err := unix.UtimesNanoAt(dirfd, base, []unix.Timespec{atime, mtime}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// xattrErr decides whether failing to set an extended attribute fails the
// entry. A filesystem without extended attributes (ENOTSUP) loses them, as
// with containerd; an unprivileged caller (WithNoSameOwner) also loses the
// trusted.* and security.* ones it may not set.
func (a *applier) xattrErr(name string, err error) error {
	if err == nil || errors.Is(err, unix.ENOTSUP) || (a.cfg.noSameOwner && errors.Is(err, unix.EPERM)) {
		return nil
	}
	return fmt.Errorf("set xattr %s: %w", name, err)
}

// isSparse reports whether an entry is a GNU sparse file in one of the
// PAX formats (old GNU sparse entries have their own type, TypeGNUSparse).
func isSparse(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// hdrXattrs returns the extended attributes of an entry from its PAX
// records, without those skipXattr leaves out.
func hdrXattrs(hdr *tar.Header) map[string]string {
	var out map[string]string
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattrPrefix)
		if !ok || name == "" || skipXattr(name) {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = v
	}
	return out
}

// hdrTimes returns the access and modification times of an entry. Without
// an access time (most layers have none) it is the modification time, and
// a missing modification time is the Unix epoch rather than year 1.
func hdrTimes(hdr *tar.Header) (atime, mtime unix.Timespec) {
	m := hdr.ModTime
	if m.IsZero() {
		m = time.Unix(0, 0)
	}
	at := hdr.AccessTime
	if at.IsZero() {
		at = m
	}
	return timespec(at), timespec(m)
}
