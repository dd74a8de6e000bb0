package spec

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/client/oci"
	"github.com/hullrt/hull/core/containers"
)

// Paths the server provides in every container of a pod.
const (
	etcHostname    = "/etc/hostname"
	etcHosts       = "/etc/hosts"
	etcResolvConf  = "/etc/resolv.conf"
	devShm         = "/dev/shm"
	hostMountinfo  = "/proc/self/mountinfo"
	maxMountinfoLn = 1 << 20
)

// mountInfo is what this package reads of a line of /proc/<pid>/mountinfo:
// the mount point and the optional fields (shared:N, master:N, ...).
type mountInfo struct {
	mountPoint string
	optional   []string
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space,
// \011, \012, \134) in a mountinfo path; anything else is kept as is.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && isOctal3(s[i+1:]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal3(s string) bool {
	if len(s) < 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < '0' || s[i] > '7' {
			return false
		}
	}
	// \400 and above do not fit a byte: not an escape the kernel writes.
	return s[0] <= '3'
}

// ParseMountinfo reads mountinfo lines ("36 35 98:0 /mnt1 /mnt2 rw master:1
// - ext3 /dev/root rw"): the fifth field is the mount point and the fields
// between the sixth and the "-" separator are optional tags. A line
// without the separator or with fewer fields is InvalidArgument.
func parseMountinfo(r io.Reader) ([]mountInfo, error) {
	var out []mountInfo
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxMountinfoLn)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if len(f) < 6 || sep < 6 {
			return nil, fmt.Errorf("mountinfo line %q: %w", line, errdefs.ErrInvalidArgument)
		}
		out = append(out, mountInfo{mountPoint: unescapeMountinfo(f[4]), optional: f[6:sep]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return out, nil
}

// mountOf returns the mount that holds path p (clean and absolute): the
// one with the longest mount point above p, the last of equals since a
// later mount covers an earlier one on the same point.
func mountOf(infos []mountInfo, p string) (mountInfo, bool) {
	best, found := mountInfo{}, false
	for _, m := range infos {
		if isUnder(p, m.mountPoint) && (!found || len(m.mountPoint) >= len(best.mountPoint)) {
			best, found = m, true
		}
	}
	return best, found
}

// ensureShared fails unless host path p (resolved) is on a shared mount:
// bidirectional propagation of a private mount would silently propagate
// nothing.
func ensureShared(p string, infos []mountInfo) error {
	m, ok := mountOf(infos, p)
	if !ok {
		return fmt.Errorf("host path %s: no mount holds it: %w", p, errdefs.ErrFailedPrecondition)
	}
	for _, o := range m.optional {
		if strings.HasPrefix(o, "shared:") {
			return nil
		}
	}
	return fmt.Errorf("host path %s is on mount %s, which is not shared, as bidirectional propagation needs: %w", p, m.mountPoint, errdefs.ErrInvalidArgument)
}

func readMountinfo() ([]mountInfo, error) {
	f, err := os.Open(hostMountinfo)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMountinfo(f)
}

// allowedMountOptions are the CRI mount_options hull passes on: flags that
// only restrict or tune a bind mount. Read-only-ness has its own fields;
// propagation too.
func allowedMountOption(o string) bool {
	switch o {
	case "nosuid", "suid", "nodev", "dev", "noexec", "exec", "noatime", "atime", "nodiratime", "diratime",
		"relatime", "norelatime", "strictatime", "nostrictatime":
		return true
	}
	return false
}

// mountPlan is the bind mounts a container gets and the root propagation
// they need.
type mountPlan struct {
	binds       []specs.Mount
	propagation string
}

// bindOptions builds the options of a CRI mount.
func bindOptions(m *runtime.Mount, src string, infos func() ([]mountInfo, error)) (opts []string, prop string, err error) {
	opts = []string{"rbind"}
	switch m.GetPropagation() {
	case runtime.MountPropagation_PROPAGATION_PRIVATE:
		opts = append(opts, "rprivate")
	case runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
		opts = append(opts, "rslave")
		prop = "rslave"
	case runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL:
		mi, err := infos()
		if err != nil {
			return nil, "", fmt.Errorf("mount %s: read mount table: %w", m.GetHostPath(), err)
		}
		if err := ensureShared(src, mi); err != nil {
			return nil, "", err
		}
		opts = append(opts, "rshared")
		prop = "rshared"
	default:
		return nil, "", fmt.Errorf("mount %s: unknown propagation %d: %w", m.GetContainerPath(), int32(m.GetPropagation()), errdefs.ErrInvalidArgument)
	}
	switch {
	case m.GetRecursiveReadOnly() && !m.GetReadonly():
		return nil, "", fmt.Errorf("mount %s: recursive_read_only needs readonly: %w", m.GetContainerPath(), errdefs.ErrInvalidArgument)
	case m.GetRecursiveReadOnly() && m.GetPropagation() != runtime.MountPropagation_PROPAGATION_PRIVATE:
		return nil, "", fmt.Errorf("mount %s: recursive_read_only needs private propagation, not %s: %w", m.GetContainerPath(), m.GetPropagation(), errdefs.ErrInvalidArgument)
	case m.GetRecursiveReadOnly():
		opts = append(opts, "rro")
	case m.GetReadonly():
		opts = append(opts, "ro")
	default:
		opts = append(opts, "rw")
	}
	for _, o := range m.GetMountOptions() {
		if !allowedMountOption(o) {
			return nil, "", fmt.Errorf("mount %s: mount option %q is not supported: %w", m.GetContainerPath(), o, errdefs.ErrInvalidArgument)
		}
		if !slices.Contains(opts, o) {
			opts = append(opts, o)
		}
	}
	return opts, prop, nil
}

// planMounts works out the bind mounts of container c: its CRI mounts
// first, then the pod's files (/etc/hostname, /etc/hosts,
// /etc/resolv.conf, /dev/shm) and the image's volumes where no CRI mount
// covers the path. Host paths are resolved and checked now, so that a bad
// mount fails the create call naming it.
func planMounts(c Container, un userns, readonlyRoot, hostIPC bool) (mountPlan, error) {
	var plan mountPlan
	var mi []mountInfo
	infos := func() ([]mountInfo, error) {
		if mi != nil {
			return mi, nil
		}
		var err error
		mi, err = readMountinfo()
		return mi, err
	}
	taken := map[string]bool{}
	mappings := func(m *runtime.Mount) (uids, gids []specs.LinuxIDMapping, err error) {
		if uids, err = idMappings("mount uid", m.GetUidMappings()); err != nil {
			return nil, nil, err
		}
		if gids, err = idMappings("mount gid", m.GetGidMappings()); err != nil {
			return nil, nil, err
		}
		if len(uids) == 0 && len(gids) == 0 && un.enabled {
			// Files keep their on-disk owners as the container sees
			// them: an idmapped mount with the pod's mappings.
			uids, gids = slices.Clone(un.uids), slices.Clone(un.gids)
		}
		return uids, gids, nil
	}
	for _, m := range c.Config.GetMounts() {
		if m == nil {
			continue
		}
		dst := m.GetContainerPath()
		if !path.IsAbs(dst) {
			return plan, fmt.Errorf("mount container path %q is not absolute: %w", dst, errdefs.ErrInvalidArgument)
		}
		dst = path.Clean(dst)
		var src string
		var opts []string
		if m.GetImage() != nil {
			if m.GetHostPath() != "" {
				return plan, fmt.Errorf("mount %s names both host path %q and image %q: %w", dst, m.GetHostPath(), m.GetImage().GetImage(), errdefs.ErrInvalidArgument)
			}
			root, ok := c.ImageMounts[m]
			if !ok || root == "" {
				return plan, fmt.Errorf("mount %s: image %q is not mounted: %w", dst, m.GetImage().GetImage(), errdefs.ErrFailedPrecondition)
			}
			src = root
			if sub := m.GetImageSubPath(); sub != "" {
				r, err := os.OpenRoot(root)
				if err != nil {
					return plan, fmt.Errorf("mount %s: open image %q: %w", dst, m.GetImage().GetImage(), err)
				}
				rel, err := resolveInRoot(r, sub)
				r.Close()
				if err != nil {
					return plan, fmt.Errorf("mount %s: sub path %q of image %q: %w", dst, sub, m.GetImage().GetImage(), err)
				}
				src = filepath.Join(root, filepath.FromSlash(rel))
			}
			// Images are read-only by definition (KEP 4639), and
			// nothing in them is a trusted setuid binary or device.
			opts = []string{"rbind", "rprivate", "ro", "nosuid", "nodev"}
		} else {
			if m.GetHostPath() == "" {
				return plan, fmt.Errorf("mount %s has no host path: %w", dst, errdefs.ErrInvalidArgument)
			}
			var err error
			src, err = filepath.EvalSymlinks(m.GetHostPath())
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return plan, fmt.Errorf("mount host path %s: %w", m.GetHostPath(), errors.Join(err, errdefs.ErrNotFound))
				}
				return plan, fmt.Errorf("mount host path %s: %w", m.GetHostPath(), err)
			}
			var prop string
			opts, prop, err = bindOptions(m, src, infos)
			if err != nil {
				return plan, err
			}
			if prop == "rshared" || (prop == "rslave" && plan.propagation == "") {
				plan.propagation = prop
			}
		}
		uids, gids, err := mappings(m)
		if err != nil {
			return plan, fmt.Errorf("mount %s: %w", dst, err)
		}
		taken[dst] = true
		plan.binds = append(plan.binds, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts, UIDMappings: uids, GIDMappings: gids})
	}
	podFile := func(dst, src string, ro, idmap bool) {
		if src == "" || taken[dst] {
			return
		}
		taken[dst] = true
		mode := "rw"
		if ro {
			mode = "ro"
		}
		m := specs.Mount{Destination: dst, Type: "bind", Source: src, Options: []string{"rbind", "rprivate", mode}}
		if dst == devShm {
			m.Options = append(m.Options, "nosuid", "nodev", "noexec")
		}
		if idmap && un.enabled {
			m.UIDMappings, m.GIDMappings = slices.Clone(un.uids), slices.Clone(un.gids)
		}
		plan.binds = append(plan.binds, m)
	}
	podFile(etcHostname, c.HostnamePath, readonlyRoot, true)
	podFile(etcHosts, c.HostsPath, readonlyRoot, true)
	podFile(etcResolvConf, c.ResolvConfPath, readonlyRoot, true)
	shm := c.ShmPath
	if shm == "" && hostIPC {
		shm = devShm
	}
	// tmpfs takes idmapped mounts only since Linux 6.3, and the pod's
	// shm starts empty, so it needs no mapping.
	podFile(devShm, shm, false, false)
	for _, v := range c.Volumes {
		dst := path.Clean(v.Destination)
		if !path.IsAbs(dst) {
			return plan, fmt.Errorf("image volume %q is not absolute: %w", v.Destination, errdefs.ErrInvalidArgument)
		}
		if taken[dst] {
			continue
		}
		taken[dst] = true
		v.Destination = dst
		v.Options = slices.Clone(v.Options)
		if un.enabled && len(v.UIDMappings) == 0 {
			v.UIDMappings, v.GIDMappings = slices.Clone(un.uids), slices.Clone(un.gids)
		}
		plan.binds = append(plan.binds, v)
	}
	return plan, nil
}

