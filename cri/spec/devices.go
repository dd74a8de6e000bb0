package spec

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/client/oci"
	"github.com/hullrt/hull/core/containers"
)

// CheckDevicePermissions validates cgroup device permissions: a non-empty
// combination of r (read), w (write) and m (mknod), each at most once. ""
// means all of them.
func CheckDevicePermissions(p string) (string, error) {
	if p == "" {
		return "rwm", nil
	}
	seen := map[rune]bool{}
	for _, r := range p {
		if (r != 'r' && r != 'w' && r != 'm') || seen[r] {
			return "", fmt.Errorf("device permissions %q (want a combination of r, w and m): %w", p, errdefs.ErrInvalidArgument)
		}
		seen[r] = true
	}
	return p, nil
}

// hostDevice is one device node found on the host.
type hostDevice struct {
	dev  specs.LinuxDevice
	rule specs.LinuxDeviceCgroup
}

// deviceAt reads the device node at hostPath (already resolved) for the
// container path ctrPath. ok is false for anything but a block or
// character device.
func deviceAt(hostPath, ctrPath, perms string) (hostDevice, bool, error) {
	var st unix.Stat_t
	if err := unix.Lstat(hostPath, &st); err != nil {
		return hostDevice{}, false, &fs.PathError{Op: "lstat", Path: hostPath, Err: err}
	}
	var typ string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default:
		return hostDevice{}, false, nil
	}
	major, minor := int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	mode := fs.FileMode(st.Mode & 0o7777)
	uid, gid := st.Uid, st.Gid
	return hostDevice{
		dev:  specs.LinuxDevice{Path: ctrPath, Type: typ, Major: major, Minor: minor, FileMode: &mode, UID: &uid, GID: &gid},
		rule: specs.LinuxDeviceCgroup{Allow: true, Type: typ, Major: &major, Minor: &minor, Access: perms},
	}, true, nil
}

// devicesUnder lists the devices below host directory dir, mapped to the
// same relative paths below ctrDir. Directories that hold per-mount or
// per-session nodes (pts, shm, mqueue...) are skipped, as is console,
// which runc sets up itself for a terminal.
func devicesUnder(dir, ctrDir, perms string) ([]hostDevice, error) {
	var out []hostDevice
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != dir {
				switch d.Name() {
				case "pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev":
					return filepath.SkipDir
				}
			}
			return nil
		}
		if d.Name() == "console" || d.Type()&(fs.ModeDevice|fs.ModeCharDevice) == 0 {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		hd, ok, err := deviceAt(p, path.Join(ctrDir, filepath.ToSlash(rel)), perms)
		if errors.Is(err, fs.ErrNotExist) {
			// Gone since the directory was read (hot-unplug).
			return nil
		}
		if err != nil {
			return err
		}
		if ok {
			out = append(out, hd)
		}
		return nil
	})
	return out, err
}

// resolveDevices reads the CRI devices from the host: each host path
// (symlinks followed) must exist and be a device node or a directory of
// them; a missing path is NotFound and anything else InvalidArgument,
// naming the path.
func resolveDevices(devs []*runtime.Device) ([]hostDevice, error) {
	var out []hostDevice
	for _, d := range devs {
		if d == nil {
			continue
		}
		if !path.IsAbs(d.GetContainerPath()) {
			return nil, fmt.Errorf("device container path %q is not absolute: %w", d.GetContainerPath(), errdefs.ErrInvalidArgument)
		}
		if d.GetHostPath() == "" {
			return nil, fmt.Errorf("device for %q has no host path: %w", d.GetContainerPath(), errdefs.ErrInvalidArgument)
		}
		perms, err := CheckDevicePermissions(d.GetPermissions())
		if err != nil {
			return nil, fmt.Errorf("device %s: %w", d.GetHostPath(), err)
		}
		hostPath, err := filepath.EvalSymlinks(d.GetHostPath())
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("device %s: %w", d.GetHostPath(), errors.Join(err, errdefs.ErrNotFound))
			}
			return nil, fmt.Errorf("device %s: %w", d.GetHostPath(), err)
		}
		st, err := os.Stat(hostPath)
		if err != nil {
			return nil, fmt.Errorf("device %s: %w", d.GetHostPath(), err)
		}
		ctrPath := path.Clean(d.GetContainerPath())
		if st.IsDir() {
			found, err := devicesUnder(hostPath, ctrPath, perms)
			if err != nil {
				return nil, fmt.Errorf("devices under %s: %w", d.GetHostPath(), err)
			}
			out = append(out, found...)
			continue
		}
		hd, ok, err := deviceAt(hostPath, ctrPath, perms)
		if err != nil {
			return nil, fmt.Errorf("device %s: %w", d.GetHostPath(), err)
		}
		if !ok {
			return nil, fmt.Errorf("device %s is not a block or character device: %w", d.GetHostPath(), errdefs.ErrInvalidArgument)
		}
		out = append(out, hd)
	}
	return out, nil
}

// withDevices adds devices to the spec and, with rules, allows them in the
// device cgroup. Non-zero uid and gid replace the host node's owner
// (device_ownership_from_security_context), so that a non-root container
// can open what it was given.
func withDevices(devs []hostDevice, uid, gid *uint32, rules bool) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		ensureResources(s)
		for _, d := range devs {
			dev := d.dev
			if uid != nil && *uid != 0 {
				v := *uid
				dev.UID = &v
			}
			if gid != nil && *gid != 0 {
				v := *gid
				dev.GID = &v
			}
			replaced := false
			for i := range s.Linux.Devices {
				if s.Linux.Devices[i].Path == dev.Path {
					s.Linux.Devices[i] = dev
					replaced = true
				}
			}
			if !replaced {
				s.Linux.Devices = append(s.Linux.Devices, dev)
			}
			if rules {
				s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, d.rule)
			}
		}
		return nil
	}
}

// withHostDevices gives a privileged container every device of the host's
// /dev (CRI: "all devices from the host's /dev are available"). The
// device cgroup is opened by oci.WithPrivileged, so no rules are added.
func withHostDevices(ctx context.Context, client oci.Client, c *containers.Container, s *oci.Spec) error {
	devs, err := devicesUnder("/dev", "/dev", "rwm")
	if err != nil {
		return fmt.Errorf("host devices: %w", err)
	}
	return withDevices(devs, nil, nil, false)(ctx, client, c, s)
}

// isUnder says whether p is dir or below it (both clean and absolute).
func isUnder(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}
