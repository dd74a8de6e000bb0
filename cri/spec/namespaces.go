package spec

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/client/oci"
	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/core/snapshots"
)

// maxIDMappings is the kernel's limit on lines in uid_map and gid_map.
const maxIDMappings = 340

// nsPath is the namespace of type kind ("net", "ipc", ...) of process pid.
func nsPath(pid uint32, kind string) string {
	return fmt.Sprintf("/proc/%d/ns/%s", pid, kind)
}

// userns is a parsed UserNamespace: whether the pod has its own user
// namespace, and its mappings.
type userns struct {
	enabled    bool
	uids, gids []specs.LinuxIDMapping
}

// idMappings converts and checks CRI id mappings the way the kernel will:
// a non-empty range each, inside the 32-bit id space, container ranges
// that do not overlap, at most maxIDMappings of them.
func idMappings(what string, in []*runtime.IDMapping) ([]specs.LinuxIDMapping, error) {
	if len(in) == 0 {
		return nil, nil
	}
	if len(in) > maxIDMappings {
		return nil, fmt.Errorf("%d %s mappings, more than the kernel's %d: %w", len(in), what, maxIDMappings, errdefs.ErrInvalidArgument)
	}
	out := make([]specs.LinuxIDMapping, 0, len(in))
	for _, m := range in {
		if m == nil {
			return nil, fmt.Errorf("empty %s mapping: %w", what, errdefs.ErrInvalidArgument)
		}
		desc := fmt.Sprintf("%s mapping container %d host %d length %d", what, m.GetContainerId(), m.GetHostId(), m.GetLength())
		if m.GetLength() == 0 {
			return nil, fmt.Errorf("%s has length 0: %w", desc, errdefs.ErrInvalidArgument)
		}
		if uint64(m.GetContainerId())+uint64(m.GetLength()) > 1<<32 || uint64(m.GetHostId())+uint64(m.GetLength()) > 1<<32 {
			return nil, fmt.Errorf("%s leaves the 32-bit id range: %w", desc, errdefs.ErrInvalidArgument)
		}
		out = append(out, specs.LinuxIDMapping{ContainerID: m.GetContainerId(), HostID: m.GetHostId(), Size: m.GetLength()})
	}
	sorted := slices.SortedFunc(slices.Values(out), func(a, b specs.LinuxIDMapping) int { return cmp.Compare(a.ContainerID, b.ContainerID) })
	for i := 1; i < len(sorted); i++ {
		if uint64(sorted[i-1].ContainerID)+uint64(sorted[i-1].Size) > uint64(sorted[i].ContainerID) {
			return nil, fmt.Errorf("%s mappings overlap at container id %d: %w", what, sorted[i].ContainerID, errdefs.ErrInvalidArgument)
		}
	}
	return out, nil
}

// parseUserns reads the user namespace options: none or mode NODE is the
// host's user namespace, mode POD a pod user namespace with the given
// mappings (both required); other modes are InvalidArgument.
func parseUserns(u *runtime.UserNamespace) (userns, error) {
	if u == nil {
		return userns{}, nil
	}
	uids, err := idMappings("uid", u.GetUids())
	if err != nil {
		return userns{}, err
	}
	gids, err := idMappings("gid", u.GetGids())
	if err != nil {
		return userns{}, err
	}
	switch u.GetMode() {
	case runtime.NamespaceMode_NODE:
		if len(uids) != 0 || len(gids) != 0 {
			return userns{}, fmt.Errorf("user namespace mode NODE with %d uid and %d gid mappings: %w", len(uids), len(gids), errdefs.ErrInvalidArgument)
		}
		return userns{}, nil
	case runtime.NamespaceMode_POD:
		if len(uids) == 0 || len(gids) == 0 {
			return userns{}, fmt.Errorf("user namespace mode POD needs uid and gid mappings, got %d and %d: %w", len(uids), len(gids), errdefs.ErrInvalidArgument)
		}
		// The namespace's root owns the pod's files; without it no
		// container could set itself up.
		if !mapsZero(uids) || !mapsZero(gids) {
			return userns{}, fmt.Errorf("user namespace mode POD must map container id 0 (uids %v, gids %v): %w", uids, gids, errdefs.ErrInvalidArgument)
		}
		return userns{enabled: true, uids: uids, gids: gids}, nil
	}
	return userns{}, fmt.Errorf("user namespace mode %s is not supported (want POD or NODE): %w", u.GetMode(), errdefs.ErrInvalidArgument)
}

// equal says whether two pods' user namespaces are the same.
func (u userns) equal(o userns) bool {
	return u.enabled == o.enabled && slices.Equal(u.uids, o.uids) && slices.Equal(u.gids, o.gids)
}

// withUserns gives the spec a user namespace with u's mappings, joining
// path if set (a container joins its pod's) or making a new one.
func withUserns(u userns, path string) oci.SpecOpts {
	return func(ctx context.Context, client oci.Client, c *containers.Container, s *oci.Spec) error {
		if !u.enabled {
			return oci.WithHostNamespace(specs.UserNamespace)(ctx, client, c, s)
		}
		if err := oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.UserNamespace, Path: path})(ctx, client, c, s); err != nil {
			return err
		}
		s.Linux.UIDMappings = slices.Clone(u.uids)
		s.Linux.GIDMappings = slices.Clone(u.gids)
		return nil
	}
}

// podNamespaces is what a pod shares with the host.
type podNamespaces struct {
	hostNet, hostIPC, hostPID bool
}

