package mount

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// mountOverlay mounts an overlay. mount(2) takes the options as one string
// of at most a page, which an image of a hundred layers with long snapshot
// paths exceeds. Such overlays are mounted, in order of preference:
//
//  1. through the new mount API (fsopen/fsconfig/fsmount/move_mount), giving
//     each layer as its own "lowerdir+" parameter (Linux 6.8 and later), so
//     that only the kernel's own limit on layers (500) applies;
//  2. with mount(2) and the layer paths made relative to their longest
//     common directory, from a thread whose working directory is that
//     directory. The thread unshares its filesystem attributes first, so
//     the chdir never affects the rest of the process, and is discarded
//     afterwards. This fits a few hundred layers of a snapshotter's short
//     "<id>/fs" paths.
func mountOverlay(source, target string, p parsedOptions) error {
	if source == "" {
		source = "overlay"
	}
	data := strings.Join(p.data, ",")
	if len(data) <= dataLimit() {
		if err := unix.Mount(source, target, "overlay", p.flags, data); err != nil {
			return fmt.Errorf("mount overlay: %w", err)
		}
		return nil
	}
	err := mountOverlayFsconfig(source, target, p)
	if err == nil || !errors.Is(err, errNoLowerdirAppend) {
		return err
	}
	if rerr := mountOverlayRelative(source, target, p); rerr != nil {
		return fmt.Errorf("%w (and through the new mount API: %v)", rerr, err)
	}
	return nil
}

// errNoLowerdirAppend marks failures of the new mount API that mean the
// kernel cannot take layers one by one, so that the caller tries another
// way rather than report them.
var errNoLowerdirAppend = errors.New("kernel does not take overlay layers one by one (lowerdir+, Linux 6.8)")

// overlayLayers splits a lowerdir value into its layers and its data-only
// most 256 bytes with the NUL).
const fsconfigMaxString = 255

