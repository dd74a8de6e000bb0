package mount

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// All mounts each of mounts in order at target, or at target joined with the
// mount's Target. The types supported are "bind", "overlay", "tmpfs" and
// "proc"; any other is an InvalidArgument error. Overlays with more layers
// than mount(2)'s one page of options can carry are mounted through the new
// mount API (see mountOverlay).
//
// If a mount fails, the ones All already made are unmounted again, so that a
// failed call leaves nothing behind.
func All(mounts []Mount, target string) error {
	done := make([]string, 0, len(mounts))
	for i, m := range mounts {
		dest := target
		if m.Target != "" {
			// Rooting Target at "/" first keeps ".." from climbing out
			// of target.
			dest = filepath.Join(target, filepath.Clean("/"+m.Target))
		}
		if err := mountOne(m, dest); err != nil {
			for j := len(done) - 1; j >= 0; j-- {
				// The mount error is the one worth reporting; an
				// unmount failure here leaves a mount the caller's
				// own cleanup of target will meet.
				_ = UnmountAll(done[j])
			}
			return fmt.Errorf("mount %d of %d (%s %s at %s): %w", i+1, len(mounts), m.Type, m.Source, dest, err)
		}
		done = append(done, dest)
	}
	return nil
}

func mountOne(m Mount, target string) error {
	p := parseOptions(m.Options)
	idmap, err := p.idmap()
	if err != nil {
		return err
	}
	switch {
	case idmap != nil && m.Type == "bind":
		err = mountBindIDMapped(m.Source, target, p, idmap)
	case idmap != nil && m.Type == "overlay":
		err = mountOverlayIDMapped(m.Source, target, p, idmap)
	case idmap != nil:
		return fmt.Errorf("%s mounts cannot be idmapped (uidmap=%s): %w", m.Type, p.uidmap, errdefs.ErrInvalidArgument)
	case m.Type == "bind":
		err = mountBind(m.Source, target, p)
	case m.Type == "overlay":
		err = mountOverlay(m.Source, target, p)
	case m.Type == "tmpfs", m.Type == "proc":
		err = mountPlain(m.Type, m.Source, target, p)
	default:
		return fmt.Errorf("unsupported mount type %q: %w", m.Type, errdefs.ErrInvalidArgument)
	}
	if err != nil {
		return err
	}
	if p.propagation != 0 {
		if err := unix.Mount("", target, "", p.propagation, ""); err != nil {
			_ = UnmountAll(target)
			return fmt.Errorf("set propagation of %s: %w", target, err)
		}
	}
	return nil
}

// dataLimit is the longest option string mount(2) passes on whole: the
// kernel copies one page, and the string needs its terminating NUL.
func dataLimit() int { return unix.Getpagesize() - 1 }

func mountPlain(fstype, source, target string, p parsedOptions) error {
	if source == "" {
		source = fstype
	}
	data := strings.Join(p.data, ",")
	if len(data) > dataLimit() {
		return fmt.Errorf("%s options are %d bytes, the limit is %d: %w", fstype, len(data), dataLimit(), errdefs.ErrInvalidArgument)
	}
	if err := unix.Mount(source, target, fstype, p.flags&^(unix.MS_BIND|unix.MS_REC), data); err != nil {
		return fmt.Errorf("mount %s: %w", fstype, err)
	}
	return nil
}

// mountBind bind-mounts source at target. The kernel ignores ro, nosuid and
// the like when it makes a bind mount, so they are applied by a remount;
// for a recursive bind they are applied to the submounts as well, or a
// read-only rbind would leave writable mounts below it.
func mountBind(source, target string, p parsedOptions) error {
	flags := unix.MS_BIND | p.flags&unix.MS_REC
	if err := unix.Mount(source, target, "", flags, ""); err != nil {
		return fmt.Errorf("bind %s: %w", source, err)
	}
	extra := p.flags & perMountFlags
	if extra == 0 {
		return nil
	}
	if err := remountBind(target, extra); err != nil {
		_ = UnmountAll(target)
		return err
	}
	if p.flags&unix.MS_REC != 0 {
		if attrs := mountAttrs(extra); attrs != 0 {
			attr := unix.MountAttr{Attr_set: attrs}
			err := unix.MountSetattr(unix.AT_FDCWD, target, unix.AT_RECURSIVE, &attr)
			// Before 5.12 there is no mount_setattr; the top mount,
			// which the remount changed, is then all we can do.
			if err != nil && !errors.Is(err, unix.ENOSYS) {
				_ = UnmountAll(target)
				return fmt.Errorf("set attributes of %s and its submounts: %w", target, err)
			}
		}
	}
	return nil
}

func remountBind(target string, flags uintptr) error {
	err := unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|flags, "")
	if errors.Is(err, unix.EPERM) {
		// In a user namespace the flags the source mount already has
		// are locked and a remount must repeat them.
		var st unix.Statfs_t
		if serr := unix.Statfs(target, &st); serr == nil {
			locked := uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME)
			err = unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|flags|locked, "")
		}
	}
	if err != nil {
		return fmt.Errorf("remount %s with its options: %w", target, err)
	}
	return nil
}

// Unmount unmounts the mount at target. A mount still busy after a few
// tries is detached (MNT_DETACH) instead, so that the caller can go on; it
// disappears once its last user is gone. Nothing mounted at target, or no
// target at all, is not an error.
func Unmount(target string) error {
	_, err := unmount(target)
	return err
}

// UnmountAll unmounts target until nothing is mounted there, for the mounts
// stacked by All with several mounts at one point.
func UnmountAll(target string) error {
	// Bounded, in case something keeps mounting at target as fast as
	// we unmount.
	for range 1000 {
		unmounted, err := unmount(target)
		if err != nil || !unmounted {
			return err
		}
	}
	return fmt.Errorf("unmount %s: still mounted after 1000 unmounts", target)
}

// unmount unmounts the top mount at target and reports whether there was one.
func unmount(target string) (bool, error) {
	const busyTries = 10
	for try := 0; ; try++ {
		err := unix.Unmount(target, unix.UMOUNT_NOFOLLOW)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return false, nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EBUSY) && try < busyTries:
			// Often a process that is just exiting; give it a moment.
			time.Sleep(time.Duration(try+1) * 10 * time.Millisecond)
			continue
		case errors.Is(err, unix.EBUSY):
			if derr := unix.Unmount(target, unix.UMOUNT_NOFOLLOW|unix.MNT_DETACH); derr != nil {
				return false, fmt.Errorf("unmount %s: %w (detaching: %v)", target, err, derr)
			}
			return true, nil
		}
		return false, fmt.Errorf("unmount %s: %w", target, err)
	}
}