// parsePodNamespaces checks a sandbox's namespace modes: network and IPC
// are POD (or CONTAINER, the same for a pod) or NODE; PID also may not be
// TARGET, which names a container a sandbox cannot have.
func parsePodNamespaces(o *runtime.NamespaceOption) (podNamespaces, error) {
	var p podNamespaces
	check := func(what string, m runtime.NamespaceMode) (bool, error) {
		switch m {
		case runtime.NamespaceMode_POD, runtime.NamespaceMode_CONTAINER:
			return false, nil
		case runtime.NamespaceMode_NODE:
			return true, nil
		}
		return false, fmt.Errorf("pod %s namespace mode %s is not supported: %w", what, m, errdefs.ErrInvalidArgument)
	}
	var err error
	if p.hostNet, err = check("network", o.GetNetwork()); err != nil {
		return p, err
	}
	if p.hostIPC, err = check("ipc", o.GetIpc()); err != nil {
		return p, err
	}
	if p.hostPID, err = check("pid", o.GetPid()); err != nil {
		return p, err
	}
	return p, nil
}

// NormalizeSysctl returns a sysctl name with dots as separators: the
// kubelet and runc accept the slash form ("net/ipv4/ip_forward") too, in
// which dots are part of a component (an interface named "eth0.100"), so
// the two separators swap.
func NormalizeSysctl(name string) string {
	if !strings.Contains(name, "/") {
		return name
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '/':
			return '.'
		case '.':
			return '/'
		}
		return r
	}, name)
}

// sysctlNamespace says which namespace a sysctl belongs to: "net", "ipc"
// or "uts"; "" for one that is not namespaced and would change the host.
// The lists are the kernel's (and Kubernetes'): net.*, the System V IPC
// and POSIX message queue ones, and kernel.domainname.
func sysctlNamespace(name string) string {
	switch {
	case strings.HasPrefix(name, "net."):
		return "net"
	case name == "kernel.sem", strings.HasPrefix(name, "kernel.shm"), strings.HasPrefix(name, "kernel.msg"), strings.HasPrefix(name, "fs.mqueue."):
		return "ipc"
	case name == "kernel.domainname":
		return "uts"
	}
	return ""
}

// validSysctlName checks a normalized sysctl name: dot-separated
// non-empty components of letters, digits, '_', '-' and, within an
// interface name, '/' (written as '.' in the slash form).
func validSysctlName(name string) bool {
	if name == "" {
		return false
	}
	for _, part := range strings.Split(name, ".") {
		if part == "" {
			return false
		}
		for _, r := range part {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '/' || r == '@' || r == ':') {
				return false
			}
		}
	}
	return true
}

// CheckSysctls returns the pod's sysctls with normalized names, refusing
// (InvalidArgument, naming it) a sysctl that is not namespaced or whose
// namespace the pod shares with the host: the write would change the
// node.
func CheckSysctls(sysctls map[string]string, hostNet, hostIPC bool) (map[string]string, error) {
	out := make(map[string]string, len(sysctls))
	for _, k := range slices.Sorted(maps.Keys(sysctls)) {
		v := sysctls[k]
		name := NormalizeSysctl(k)
		if !validSysctlName(name) {
			return nil, fmt.Errorf("sysctl %q is not a valid name: %w", k, errdefs.ErrInvalidArgument)
		}
		if strings.ContainsAny(v, "\x00\n") {
			return nil, fmt.Errorf("sysctl %q: value %q holds NUL or a newline: %w", k, v, errdefs.ErrInvalidArgument)
		}
		switch sysctlNamespace(name) {
		case "":
			return nil, fmt.Errorf("sysctl %q is not namespaced: setting it would change the node: %w", k, errdefs.ErrInvalidArgument)
		case "net", "uts":
			if hostNet {
				return nil, fmt.Errorf("sysctl %q belongs to the network namespace, which the pod shares with the node: %w", k, errdefs.ErrInvalidArgument)
			}
		case "ipc":
			if hostIPC {
				return nil, fmt.Errorf("sysctl %q belongs to the IPC namespace, which the pod shares with the node: %w", k, errdefs.ErrInvalidArgument)
			}
		}
		out[name] = v
	}
	return out, nil
}

// withSysctls sets the spec's sysctls.
func withSysctls(sysctls map[string]string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if len(sysctls) == 0 {
			return nil
		}
		ensureLinux(s)
		if s.Linux.Sysctl == nil {
			s.Linux.Sysctl = make(map[string]string, len(sysctls))
		}
		maps.Copy(s.Linux.Sysctl, sysctls)
		return nil
	}
}

func mapsZero(maps []specs.LinuxIDMapping) bool {
	return slices.ContainsFunc(maps, func(m specs.LinuxIDMapping) bool { return m.ContainerID == 0 })
}

// UsernsSnapshotLabels returns the snapshot labels that make a root
// filesystem owned by the pod's user namespace (snapshots.LabelUIDMapping
// and LabelGIDMapping); nil for a pod in the host's.
func UsernsSnapshotLabels(nsOpts *runtime.NamespaceOption) (map[string]string, error) {
	un, err := parseUserns(nsOpts.GetUsernsOptions())
	if err != nil || !un.enabled {
		return nil, err
	}
	return map[string]string{
		snapshots.LabelUIDMapping: formatIDMappings(un.uids),
		snapshots.LabelGIDMapping: formatIDMappings(un.gids),
	}, nil
}

func formatIDMappings(maps []specs.LinuxIDMapping) string {
	parts := make([]string, len(maps))
	for i, m := range maps {
		parts[i] = fmt.Sprintf("%d:%d:%d", m.ContainerID, m.HostID, m.Size)
	}
	return strings.Join(parts, ",")
}
