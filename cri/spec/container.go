package spec

import (
	"context"
	"fmt"
	"os"
	"slices"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/client/oci"
	"github.com/hullrt/hull/core/containers"
)

// ContainerArgs returns the process arguments by Kubernetes' rules: a
// command replaces the image's entrypoint and drops its cmd; args alone
// replace the cmd after the entrypoint; neither runs the image's
// entrypoint and cmd. An entrypoint of a single empty string (how Docker
// writes "ENTRYPOINT []") counts as none. The result never shares memory
// with img. No arguments at all is InvalidArgument.
func ContainerArgs(cfg *runtime.ContainerConfig, img ocispec.ImageConfig) ([]string, error) {
	command, args := cfg.GetCommand(), cfg.GetArgs()
	var argv []string
	switch {
	case len(command) > 0:
		argv = append(slices.Clone(command), args...)
	default:
		if !(len(img.Entrypoint) == 1 && img.Entrypoint[0] == "") {
			argv = slices.Clone(img.Entrypoint)
		}
		if len(args) > 0 {
			argv = append(argv, args...)
		} else {
			argv = append(argv, img.Cmd...)
		}
	}
	if len(argv) == 0 || argv[0] == "" {
		return nil, fmt.Errorf("container %q: no command: neither the config nor the image gives one: %w", cfg.GetMetadata().GetName(), errdefs.ErrInvalidArgument)
	}
	return argv, nil
}

// containerEnv is the process environment: HOSTNAME (the pod's), then the
// image's, then the config's; a later value of a name wins. It is a new
// slice: the image config is shared by every container of the image, and
// appending to its Env could leak one container's variables into another
// (CVE-2021-21334).
func containerEnv(hostname string, img ocispec.ImageConfig, cfg *runtime.ContainerConfig) []string {
	env := make([]string, 0, 1+len(img.Env)+len(cfg.GetEnvs()))
	env = append(env, "HOSTNAME="+hostname)
	env = append(env, img.Env...)
	for _, kv := range cfg.GetEnvs() {
		env = append(env, kv.GetKey()+"="+string(kv.GetValue()))
	}
	return env
}

// withMaskedPaths sets the masked and read-only paths; with keepDefaults
// an empty list leaves the generator's defaults.
func withMaskedPaths(masked, readonly []string, keepDefaults bool) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		ensureLinux(s)
		if len(masked) > 0 || !keepDefaults {
			s.Linux.MaskedPaths = slices.Clone(masked)
		}
		if len(readonly) > 0 || !keepDefaults {
			s.Linux.ReadonlyPaths = slices.Clone(readonly)
		}
		return nil
	}
}

// ContainerOpts returns the options that make container c's spec: see the
// package documentation and the CRI's ContainerConfig. In short: the
// process (arguments by Kubernetes' rules, environment, working
// directory, terminal, user and groups from the image's /etc/passwd and
// /etc/group), the namespaces it shares with its pod's pause process (net
// (or the host's), ipc, uts, and pid unless CONTAINER), mounts, devices,
// capabilities, privilege, seccomp, masked paths, resources, cgroup path
// and the CRI annotations.
//
// stdin and stdin_once are not part of an OCI spec: the server wires the
// process's standard input when it creates the task.
func ContainerOpts(c Container, o Options) ([]oci.SpecOpts, error) {
	return containerOpts(c, o, probeHost())
}

