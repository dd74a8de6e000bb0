package mount

import (
	"strings"

	"golang.org/x/sys/unix"
)

// parsedOptions are a Mount's options split the way mount(2) wants them.
type parsedOptions struct {
	// flags are the MS_* flags of the mount itself (ro, nosuid, bind...).
	flags uintptr
	// propagation is the MS_* propagation change (MS_PRIVATE, maybe with
	// MS_REC), which the kernel takes only as a separate mount(2) call.
	propagation uintptr
	// data are the options left for the filesystem, in order.
	data []string
	// uidmap and gidmap are the values of "uidmap=" and "gidmap=", which
	// ask for an idmapped mount (see idmap_linux.go) rather than reach
	// the filesystem.
	uidmap, gidmap string
}

// parseOptions splits fstab-style options into flags and filesystem data.
// Later options override earlier ones ("ro,rw" is read-write), as in fstab.
func parseOptions(options []string) parsedOptions {
	var p parsedOptions
	for _, o := range options {
		if set, clear, ok := flagOption(o); ok {
			p.flags = p.flags&^clear | set
			continue
		}
		if prop, ok := propagationOption(o); ok {
			p.propagation = prop
			continue
		}
		if v, ok := strings.CutPrefix(o, "uidmap="); ok {
			p.uidmap = v
			continue
		}
		if v, ok := strings.CutPrefix(o, "gidmap="); ok {
			p.gidmap = v
			continue
		}
		p.data = append(p.data, o)
	}
	return p
}

// flagOption maps an option to the MS_* flags it sets and clears.
func flagOption(o string) (set, clear uintptr, ok bool) {
	switch o {
	case "defaults":
		return 0, 0, true
	case "ro":
		return unix.MS_RDONLY, 0, true
	case "rw":
		return 0, unix.MS_RDONLY, true
	case "nosuid":
		return unix.MS_NOSUID, 0, true
	case "suid":
		return 0, unix.MS_NOSUID, true
	case "nodev":
		return unix.MS_NODEV, 0, true
	case "dev":
		return 0, unix.MS_NODEV, true
	case "noexec":
		return unix.MS_NOEXEC, 0, true
	case "exec":
		return 0, unix.MS_NOEXEC, true
	case "sync":
		return unix.MS_SYNCHRONOUS, 0, true
	case "async":
		return 0, unix.MS_SYNCHRONOUS, true
	case "dirsync":
		return unix.MS_DIRSYNC, 0, true
	case "noatime":
		return unix.MS_NOATIME, 0, true
	case "atime":
		return 0, unix.MS_NOATIME, true
	case "nodiratime":
		return unix.MS_NODIRATIME, 0, true
	case "diratime":
		return 0, unix.MS_NODIRATIME, true
	case "relatime":
		return unix.MS_RELATIME, 0, true
	case "norelatime":
		return 0, unix.MS_RELATIME, true
	case "strictatime":
		return unix.MS_STRICTATIME, 0, true
	case "nostrictatime":
		return 0, unix.MS_STRICTATIME, true
	case "lazytime":
		return unix.MS_LAZYTIME, 0, true
	case "nolazytime":
		return 0, unix.MS_LAZYTIME, true
	case "mand":
		return unix.MS_MANDLOCK, 0, true
	case "nomand":
		return 0, unix.MS_MANDLOCK, true
	case "bind":
		return unix.MS_BIND, unix.MS_REC, true
	case "rbind":
		return unix.MS_BIND | unix.MS_REC, 0, true
	}
	return 0, 0, false
}

func propagationOption(o string) (uintptr, bool) {
	switch o {
	case "private":
		return unix.MS_PRIVATE, true
	case "rprivate":
		return unix.MS_PRIVATE | unix.MS_REC, true
	case "shared":
		return unix.MS_SHARED, true
	case "rshared":
		return unix.MS_SHARED | unix.MS_REC, true
	case "slave":
		return unix.MS_SLAVE, true
	case "rslave":
		return unix.MS_SLAVE | unix.MS_REC, true
	case "unbindable":
		return unix.MS_UNBINDABLE, true
	case "runbindable":
		return unix.MS_UNBINDABLE | unix.MS_REC, true
	}
	return 0, false
}

// perMountFlags are the flags a bind mount ignores when it is made and
// takes only from a remount.
const perMountFlags = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC |
	unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME | unix.MS_STRICTATIME

// mountAttrs converts per-mount MS_* flags to the MOUNT_ATTR_* bits of the
// new mount API.
func mountAttrs(flags uintptr) uint64 {
	var a uint64
	if flags&unix.MS_RDONLY != 0 {
		a |= unix.MOUNT_ATTR_RDONLY
	}
	if flags&unix.MS_NOSUID != 0 {
		a |= unix.MOUNT_ATTR_NOSUID
	}
	if flags&unix.MS_NODEV != 0 {
		a |= unix.MOUNT_ATTR_NODEV
	}
	if flags&unix.MS_NOEXEC != 0 {
		a |= unix.MOUNT_ATTR_NOEXEC
	}
	if flags&unix.MS_NODIRATIME != 0 {
		a |= unix.MOUNT_ATTR_NODIRATIME
	}
	switch {
	case flags&unix.MS_NOATIME != 0:
		a |= unix.MOUNT_ATTR_NOATIME
	case flags&unix.MS_STRICTATIME != 0:
		a |= unix.MOUNT_ATTR_STRICTATIME
	}
	return a
}
