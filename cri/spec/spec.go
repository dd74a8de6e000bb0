// Package spec turns a kubelet's CRI configs into OCI runtime specs: the
// pause container's spec from a PodSandboxConfig (SandboxOpts) and an
// application container's from a ContainerConfig (ContainerOpts).
//
// Both return options for the client library's spec generator
// (client/oci.GenerateSpec via client.WithNewSpec): the generator's
// defaults are an ordinary unprivileged container, and the options change
// what the CRI config asks for. Options that resolve users read /etc/passwd
// and /etc/group from the container's snapshot, so the options must be
// applied to a container that has its snapshot (or, in tests, an absolute
// root path in the spec).
//
// Behaviour follows containerd's CRI plugin, which is what kubelets and
// conformance tests expect: a container joins the pause container's
// network, IPC and UTS namespaces through /proc/<pid>/ns/*; the default
// rlimits, seccomp and AppArmor settings of the generator are dropped and
// replaced by what the security context names; capabilities never reach
// the inheritable or ambient sets. Values that cannot be honoured are
// refused with an InvalidArgument error naming them, never silently
// dropped.
package spec

import (
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Annotation keys set on every CRI spec. They are the keys containerd's
// CRI plugin uses, so tools that read them (and hull's shim, which groups
// a pod's containers by the sandbox id) work unchanged.
const (
	AnnotationContainerType     = "io.kubernetes.cri.container-type"
	AnnotationSandboxID         = "io.kubernetes.cri.sandbox-id"
	AnnotationSandboxName       = "io.kubernetes.cri.sandbox-name"
	AnnotationSandboxNamespace  = "io.kubernetes.cri.sandbox-namespace"
	AnnotationSandboxUID        = "io.kubernetes.cri.sandbox-uid"
	AnnotationSandboxLogDir     = "io.kubernetes.cri.sandbox-log-directory"
	AnnotationContainerName     = "io.kubernetes.cri.container-name"
	AnnotationImageName         = "io.kubernetes.cri.image-name"
	AnnotationRuntimeHandler    = "io.containerd.cri.runtime-handler"
	AnnotationSandboxCPUPeriod  = "io.kubernetes.cri.sandbox-cpu-period"
	AnnotationSandboxCPUQuota   = "io.kubernetes.cri.sandbox-cpu-quota"
	AnnotationSandboxCPUShares  = "io.kubernetes.cri.sandbox-cpu-shares"
	AnnotationSandboxMemory     = "io.kubernetes.cri.sandbox-memory"
	ContainerTypeSandbox        = "sandbox"
	ContainerTypeContainer      = "container"
	defaultSandboxOOMScoreAdj   = -998
	defaultSandboxCPUShares     = 2
	unprivilegedPortSysctl      = "net.ipv4.ip_unprivileged_port_start"
	pingGroupRangeSysctl        = "net.ipv4.ping_group_range"
	unprivilegedPingGroupsValue = "0 2147483647"
)

// Options are runtime-wide settings from hulld's CRI config.
type Options struct {
	// CgroupDriver is "cgroupfs" (or "") or "systemd": how CgroupParent
	// and the container's cgroup path are written.
	CgroupDriver string
	// MinOOMScoreAdj, when set, raises oom_score_adj values below it to
	// it: a host without CAP_SYS_RESOURCE may not lower the score. Nil: no
	// clamp.
	MinOOMScoreAdj *int
	// DisableProcMount ignores a request for an unmasked /proc
	// (ProcMountType Unmasked, which the kubelet sends as empty
	// masked_paths and readonly_paths): the defaults then stay.
	DisableProcMount bool
	// UnsetSeccompProfile is the profile of a sandbox or container whose
	// config names none: "" or "unconfined" (the CRI default) or
	// "runtime/default".
	UnsetSeccompProfile string
	// TolerateMissingHugetlb drops hugepage limits when the hugetlb
	// controller is missing instead of failing.
	TolerateMissingHugetlb bool
	// DisableHugetlb never sets hugepage limits.
	DisableHugetlb bool
	// DeviceOwnershipFromSecurityContext makes devices owned by the
	// container's run_as_user and run_as_group instead of the host
	// node's owner.
	DeviceOwnershipFromSecurityContext bool
	// EnableUnprivilegedPorts and EnableUnprivilegedICMP set
	// net.ipv4.ip_unprivileged_port_start=0 and
	// net.ipv4.ping_group_range="0 2147483647" in the sandbox, unless the
	// pod sets them or uses the host network.
	EnableUnprivilegedPorts, EnableUnprivilegedICMP bool
	// AppArmorEnabled says the host enforces AppArmor. When false,
	// runtime/default and unconfined profiles are no-ops and a localhost
	// profile is an error.
	AppArmorEnabled bool
	// SELinuxEnabled says the host enforces SELinux. When false, SELinux
	// options are ignored.
	SELinuxEnabled bool
	// IgnoreImageDefinedVolumes makes the server skip the image's VOLUMEs;
	// the spec options only mount what Container.Volumes holds.
	IgnoreImageDefinedVolumes bool
}

// Sandbox is what the pause container's spec is made from.
type Sandbox struct {
	// ID is the sandbox's (and its pause container's) id.
	ID string
	// Config is the kubelet's pod sandbox config.
	Config *runtime.PodSandboxConfig
	// Image is the pause image's config.
	Image ocispec.ImageConfig
	// NetNSPath is the pod's network namespace; "" with host network.
	NetNSPath string
	// ShmPath is a tmpfs the server mounted for the pod's /dev/shm; ""
	// with host IPC (the host's /dev/shm is used).
	ShmPath string
	// RuntimeHandler is the CRI runtime handler, for the annotation.
	RuntimeHandler string
}

// Container is what a container's spec is made from.
type Container struct {
	// ID is the container's id.
	ID string
	// Config is the kubelet's container config.
	Config *runtime.ContainerConfig
	// Image is the image's config.
	Image ocispec.ImageConfig
	// ImageName is the image reference, for the image-name annotation.
	ImageName string
	// Sandbox is the pod the container runs in.
	Sandbox SandboxRef
	// HostnamePath, HostsPath, ResolvConfPath and ShmPath are files (a
	// directory for ShmPath) the server keeps in the sandbox's directory
	// and bind-mounts at /etc/hostname, /etc/hosts, /etc/resolv.conf and
	// /dev/shm unless the container mounts the path itself. "" skips one.
	HostnamePath, HostsPath, ResolvConfPath, ShmPath string
	// Volumes are the image's declared volumes, already prepared by
	// PrepareImageVolumes (nil if ignored). A CRI mount at the same
	// destination wins.
	Volumes []specs.Mount
	// ImageMounts maps a CRI Mount with an image (Mount.image) to the
	// host directory where the server mounted that image read-only.
	ImageMounts map[*runtime.Mount]string
	// RuntimeHandler is the CRI runtime handler, for the annotation.
	RuntimeHandler string
	// TargetPid is the init pid of the container named by the namespace
	// options' target_id, needed when the pid namespace mode is TARGET.
	TargetPid uint32
}

// SandboxRef is what a container needs of its pod sandbox.
type SandboxRef struct {
	// ID is the sandbox id.
	ID string
	// Config is the sandbox's config.
	Config *runtime.PodSandboxConfig
	// Pid is the pause process: containers join its namespaces through
	// /proc/<pid>/ns/*.
	Pid uint32
	// NetNSPath is the pod's network namespace; "" with host network.
	NetNSPath string
}