func containerOpts(c Container, o Options, h host) ([]oci.SpecOpts, error) {
	cfg := c.Config
	if cfg == nil {
		return nil, fmt.Errorf("container %q has no config: %w", c.ID, errdefs.ErrInvalidArgument)
	}
	sbCfg := c.Sandbox.Config
	sc := cfg.GetLinux().GetSecurityContext()
	privileged := sc.GetPrivileged()
	if privileged && !sbCfg.GetLinux().GetSecurityContext().GetPrivileged() {
		return nil, fmt.Errorf("container %q is privileged but its sandbox %q is not: %w", cfg.GetMetadata().GetName(), c.Sandbox.ID, errdefs.ErrInvalidArgument)
	}
	if err := checkSELinux(sc.GetSelinuxOptions(), o.SELinuxEnabled); err != nil {
		return nil, err
	}
	pns, err := parsePodNamespaces(sbCfg.GetLinux().GetSecurityContext().GetNamespaceOptions())
	if err != nil {
		return nil, fmt.Errorf("sandbox %q: %w", c.Sandbox.ID, err)
	}
	un, err := parseUserns(sc.GetNamespaceOptions().GetUsernsOptions())
	if err != nil {
		return nil, err
	}
	sbUn, err := parseUserns(sbCfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions())
	if err != nil {
		return nil, fmt.Errorf("sandbox %q: %w", c.Sandbox.ID, err)
	}
	if !un.equal(sbUn) {
		return nil, fmt.Errorf("container %q: user namespace options differ from its sandbox's: %w", cfg.GetMetadata().GetName(), errdefs.ErrInvalidArgument)
	}

	args, err := ContainerArgs(cfg, c.Image)
	if err != nil {
		return nil, err
	}
	hostname := sbCfg.GetHostname()
	if hostname == "" {
		if hostname, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("node hostname: %w", err)
		}
	}
	cwd := cfg.GetWorkingDir()
	if cwd == "" {
		cwd = c.Image.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}

	opts := []oci.SpecOpts{
		withoutGeneratorDefaults,
		withHostname(""),
		oci.WithProcessArgs(args...),
	}
	if cfg.GetTty() {
		// Before the environment, so that the image or config may set
		// TERM.
		opts = append(opts, oci.WithTTY)
	}
	opts = append(opts,
		oci.WithEnv(containerEnv(hostname, c.Image, cfg)),
		oci.WithProcessCwd(cwd))

	// Namespaces.
	nsOpts, err := containerNamespaces(c, pns, un, privileged, h)
	if err != nil {
		return nil, err
	}
	opts = append(opts, nsOpts...)

	// Mounts.
	plan, err := planMounts(c, un, sc.GetReadonlyRootfs(), pns.hostIPC)
	if err != nil {
		return nil, err
	}
	opts = append(opts, withBindMounts(plan))
	if un.enabled && pns.hostNet {
		opts = append(opts, withSysBind)
	}

	// Masked and read-only paths. The kubelet sends the defaults for
	// ProcMountType Default and nothing for Unmasked.
	// With proc mount disabled an empty list keeps the defaults; a
	// given list still replaces them.
	opts = append(opts, withMaskedPaths(sc.GetMaskedPaths(), sc.GetReadonlyPaths(), o.DisableProcMount))

	// Devices.
	devs, err := resolveDevices(cfg.GetDevices())
	if err != nil {
		return nil, err
	}
	var devUID, devGID *uint32
	if o.DeviceOwnershipFromSecurityContext {
		if u := sc.GetRunAsUser(); u != nil {
			if err := checkID("run_as_user", u.GetValue()); err != nil {
				return nil, err
			}
			v := uint32(u.GetValue())
			devUID = &v
		}
		if g := sc.GetRunAsGroup(); g != nil {
			if err := checkID("run_as_group", g.GetValue()); err != nil {
				return nil, err
			}
			v := uint32(g.GetValue())
			devGID = &v
		}
	}
	opts = append(opts, withDevices(devs, devUID, devGID, true))

	// Capabilities and privilege.
	caps, err := parseCapabilityChange(sc.GetCapabilities())
	if err != nil {
		return nil, err
	}
	opts = append(opts, withCapabilities(caps))
	if privileged {
		opts = append(opts, oci.WithPrivileged, withHostDevices)
	}
	opts = append(opts, withoutInheritableCapabilities)
	if sc.GetNoNewPrivs() {
		opts = append(opts, oci.WithNoNewPrivileges)
	}
	if sc.GetReadonlyRootfs() {
		opts = append(opts, oci.WithReadonlyRootfs)
	}

	// User and groups.
	user, who, err := userFor(sc.GetRunAsUser(), sc.GetRunAsUsername(), sc.GetRunAsGroup(), c.Image.User)
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", cfg.GetMetadata().GetName(), err)
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

	// Seccomp reads the final capabilities, so it comes after them.
	sp, err := seccompProfile(sc.GetSeccomp(), sc.GetSeccompProfilePath(), o.UnsetSeccompProfile) //nolint:staticcheck // the deprecated field is still sent
	if err != nil {
		return nil, err
	}
	opts = append(opts, withSeccomp(sp, privileged))
	ap, err := appArmorProfile(sc.GetApparmor(), sc.GetApparmorProfile()) //nolint:staticcheck // the deprecated field is still sent
	if err != nil {
		return nil, err
	}
	aa, err := withAppArmor(ap, privileged, o.AppArmorEnabled)
	if err != nil {
		return nil, err
	}
	opts = append(opts, aa)

	// Resources.
	res := cfg.GetLinux().GetResources()
	ro, err := withResources(res, o, h)
	if err != nil {
		return nil, err
	}
	adj, err := clampOOMScoreAdj(res.GetOomScoreAdj(), o.MinOOMScoreAdj)
	if err != nil {
		return nil, err
	}
	cg, err := CgroupsPath(o.CgroupDriver, sbCfg.GetLinux().GetCgroupParent(), c.ID)
	if err != nil {
		return nil, err
	}
	opts = append(opts, ro, withOOMScoreAdj(adj), withCgroupsPath(cg),
		oci.WithAnnotations(containerAnnotations(c)))
	return opts, nil
}