// withBindMounts installs the planned binds: a default mount at the same
// destination goes (and every default below /dev when /dev itself is
// bound), and binds are ordered by depth so that a mount at /a never hides
// one at /a/b.
func withBindMounts(plan mountPlan) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		dests := map[string]bool{}
		for _, b := range plan.binds {
			dests[b.Destination] = true
		}
		kept := s.Mounts[:0:0]
		for _, m := range s.Mounts {
			d := path.Clean(m.Destination)
			if dests[d] || (dests["/dev"] && strings.HasPrefix(d, "/dev/")) {
				continue
			}
			kept = append(kept, m)
		}
		binds := slices.Clone(plan.binds)
		slices.SortStableFunc(binds, func(a, b specs.Mount) int {
			return cmp.Compare(strings.Count(a.Destination, "/"), strings.Count(b.Destination, "/"))
		})
		s.Mounts = append(kept, binds...)
		if plan.propagation != "" {
			ensureLinux(s)
			s.Linux.RootfsPropagation = plan.propagation
		}
		return nil
	}
}

// withSysBind replaces the sysfs mount by a read-only bind of the host's
// /sys: a process in a user namespace may not mount sysfs for a network
// namespace it does not own, which is the case with host networking.
func withSysBind(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	for i := range s.Mounts {
		if path.Clean(s.Mounts[i].Destination) == "/sys" {
			s.Mounts[i] = specs.Mount{Destination: "/sys", Type: "bind", Source: "/sys", Options: []string{"rbind", "rro", "nosuid", "nodev", "noexec"}}
		}
	}
	return nil
}

// withDevShm replaces the default /dev/shm tmpfs by the pod's.
func withDevShm(src string, opts []string) oci.SpecOpts {
	return oci.WithMounts([]specs.Mount{{Destination: devShm, Type: "bind", Source: src, Options: opts}})
}
