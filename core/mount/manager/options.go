package manager

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
)

// Mount flags, as mount(2) takes them; the values are Linux's, kept here so
// that the parser is the same on every platform and can be fuzzed anywhere.
const (
	flagRdonly     = 0x1
	flagNosuid     = 0x2
	flagNodev      = 0x4
	flagNoexec     = 0x8
	flagSync       = 0x10
	flagDirsync    = 0x80
	flagNoatime    = 0x400
	flagNodiratime = 0x800
	flagRelatime   = 0x200000
	flagStrictatim = 0x1000000
	flagLazytime   = 0x2000000
)

// blockOptions are the options of a filesystem mount the manager makes
// with mount(2) itself: flags, the filesystem's own data, and whether the
// source is a file to attach to a loop device first.
type blockOptions struct {
	flags uintptr
	data  []string
	loop  bool
}

// parseBlockOptions reads fstab-style options. Flags mount(2) knows are
// flags; "loop" asks for a loop device; "X-containerd." options that a
// transform did not consume, and containerd's own hints ("defaults"), are
// dropped; anything else goes to the filesystem as data. An option with a
// NUL or a comma cannot be passed to the kernel and is InvalidArgument.
func parseBlockOptions(opts []string) (blockOptions, error) {
	var o blockOptions
	for _, opt := range opts {
		if strings.ContainsAny(opt, "\x00,") {
			return blockOptions{}, fmt.Errorf("mount option %q contains a comma or NUL: %w", opt, errdefs.ErrInvalidArgument)
		}
		set, clear := uintptr(0), uintptr(0)
		switch opt {
		case "ro":
			set = flagRdonly
		case "rw":
			clear = flagRdonly
		case "nosuid":
			set = flagNosuid
		case "suid":
			clear = flagNosuid
		case "nodev":
			set = flagNodev
		case "dev":
			clear = flagNodev
		case "noexec":
			set = flagNoexec
		case "exec":
			clear = flagNoexec
		case "sync":
			set = flagSync
		case "async":
			clear = flagSync
		case "dirsync":
			set = flagDirsync
		case "noatime":
			set = flagNoatime
		case "atime":
			clear = flagNoatime
		case "nodiratime":
			set = flagNodiratime
		case "diratime":
			clear = flagNodiratime
		case "relatime":
			set = flagRelatime
		case "norelatime":
			clear = flagRelatime
		case "strictatime":
			set = flagStrictatim
		case "lazytime":
			set = flagLazytime
		case "loop":
			o.loop = true
			continue
		case "", "defaults":
			continue
		default:
			if strings.HasPrefix(opt, "X-containerd.") {
				continue
			}
			o.data = append(o.data, opt)
			continue
		}
		o.flags = o.flags&^clear | set
	}
	return o, nil
}

// readOnly reports whether the options ask for a read-only mount.
func (o blockOptions) readOnly() bool { return o.flags&flagRdonly != 0 }