// containerNamespaces joins the pod's namespaces through the pause
// process: network (the pod's netns path, or the host's), ipc and uts
// (or the host's when the pod shares them), pid by the container's mode
// (CONTAINER: its own; POD: the pause process's; NODE: the host's;
// TARGET: the target container's), and the pod's user namespace. On the
// unified cgroup hierarchy an unprivileged container also gets its own
// cgroup namespace, so that /sys/fs/cgroup shows only its own cgroup.
func containerNamespaces(c Container, pns podNamespaces, un userns, privileged bool, h host) ([]oci.SpecOpts, error) {
	pid := c.Sandbox.Pid
	if pid == 0 {
		return nil, fmt.Errorf("sandbox %q has no running pause process to join: %w", c.Sandbox.ID, errdefs.ErrFailedPrecondition)
	}
	join := func(t specs.LinuxNamespaceType, p string) oci.SpecOpts {
		return oci.WithLinuxNamespace(specs.LinuxNamespace{Type: t, Path: p})
	}
	var opts []oci.SpecOpts
	switch {
	case pns.hostNet:
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostNamespace(specs.UTSNamespace))
	default:
		netns := c.Sandbox.NetNSPath
		if netns == "" {
			netns = nsPath(pid, "net")
		}
		opts = append(opts, join(specs.NetworkNamespace, netns), join(specs.UTSNamespace, nsPath(pid, "uts")))
	}
	if pns.hostIPC {
		opts = append(opts, oci.WithHostNamespace(specs.IPCNamespace))
	} else {
		opts = append(opts, join(specs.IPCNamespace, nsPath(pid, "ipc")))
	}
	nsOpts := c.Config.GetLinux().GetSecurityContext().GetNamespaceOptions()
	switch m := nsOpts.GetPid(); m {
	case runtime.NamespaceMode_CONTAINER:
		opts = append(opts, join(specs.PIDNamespace, ""))
	case runtime.NamespaceMode_POD:
		opts = append(opts, join(specs.PIDNamespace, nsPath(pid, "pid")))
	case runtime.NamespaceMode_NODE:
		opts = append(opts, oci.WithHostNamespace(specs.PIDNamespace))
	case runtime.NamespaceMode_TARGET:
		if nsOpts.GetTargetId() == "" {
			return nil, fmt.Errorf("pid namespace mode TARGET without a target_id: %w", errdefs.ErrInvalidArgument)
		}
		if c.TargetPid == 0 {
			return nil, fmt.Errorf("pid namespace target container %q has no running process: %w", nsOpts.GetTargetId(), errdefs.ErrFailedPrecondition)
		}
		opts = append(opts, join(specs.PIDNamespace, nsPath(c.TargetPid, "pid")))
	default:
		return nil, fmt.Errorf("pid namespace mode %d is unknown: %w", int32(m), errdefs.ErrInvalidArgument)
	}
	userPath := ""
	if un.enabled {
		userPath = nsPath(pid, "user")
	}
	opts = append(opts, withUserns(un, userPath))
	if h.cgroup2 && !privileged {
		opts = append(opts, join(specs.CgroupNamespace, ""))
	}
	return opts, nil
}

// containerAnnotations are the config's annotations and, over them, the
// CRI annotations of a container.
func containerAnnotations(c Container) map[string]string {
	a := make(map[string]string, len(c.Config.GetAnnotations())+8)
	for k, v := range c.Config.GetAnnotations() {
		a[k] = v
	}
	md := c.Sandbox.Config.GetMetadata()
	a[AnnotationContainerType] = ContainerTypeContainer
	a[AnnotationSandboxID] = c.Sandbox.ID
	a[AnnotationContainerName] = c.Config.GetMetadata().GetName()
	a[AnnotationImageName] = c.ImageName
	a[AnnotationSandboxName] = md.GetName()
	a[AnnotationSandboxNamespace] = md.GetNamespace()
	a[AnnotationSandboxUID] = md.GetUid()
	if c.RuntimeHandler != "" {
		a[AnnotationRuntimeHandler] = c.RuntimeHandler
	} else {
		delete(a, AnnotationRuntimeHandler)
	}
	return a
}
