package mount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// An idmapped mount shows the files of its source with their owners shifted
// through a user namespace's mappings: a pod whose root is host uid 100000
// sees the image's root-owned files as its own, with nothing on disk
// changed. Snapshotters ask for one with "uidmap=" and "gidmap=" options, as
// containerd's do: a bind mount is idmapped itself; an overlay gets
// idmapped clones of its lower layers, while its upper directory, which the
// snapshotter made for the mapped root, is used as it is (overlayfs writes
// into it with the caller's ids, already the host's).

// idMapping is a parsed pair of uidmap and gidmap options.
type idMapping struct {
	uids, gids []IDMap
}

// idmap returns the mapping p's options ask for; nil if none.
func (p parsedOptions) idmap() (*idMapping, error) {
	if p.uidmap == "" && p.gidmap == "" {
		return nil, nil
	}
	if p.uidmap == "" || p.gidmap == "" {
		return nil, fmt.Errorf("an idmapped mount needs both uidmap and gidmap (got uidmap=%q, gidmap=%q): %w", p.uidmap, p.gidmap, errdefs.ErrInvalidArgument)
	}
	uids, err := ParseIDMaps(p.uidmap)
	if err != nil {
		return nil, fmt.Errorf("uidmap: %w", err)
	}
	gids, err := ParseIDMaps(p.gidmap)
	if err != nil {
		return nil, fmt.Errorf("gidmap: %w", err)
	}
	return &idMapping{uids: uids, gids: gids}, nil
}

// userns returns an open file of a new user namespace with m's mappings,
// which mount_setattr takes to idmap a mount; the namespace lives as long
// as the file or a mount idmapped with it.
//
// A user namespace needs a process: the mappings are written for one, and
// a threaded process like this one cannot unshare its own. So a child is
// started in a new user namespace on this binary with tracing on, which
// stops it at its exec before it runs a single instruction of its own; once
// its namespace is open, it is killed and reaped.
func (m *idMapping) userns() (*os.File, error) {
	// The child's parent-death signal is tied to this thread, which must
	// outlive the child.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	sys := &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: sysIDMaps(m.uids),
		GidMappings: sysIDMaps(m.gids),
		Ptrace:      true,
		Pdeathsig:   syscall.SIGKILL,
	}
	p, err := os.StartProcess("/proc/self/exe", []string{"hull-userns"}, &os.ProcAttr{Sys: sys})
	if err != nil {
		return nil, fmt.Errorf("user namespace for uidmap=%s gidmap=%s: %w", FormatIDMaps(m.uids), FormatIDMaps(m.gids), err)
	}
	defer func() {
		_ = p.Kill()
		_, _ = p.Wait()
	}()
	f, err := os.Open("/proc/" + strconv.Itoa(p.Pid) + "/ns/user")
	if err != nil {
		return nil, fmt.Errorf("open user namespace of pid %d: %w", p.Pid, err)
	}
	return f, nil
}

func sysIDMaps(maps []IDMap) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(maps))
	for i, m := range maps {
		out[i] = syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)}
	}
	return out
}

// idmappedTree returns a detached clone of the tree at source (recursive
// with rbind), idmapped through userns and with attrs set.
func idmappedTree(source string, recursive bool, userns *os.File, attrs uint64) (int, error) {
	flags := unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC
	setFlags := unix.AT_EMPTY_PATH
	if recursive {
		flags |= unix.AT_RECURSIVE
		setFlags |= unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, source, uint(flags))
	if err != nil {
		return -1, fmt.Errorf("clone mount of %s: %w", source, err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP | attrs, Userns_fd: uint64(userns.Fd())}
	if err := unix.MountSetattr(fd, "", uint(setFlags), &attr); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
			return -1, fmt.Errorf("idmap mount of %s: %w (the kernel or filesystem cannot idmap it): %w", source, err, errdefs.ErrNotImplemented)
		}
		return -1, fmt.Errorf("idmap mount of %s: %w", source, err)
	}
	return fd, nil
}

// mountBindIDMapped bind-mounts source at target, idmapped. The mount is
// made read-only, nosuid and so on as it is made, in one step.
func mountBindIDMapped(source, target string, p parsedOptions, m *idMapping) error {
	userns, err := m.userns()
	if err != nil {
		return err
	}
	defer userns.Close()
	fd, err := idmappedTree(source, p.flags&unix.MS_REC != 0, userns, mountAttrs(p.flags&perMountFlags))
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach idmapped mount of %s at %s: %w", source, target, err)
	}
	return nil
}

// mountOverlayIDMapped mounts an overlay whose lower layers are idmapped.
// overlayfs takes its layers by path, so each idmapped clone is attached in
// a scratch directory beside target for as long as the overlay takes to
// mount; overlayfs keeps its own references to them, and the clones are
// detached and the directory removed right after.
func mountOverlayIDMapped(source, target string, p parsedOptions, m *idMapping) (retErr error) {
	userns, err := m.userns()
	if err != nil {
		return err
	}
	defer userns.Close()
	scratch, err := os.MkdirTemp(filepath.Dir(target), ".hull-idmap-")
	if err != nil {
		if scratch, err = os.MkdirTemp("", "hull-idmap-"); err != nil {
			return fmt.Errorf("scratch directory for idmapped layers: %w", err)
		}
	}
	var attached []string
	defer func() {
		var errs []error
		for _, a := range attached {
			if err := unix.Unmount(a, unix.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("detach idmapped layer %s: %w", a, err))
			}
		}
		if len(errs) == 0 {
			errs = append(errs, os.RemoveAll(scratch))
		}
		retErr = errors.Join(append([]error{retErr}, errs...)...)
	}()
	attach := func(layer string) (string, error) {
		dir := filepath.Join(scratch, strconv.Itoa(len(attached)))
		if err := os.Mkdir(dir, 0o700); err != nil {
			return "", err
		}
		fd, err := idmappedTree(layer, false, userns, 0)
		if err != nil {
			return "", err
		}
		defer unix.Close(fd)
		if err := unix.MoveMount(fd, "", unix.AT_FDCWD, dir, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return "", fmt.Errorf("attach idmapped layer %s: %w", layer, err)
		}
		attached = append(attached, dir)
		return dir, nil
	}
	mapped := p
	mapped.data = make([]string, 0, len(p.data))
	for _, o := range p.data {
		v, ok := strings.CutPrefix(o, "lowerdir=")
		if !ok {
			mapped.data = append(mapped.data, o)
			continue
		}
		lower, dataOnly := OverlayLayers(v)
		var b strings.Builder
		b.WriteString("lowerdir=")
		for i, l := range lower {
			d, err := attach(l)
			if err != nil {
				return err
			}
			if i > 0 {
				b.WriteByte(':')
			}
			b.WriteString(EscapeOverlayPath(d))
		}
		for _, l := range dataOnly {
			d, err := attach(l)
			if err != nil {
				return err
			}
			b.WriteString("::" + EscapeOverlayPath(d))
		}
		mapped.data = append(mapped.data, b.String())
	}
	return mountOverlay(source, target, mapped)
}
