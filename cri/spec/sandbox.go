package spec

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hullrt/hull/client/oci"
	"github.com/hullrt/hull/core/containers"
)

// withoutGeneratorDefaults drops the generator's rlimits, seccomp profile
// and AppArmor profile: under the CRI the security context decides those,
// and a container inherits the runtime's rlimits as under containerd (a
// 1024 open-file limit breaks many server images).
func withoutGeneratorDefaults(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	ensureProcess(s)
	s.Process.Rlimits = nil
	s.Process.ApparmorProfile = ""
	if s.Linux != nil {
		s.Linux.Seccomp = nil
	}
	return nil
}

// withoutCgroupfs drops the generator's /sys/fs/cgroup mount from a pause
// container, which never reads it (containerd's has none either): on cgroup
// v1 hosts runc makes it a tmpfs with a bind mount per controller, work in
// every pod's start for nothing.
func withoutCgroupfs(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	s.Mounts = slices.DeleteFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == cgroupRoot })
	return nil
}

// withHostname sets the hostname, "" included: the generator's default
// (the container id) must not reach a container that joins its pod's uts
// namespace, nor one in the host's, where runc refuses any hostname.
func withHostname(name string) oci.SpecOpts {
	return oci.WithHostname(name)
}

// withCgroupsPath sets the cgroup path unless p is "" (the default).
func withCgroupsPath(p string) oci.SpecOpts {
	if p == "" {
		return nil
	}
	return oci.WithCgroup(p)
}

