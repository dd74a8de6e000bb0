package spec

import (
	"fmt"
	"path"
	"strings"

	"github.com/containerd/errdefs"
)

// Cgroup drivers, as hulld's CRI config names them.
const (
	CgroupDriverCgroupfs = "cgroupfs"
	CgroupDriverSystemd  = "systemd"
)

// systemdCgroupPrefix is the middle part of runc's "slice:prefix:name"
// systemd cgroup path: the scope is then hull-<id>.scope, which tells an
// administrator reading systemctl whose container it is.
const systemdCgroupPrefix = "hull"

// CgroupsPath validates the kubelet's cgroup parent for the driver and
// returns the cgroup path for the spec of the sandbox or container id.
//
// With the systemd driver the parent is a slice name ("kubepods-pod1.slice";
// a path of slices, as the kubelet may write it, is reduced to its last
// element) and the result is runc's "slice:hull:id"; an empty parent puts
// the cgroup in system.slice. With the cgroupfs driver (or "") the parent
// is an absolute cgroup path and the result is parent/id; an empty parent
// returns "" with no error, meaning the generator's default
// (/<namespace>/<id>). A parent of the wrong form for the driver, an
// unknown driver or an id that cannot be a cgroup name is InvalidArgument.
func CgroupsPath(driver, parent, id string) (string, error) {
	if id == "" || strings.ContainsAny(id, "/:\x00") || id == "." || id == ".." {
		return "", fmt.Errorf("id %q cannot name a cgroup: %w", id, errdefs.ErrInvalidArgument)
	}
	switch driver {
	case CgroupDriverSystemd:
		if parent == "" {
			return "system.slice:" + systemdCgroupPrefix + ":" + id, nil
		}
		slice := path.Base(parent)
		if err := validSlice(slice); err != nil {
			return "", fmt.Errorf("cgroup parent %q for the systemd cgroup driver: %w", parent, err)
		}
		return slice + ":" + systemdCgroupPrefix + ":" + id, nil
	case CgroupDriverCgroupfs, "":
		if parent == "" {
			return "", nil
		}
		if !strings.HasPrefix(parent, "/") || strings.ContainsAny(parent, ":\x00") {
			return "", fmt.Errorf("cgroup parent %q for the cgroupfs cgroup driver is not an absolute cgroup path: %w", parent, errdefs.ErrInvalidArgument)
		}
		if strings.HasSuffix(path.Base(parent), ".slice") {
			// A slice name under cgroupfs means the kubelet runs the
			// systemd driver and hulld does not: the pod would land
			// outside the cgroups the kubelet accounts.
			return "", fmt.Errorf("cgroup parent %q is a systemd slice but the cgroup driver is cgroupfs: %w", parent, errdefs.ErrInvalidArgument)
		}
		return path.Join(path.Clean(parent), id), nil
	default:
		return "", fmt.Errorf("unknown cgroup driver %q (want %q or %q): %w", driver, CgroupDriverCgroupfs, CgroupDriverSystemd, errdefs.ErrInvalidArgument)
	}
}

// validSlice checks a systemd slice unit name the way systemd expands it
// into a path (a-b-c.slice is a.slice/a-b.slice/a-b-c.slice): a non-empty
// name ending in ".slice", whose dash-separated parts are all non-empty,
// and without the separators of runc's path syntax.
func validSlice(slice string) error {
	name, ok := strings.CutSuffix(slice, ".slice")
	if !ok || name == "" {
		return fmt.Errorf("%q is not a systemd slice name (*.slice): %w", slice, errdefs.ErrInvalidArgument)
	}
	if name == "-" {
		// "-.slice" is systemd's root slice.
		return nil
	}
	if strings.ContainsAny(name, "/:\x00") {
		return fmt.Errorf("slice name %q holds '/', ':' or NUL: %w", slice, errdefs.ErrInvalidArgument)
	}
	for _, part := range strings.Split(name, "-") {
		if part == "" {
			return fmt.Errorf("slice name %q has an empty dash-separated part: %w", slice, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}