func mountOverlayFsconfig(source, target string, p parsedOptions) (retErr error) {
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("fsopen overlay: %w: %w", err, errNoLowerdirAppend)
		}
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	// The kernel explains a rejected parameter only in messages it
	// queues on the context; they make errors worth reading.
	defer func() {
		if retErr != nil {
			if msgs := fsMessages(fsfd); msgs != "" {
				retErr = fmt.Errorf("%w (kernel: %s)", retErr, msgs)
			}
		}
	}()
	if err := unix.FsconfigSetString(fsfd, "source", source); err != nil {
		return fmt.Errorf("fsconfig overlay source: %w", err)
	}
	for _, o := range p.data {
		k, v, hasValue := strings.Cut(o, "=")
		switch {
		case k == "lowerdir" && hasValue:
			lower, dataOnly := OverlayLayers(v)
			for i, l := range lower {
				if err := fsconfigPath(fsfd, "lowerdir+", l); err != nil {
					if i == 0 && errors.Is(err, unix.EINVAL) {
						return fmt.Errorf("%w: %w", err, errNoLowerdirAppend)
					}
					return err
				}
			}
			for _, l := range dataOnly {
				if err := fsconfigPath(fsfd, "datadir+", l); err != nil {
					return err
				}
			}
		case k == "upperdir" || k == "workdir":
			if err := fsconfigPath(fsfd, k, v); err != nil {
				return err
			}
		case !hasValue:
			if err := unix.FsconfigSetFlag(fsfd, k); err != nil {
				return fmt.Errorf("fsconfig overlay %s: %w", k, err)
			}
		default:
			if err := unix.FsconfigSetString(fsfd, k, v); err != nil {
				return fmt.Errorf("fsconfig overlay %s=%s: %w", k, v, err)
			}
		}
	}
	if p.flags&unix.MS_RDONLY != 0 {
		if err := unix.FsconfigSetFlag(fsfd, "ro"); err != nil {
			return fmt.Errorf("fsconfig overlay ro: %w", err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		// Kernels before 6.5 pass overlay parameters through to the
		// old option parser, which refuses "lowerdir+" only here.
		if errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("create overlay: %w: %w", err, errNoLowerdirAppend)
		}
		return fmt.Errorf("create overlay: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, int(mountAttrs(p.flags)))
	if err != nil {
		return fmt.Errorf("fsmount overlay: %w", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move overlay mount to %s: %w", target, err)
	}
	return nil
}

// fsconfigPath sets a path parameter. A path longer than fsconfig takes is
// given as /proc/self/fd/N of a descriptor opened on it: overlay resolves
// layer paths while the parameter is set, so the descriptor may be closed
// right after.
func fsconfigPath(fsfd int, key, path string) error {
	if len(path) <= fsconfigMaxString {
		if err := unix.FsconfigSetString(fsfd, key, path); err != nil {
			return fmt.Errorf("fsconfig overlay %s=%s: %w", key, path, err)
		}
		return nil
	}
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open overlay %s %s: %w", key, path, err)
	}
	defer unix.Close(fd)
	if err := unix.FsconfigSetString(fsfd, key, "/proc/self/fd/"+strconv.Itoa(fd)); err != nil {
		return fmt.Errorf("fsconfig overlay %s=%s: %w", key, path, err)
	}
	return nil
}

// fsMessages drains the messages the kernel queued on a filesystem context.
func fsMessages(fsfd int) string {
	var msgs []string
	buf := make([]byte, 4096)
	for range 32 {
		n, err := unix.Read(fsfd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	return strings.Join(msgs, "; ")
}

// mountOverlayRelative mounts with mount(2) and paths relative to the
// layers' common directory (see mountOverlay).
func mountOverlayRelative(source, target string, p parsedOptions) error {
	target, err := filepath.Abs(target)
	if err != nil {
		return err
	}
	type pathOpt struct {
		key   string
		paths []string
		data  []string
	}
	var (
		opts  []pathOpt
		other []string
		all   []string
	)
	for _, o := range p.data {
		k, v, hasValue := strings.Cut(o, "=")
		switch {
		case k == "lowerdir" && hasValue:
			lower, dataOnly := OverlayLayers(v)
			opts = append(opts, pathOpt{key: k, paths: lower, data: dataOnly})
			all = append(all, lower...)
			all = append(all, dataOnly...)
		case (k == "upperdir" || k == "workdir") && hasValue:
			opts = append(opts, pathOpt{key: k, paths: []string{v}})
			all = append(all, v)
		default:
			other = append(other, o)
		}
	}
	dir := commonDir(all)
	rel := func(p string) string {
		if dir != "" {
			if r, err := filepath.Rel(dir, p); err == nil {
				return EscapeOverlayPath(r)
			}
		}
		return EscapeOverlayPath(p)
	}
	var parts []string
	for _, o := range opts {
		var b strings.Builder
		b.WriteString(o.key + "=")
		for i, l := range o.paths {
			if i > 0 {
				b.WriteByte(':')
			}
			b.WriteString(rel(l))
		}
		for _, l := range o.data {
			b.WriteString("::" + rel(l))
		}
		parts = append(parts, b.String())
	}
	data := strings.Join(append(parts, other...), ",")
	if len(data) > dataLimit() {
		return fmt.Errorf("overlay options are %d bytes even with paths relative to %s, the limit is %d: %w",
			len(data), dir, dataLimit(), errdefs.ErrInvalidArgument)
	}
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: once its working directory
		// differs from the process's, the runtime must discard it
		// when this goroutine ends rather than reuse it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare filesystem attributes: %w", err)
			return
		}
		if dir != "" {
			if err := unix.Chdir(dir); err != nil {
				errc <- fmt.Errorf("chdir %s: %w", dir, err)
				return
			}
		}
		if err := unix.Mount(source, target, "overlay", p.flags, data); err != nil {
			errc <- fmt.Errorf("mount overlay (paths relative to %s): %w", dir, err)
			return
		}
		errc <- nil
	}()
	return <-errc
}

// commonDir returns the longest directory that contains every one of
// paths, all absolute; "" if some path is relative.
func commonDir(paths []string) string {
	if len(paths) == 0 {
		return ""
	}
	var common []string
	for i, p := range paths {
		if !filepath.IsAbs(p) {
			return ""
		}
		parts := strings.Split(filepath.Clean(p), "/")
		// A path's last element is the layer itself, not a directory
		// holding it: "/a/b" alone has common directory "/a".
		parts = parts[:len(parts)-1]
		if i == 0 {
			common = parts
			continue
		}
		n := 0
		for n < len(common) && n < len(parts) && common[n] == parts[n] {
			n++
		}
		common = common[:n]
	}
	d := strings.Join(common, "/")
	if d == "" {
		return "/"
	}
	return d
}