// SandboxOpts returns the options that make the pause container's spec
// from sb: the pause image's arguments, environment and working directory
// on a read-only root; the pod's hostname (none with host networking);
// its namespaces (the network namespace at sb.NetNSPath or the host's,
// which then also gives the host's uts namespace; a new or the host's ipc
// and pid namespace; a user namespace with the pod's mappings); /dev/shm
// from sb.ShmPath (or the host's with host IPC); the pod's sysctls, which
// must belong to a namespace the pod does not share with the host; the
// security context's user, groups, privilege and seccomp profile;
// oom_score_adj -998 (clamped to Options.MinOOMScoreAdj); the cgroup path
// under the pod's cgroup parent; and the CRI annotations.
//
// The pod's resources and overhead limit the pod's cgroup, which the
// kubelet manages; they are recorded as annotations (as containerd does,
// for runtimes that size a VM from them), not applied to the pause
// process, which needs nothing.
func SandboxOpts(sb Sandbox, o Options) ([]oci.SpecOpts, error) {
	cfg := sb.Config
	if cfg == nil {
		return nil, fmt.Errorf("sandbox %q has no config: %w", sb.ID, errdefs.ErrInvalidArgument)
	}
	sc := cfg.GetLinux().GetSecurityContext()
	nsOpts := sc.GetNamespaceOptions()
	pns, err := parsePodNamespaces(nsOpts)
	if err != nil {
		return nil, err
	}
	un, err := parseUserns(nsOpts.GetUsernsOptions())
	if err != nil {
		return nil, err
	}
	if err := checkSELinux(sc.GetSelinuxOptions(), o.SELinuxEnabled); err != nil {
		return nil, err
	}
	args := append(slices.Clone(sb.Image.Entrypoint), sb.Image.Cmd...)
	if len(args) == 0 {
		return nil, fmt.Errorf("pause image of sandbox %q has no entrypoint or command: %w", sb.ID, errdefs.ErrInvalidArgument)
	}
	cwd := sb.Image.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	opts := []oci.SpecOpts{
		withoutGeneratorDefaults,
		withoutCgroupfs,
		oci.WithProcessArgs(args...),
		oci.WithEnv(slices.Clone(sb.Image.Env)),
		oci.WithProcessCwd(cwd),
		// The pause process writes nothing.
		oci.WithReadonlyRootfs,
	}

	if pns.hostNet {
		opts = append(opts,
			oci.WithHostNamespace(specs.NetworkNamespace),
			oci.WithHostNamespace(specs.UTSNamespace),
			withHostname(""))
	} else {
		if sb.NetNSPath != "" {
			opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: sb.NetNSPath}))
		}
		opts = append(opts, withHostname(cfg.GetHostname()))
	}
	if pns.hostPID {
		opts = append(opts, oci.WithHostNamespace(specs.PIDNamespace))
	}
	if pns.hostIPC {
		opts = append(opts, oci.WithHostNamespace(specs.IPCNamespace))
	}
	opts = append(opts, withUserns(un, ""))

	shm := sb.ShmPath
	if pns.hostIPC {
		shm = devShm
	}
	if shm != "" {
		// nosuid, nodev and noexec are required to remount a bind in a
		// user namespace, and right anyway.
		opts = append(opts, withDevShm(shm, []string{"rbind", "ro", "nosuid", "nodev", "noexec"}))
	}

	sysctls, err := CheckSysctls(cfg.GetLinux().GetSysctls(), pns.hostNet, pns.hostIPC)
	if err != nil {
		return nil, err
	}
	if !pns.hostNet {
		if _, set := sysctls[unprivilegedPortSysctl]; o.EnableUnprivilegedPorts && !set {
			sysctls[unprivilegedPortSysctl] = "0"
		}
		// The range is in the user namespace's ids: with a pod user
		// namespace the host-wide range cannot be written.
		if _, set := sysctls[pingGroupRangeSysctl]; o.EnableUnprivilegedICMP && !set && !un.enabled {
			sysctls[pingGroupRangeSysctl] = unprivilegedPingGroupsValue
		}
	}
	opts = append(opts, withSysctls(sysctls))

	user, who, err := userFor(sc.GetRunAsUser(), "", sc.GetRunAsGroup(), sb.Image.User)
	if err != nil {
		return nil, fmt.Errorf("sandbox security context: %w", err)
	}
	merge, err := mergeGroups(sc.GetSupplementalGroupsPolicy())
	if err != nil {
		return nil, err
	}
	groups, err := withGroups(who, merge, sc.GetSupplementalGroups())
	if err != nil {
		return nil, err
	}
	opts = append(opts, oci.WithUser(user), groups)

	if sc.GetPrivileged() {
		opts = append(opts, oci.WithPrivileged)
	}
	sp, err := seccompProfile(sc.GetSeccomp(), sc.GetSeccompProfilePath(), o.UnsetSeccompProfile) //nolint:staticcheck // the deprecated field is still sent
	if err != nil {
		return nil, err
	}
	opts = append(opts, withSeccomp(sp, sc.GetPrivileged()))
	ap, err := appArmorProfile(sc.GetApparmor(), "")
	if err != nil {
		return nil, err
	}
	aa, err := withAppArmor(ap, sc.GetPrivileged(), o.AppArmorEnabled)
	if err != nil {
		return nil, err
	}
	opts = append(opts, aa)

	adj, err := clampOOMScoreAdj(defaultSandboxOOMScoreAdj, o.MinOOMScoreAdj)
	if err != nil {
		return nil, err
	}
	cg, err := CgroupsPath(o.CgroupDriver, cfg.GetLinux().GetCgroupParent(), sb.ID)
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		oci.WithCPUShares(defaultSandboxCPUShares),
		withOOMScoreAdj(adj),
		withCgroupsPath(cg),
		withoutInheritableCapabilities,
		oci.WithAnnotations(sandboxAnnotations(sb)))
	return opts, nil
}

// sandboxAnnotations are the CRI annotations of a pause container.
func sandboxAnnotations(sb Sandbox) map[string]string {
	md := sb.Config.GetMetadata()
	a := map[string]string{
		AnnotationContainerType:    ContainerTypeSandbox,
		AnnotationSandboxID:        sb.ID,
		AnnotationSandboxName:      md.GetName(),
		AnnotationSandboxNamespace: md.GetNamespace(),
		AnnotationSandboxUID:       md.GetUid(),
		AnnotationSandboxLogDir:    sb.Config.GetLogDirectory(),
	}
	if sb.RuntimeHandler != "" {
		a[AnnotationRuntimeHandler] = sb.RuntimeHandler
	}
	if r := sb.Config.GetLinux().GetResources(); r != nil {
		maps.Copy(a, map[string]string{
			AnnotationSandboxCPUPeriod: strconv.FormatInt(r.GetCpuPeriod(), 10),
			AnnotationSandboxCPUQuota:  strconv.FormatInt(r.GetCpuQuota(), 10),
			AnnotationSandboxCPUShares: strconv.FormatInt(r.GetCpuShares(), 10),
			AnnotationSandboxMemory:    strconv.FormatInt(r.GetMemoryLimitInBytes(), 10),
		})
	}
	return a
}
