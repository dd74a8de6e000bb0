// Package config holds the configuration of hulld's CRI plugins, with
// containerd 2.x's section names and keys so that a containerd user's CRI
// sections work unchanged:
//
//   - [plugins.'io.containerd.cri.v1.runtime']: runtimes (handlers), CNI,
//     and how containers are made (Runtime);
//   - [plugins.'io.containerd.cri.v1.images']: snapshotter, registries,
//     pinned images such as the sandbox image (Images);
//   - [plugins.'io.containerd.grpc.v1.cri']: the streaming server (Server).
//
// containerd 1.6's single [plugins."io.containerd.grpc.v1.cri"] section of
// a version 2 file is split into these by hull's config loader before
// these structs are decoded.
package config

import (
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

// Runtime is the [plugins.'io.containerd.cri.v1.runtime'] section.
type Runtime struct {
	Containerd                         ContainerdConfig `toml:"containerd" doc:"Runtime handlers (RuntimeClass) and the default one."`
	CNI                                CNIConfig        `toml:"cni" doc:"Pod networking through CNI."`
	EnableSelinux                      bool             `toml:"enable_selinux" doc:"Label containers for SELinux where the host enables it."`
	SelinuxCategoryRange               int              `toml:"selinux_category_range" doc:"Range of SELinux categories to pick pod labels from."`
	DisableApparmor                    bool             `toml:"disable_apparmor" doc:"Ignore AppArmor profiles even where the kernel supports AppArmor."`
	MaxContainerLogLineSize            int              `toml:"max_container_log_line_size" doc:"Longest CRI log line; longer lines are split into partial lines (-1: no limit)."`
	RestrictOOMScoreAdj                *bool            `toml:"restrict_oom_score_adj" doc:"Never give a container an oom_score_adj below hulld's own. Unset: on exactly when hulld lacks CAP_SYS_RESOURCE, which is when the kernel would refuse the lower value anyway."`
	DisableProcMount                   bool             `toml:"disable_proc_mount" doc:"Ignore a container's request for an unmasked /proc (ProcMountType Unmasked)."`
	UnsetSeccompProfile                string           `toml:"unset_seccomp_profile" doc:"Seccomp profile of containers that name none: \"\" (unconfined, the CRI default) or \"runtime/default\"."`
	TolerateMissingHugetlbController   bool             `toml:"tolerate_missing_hugetlb_controller" doc:"Drop hugepage limits when the hugetlb cgroup controller is missing instead of failing."`
	DisableHugetlbController           bool             `toml:"disable_hugetlb_controller" doc:"Never set hugepage limits."`
	DeviceOwnershipFromSecurityContext bool             `toml:"device_ownership_from_security_context" doc:"Give devices of a container the uid and gid it runs as."`
	IgnoreImageDefinedVolumes          bool             `toml:"ignore_image_defined_volumes" doc:"Do not create the volumes an image declares."`
	NetNSMountsUnderStateDir           bool             `toml:"netns_mounts_under_state_dir" doc:"Accepted for containerd compatibility: hull always pins pod network namespaces under its state directory."`
	EnableUnprivilegedPorts            bool             `toml:"enable_unprivileged_ports" doc:"Let pod processes bind ports below 1024 (net.ipv4.ip_unprivileged_port_start=0)."`
	EnableUnprivilegedICMP             bool             `toml:"enable_unprivileged_icmp" doc:"Let pod processes ping without privileges (net.ipv4.ping_group_range)."`
	EnableCDI                          bool             `toml:"enable_cdi" doc:"Resolve CDI device requests."`
	CDISpecDirs                        []string         `toml:"cdi_spec_dirs" doc:"Directories of CDI specs."`
	DrainExecSyncIOTimeout             string           `toml:"drain_exec_sync_io_timeout" doc:"How long ExecSync waits for output after the exec exits, for output a background child still writes (Go duration; 0 waits until the pipes close)."`
	ExecSyncMaxOutput                  int              `toml:"exec_sync_max_output" doc:"Most bytes of stdout and of stderr ExecSync returns; the rest is dropped, so that a chatty probe cannot exhaust hulld's memory."`
	CgroupDriver                       string           `toml:"cgroup_driver" doc:"\"cgroupfs\" or \"systemd\"; \"\" detects: systemd where the host runs systemd and the default runtime's SystemdCgroup option is set, else cgroupfs."`
	StatsCollectPeriod                 string           `toml:"stats_collect_period" doc:"How long container stats are cached (Go duration)."`
}

// ContainerdConfig is the [containerd] table of the runtime section.
type ContainerdConfig struct {
	DefaultRuntimeName string                    `toml:"default_runtime_name" doc:"Handler of pods that name no RuntimeClass."`
	Runtimes           map[string]RuntimeHandler `toml:"runtimes" doc:"Runtime handlers by name, e.g. [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]."`
}

// RuntimeHandler is one RuntimeClass handler.
type RuntimeHandler struct {
	RuntimeType                  string         `toml:"runtime_type" doc:"Shim runtime name, such as io.containerd.runc.v2 (containerd's shim) or io.containerd.hull.v2 (hull's)."`
	RuntimePath                  string         `toml:"runtime_path" doc:"Absolute path of the shim binary, instead of looking runtime_type up on PATH."`
	PodAnnotations               []string       `toml:"pod_annotations" doc:"Pod annotations (globs) passed on to the OCI spec of the sandbox and its containers."`
	ContainerAnnotations         []string       `toml:"container_annotations" doc:"Container annotations (globs) passed on to the OCI spec."`
	PrivilegedWithoutHostDevices bool           `toml:"privileged_without_host_devices" doc:"Privileged containers of this handler get no host devices."`
	BaseRuntimeSpec              string         `toml:"base_runtime_spec" doc:"Accepted for containerd compatibility; not used."`
	Snapshotter                  string         `toml:"snapshotter" doc:"Snapshotter of this handler's containers (\"\": the images section's)."`
	Sandboxer                    string         `toml:"sandboxer" doc:"Accepted for containerd compatibility: hull runs pods as a pause container (\"podsandbox\")."`
	IOType                       string         `toml:"io_type" doc:"Accepted for containerd compatibility: container output always goes through FIFOs."`
	Options                      map[string]any `toml:"options" doc:"Shim options, such as BinaryName, Root and SystemdCgroup for runc shims."`
}

// CNIConfig is the [cni] table of the runtime section.
type CNIConfig struct {
	BinDir        string   `toml:"bin_dir" doc:"Directory of CNI plugin binaries (containerd 2.0 and earlier; bin_dirs wins)."`
	BinDirs       []string `toml:"bin_dirs" doc:"Directories of CNI plugin binaries, searched in order."`
	ConfDir       string   `toml:"conf_dir" doc:"Directory of CNI network configurations."`
	MaxConfNum    int      `toml:"max_conf_num" doc:"How many network configurations a pod joins, in file name order."`
	SetupSerially bool     `toml:"setup_serially" doc:"Add a pod to its networks one after the other."`
	ConfTemplate  string   `toml:"conf_template" doc:"Go template of a network configuration written into conf_dir when the kubelet sets the pod CIDR."`
	IPPref        string   `toml:"ip_pref" doc:"Which pod IP is the primary: ipv4, ipv6 or cni (CNI's order)."`
}

// Images is the [plugins.'io.containerd.cri.v1.images'] section.
type Images struct {
	Snapshotter                string            `toml:"snapshotter" doc:"Snapshotter images are unpacked into for pods."`
	DisableSnapshotAnnotations bool              `toml:"disable_snapshot_annotations" doc:"Accepted for containerd compatibility; hull passes no snapshot annotations."`
	DiscardUnpackedLayers      bool              `toml:"discard_unpacked_layers" doc:"Accepted for containerd compatibility; layer blobs are kept."`
	MaxConcurrentDownloads     int               `toml:"max_concurrent_downloads" doc:"Blobs above 1 MiB a pull fetches at once; smaller ones are fetched up to 8 at a time beside them (a round trip each rather than bandwidth)."`
	ImagePullProgressTimeout   string            `toml:"image_pull_progress_timeout" doc:"A pull that makes no progress for this long fails (Go duration; 0 disables)."`
	ImagePullWithSyncFs        bool              `toml:"image_pull_with_sync_fs" doc:"Accepted for containerd compatibility."`
	StatsCollectPeriod         int               `toml:"stats_collect_period" doc:"Seconds a measurement of image filesystem usage is reused."`
	PinnedImages               map[string]string `toml:"pinned_images" doc:"Images the kubelet must never garbage collect, by role; \"sandbox\" is the pause image of every pod."`
	Registry                   Registry          `toml:"registry" doc:"Registry access."`
}

// Registry is the [registry] table of the images section.
type Registry struct {
	ConfigPath string              `toml:"config_path" doc:"Directory of per-registry hosts.toml files (see docs/registries.md)."`
	Headers    map[string][]string `toml:"headers" doc:"HTTP headers sent with every registry request."`
}

// Server is the [plugins.'io.containerd.grpc.v1.cri'] section: serving CRI
// and its streams.
type Server struct {
	DisableTCPService    bool        `toml:"disable_tcp_service" doc:"Accepted for containerd compatibility: CRI is served on hulld's unix socket only."`
	StreamServerAddress  string      `toml:"stream_server_address" doc:"Address the exec/attach/port-forward stream server listens on; loopback unless set, so that it is not reachable off the node."`
	StreamServerPort     string      `toml:"stream_server_port" doc:"Port of the stream server (\"0\": any free port)."`
	StreamIdleTimeout    string      `toml:"stream_idle_timeout" doc:"A stream with no traffic for this long is closed (Go duration)."`
	EnableTLSStreaming   bool        `toml:"enable_tls_streaming" doc:"Serve streams over TLS."`
	X509KeyPairStreaming X509KeyPair `toml:"x509_key_pair_streaming" doc:"Certificate of the TLS stream server; none: a self-signed one made at start."`
}

// X509KeyPair names a certificate and its key.
type X509KeyPair struct {
	TLSCertFile string `toml:"tls_cert_file" doc:"PEM certificate file."`
	TLSKeyFile  string `toml:"tls_key_file" doc:"PEM private key file."`
}

// DefaultRuntime is the runtime section's default: one handler, runc,
// through hull's shim.
func DefaultRuntime() *Runtime {
	return &Runtime{
		Containerd: ContainerdConfig{
			DefaultRuntimeName: "runc",
			Runtimes:           map[string]RuntimeHandler{"runc": {RuntimeType: "io.containerd.hull.v2"}},
		},
		CNI: CNIConfig{
			// bin_dir, not bin_dirs: a containerd 2.0 file that sets
			// bin_dir must not be overridden by a default in bin_dirs.
			BinDir: "/opt/cni/bin", ConfDir: "/etc/cni/net.d", MaxConfNum: 1, IPPref: "ipv4",
		},
		MaxContainerLogLineSize: 16 * 1024,
		// The kubelet sets (zero) hugepage limits on every container;
		// a host without the hugetlb controller must still run pods.
		TolerateMissingHugetlbController: true,
		DrainExecSyncIOTimeout:           "0s",
		ExecSyncMaxOutput:                16 << 20,
		StatsCollectPeriod:               "1s",
	}
}

// DefaultImages is the images section's default.
func DefaultImages() *Images {
	return &Images{
		Snapshotter:              "overlayfs",
		MaxConcurrentDownloads:   3,
		ImagePullProgressTimeout: "5m0s",
		StatsCollectPeriod:       10,
		PinnedImages:             map[string]string{"sandbox": "registry.k8s.io/pause:3.10"},
	}
}

// DefaultServer is the serving section's default.
func DefaultServer() *Server {
	return &Server{
		StreamServerAddress: "127.0.0.1",
		StreamServerPort:    "0",
		StreamIdleTimeout:   "4h0m0s",
	}
}

// duration parses a config duration, naming the key on error.
func duration(key, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s %q is not a duration such as \"30s\": %w", key, v, errdefs.ErrInvalidArgument)
	}
	return d, nil
}

// ExecSyncDrain is drain_exec_sync_io_timeout as a duration.
func (r *Runtime) ExecSyncDrain() (time.Duration, error) {
	return duration("drain_exec_sync_io_timeout", r.DrainExecSyncIOTimeout)
}

// StatsPeriod is stats_collect_period as a duration.
func (r *Runtime) StatsPeriod() (time.Duration, error) {
	return duration("stats_collect_period", r.StatsCollectPeriod)
}

// CNIBinDirs are the plugin directories, bin_dirs winning over bin_dir.
func (c CNIConfig) CNIBinDirs() []string {
	if len(c.BinDirs) > 0 {
		return c.BinDirs
	}
	if c.BinDir != "" {
		return []string{c.BinDir}
	}
	return []string{"/opt/cni/bin"}
}

// Validate checks the runtime section, naming the first bad key.
func (r *Runtime) Validate() error {
	if _, err := r.ExecSyncDrain(); err != nil {
		return err
	}
	if _, err := r.StatsPeriod(); err != nil {
		return err
	}
	if len(r.Containerd.Runtimes) == 0 {
		return fmt.Errorf("containerd.runtimes is empty: at least one runtime handler is needed: %w", errdefs.ErrInvalidArgument)
	}
	if _, ok := r.Containerd.Runtimes[r.Containerd.DefaultRuntimeName]; !ok {
		return fmt.Errorf("containerd.default_runtime_name %q is not one of the configured runtimes (%s): %w",
			r.Containerd.DefaultRuntimeName, strings.Join(r.HandlerNames(), ", "), errdefs.ErrInvalidArgument)
	}
	for name, h := range r.Containerd.Runtimes {
		if h.RuntimeType == "" {
			return fmt.Errorf("containerd.runtimes.%s.runtime_type is empty: %w", name, errdefs.ErrInvalidArgument)
		}
		if h.RuntimePath != "" && !filepath.IsAbs(h.RuntimePath) {
			return fmt.Errorf("containerd.runtimes.%s.runtime_path %q is not absolute: %w", name, h.RuntimePath, errdefs.ErrInvalidArgument)
		}
	}
	switch r.CgroupDriver {
	case "", "cgroupfs", "systemd":
	default:
		return fmt.Errorf("cgroup_driver %q: want \"cgroupfs\", \"systemd\" or \"\" (detect): %w", r.CgroupDriver, errdefs.ErrInvalidArgument)
	}
	switch r.UnsetSeccompProfile {
	case "", "unconfined", "runtime/default":
	default:
		return fmt.Errorf("unset_seccomp_profile %q: want \"\", \"unconfined\" or \"runtime/default\": %w", r.UnsetSeccompProfile, errdefs.ErrInvalidArgument)
	}
	switch r.CNI.IPPref {
	case "", "ipv4", "ipv6", "cni":
	default:
		return fmt.Errorf("cni.ip_pref %q: want ipv4, ipv6 or cni: %w", r.CNI.IPPref, errdefs.ErrInvalidArgument)
	}
	if r.ExecSyncMaxOutput < 0 {
		return fmt.Errorf("exec_sync_max_output %d is negative: %w", r.ExecSyncMaxOutput, errdefs.ErrInvalidArgument)
	}
	return nil
}

// HandlerNames lists the configured runtime handlers, sorted.
func (r *Runtime) HandlerNames() []string {
	names := make([]string, 0, len(r.Containerd.Runtimes))
	for n := range r.Containerd.Runtimes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// PullProgressTimeout is image_pull_progress_timeout as a duration.
func (i *Images) PullProgressTimeout() (time.Duration, error) {
	return duration("image_pull_progress_timeout", i.ImagePullProgressTimeout)
}

// Validate checks the images section.
func (i *Images) Validate() error {
	if _, err := i.PullProgressTimeout(); err != nil {
		return err
	}
	if i.MaxConcurrentDownloads < 0 {
		return fmt.Errorf("max_concurrent_downloads %d is negative: %w", i.MaxConcurrentDownloads, errdefs.ErrInvalidArgument)
	}
	if i.PinnedImages["sandbox"] == "" {
		return fmt.Errorf("pinned_images.sandbox is empty: pods need a sandbox (pause) image: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}

// IdleTimeout is stream_idle_timeout as a duration.
func (s *Server) IdleTimeout() (time.Duration, error) {
	return duration("stream_idle_timeout", s.StreamIdleTimeout)
}

// Validate checks the serving section.
func (s *Server) Validate() error {
	if _, err := s.IdleTimeout(); err != nil {
		return err
	}
	if s.StreamServerAddress != "" && net.ParseIP(s.StreamServerAddress) == nil {
		if _, err := net.LookupHost(s.StreamServerAddress); err != nil {
			return fmt.Errorf("stream_server_address %q is neither an IP address nor a resolvable name: %w", s.StreamServerAddress, errdefs.ErrInvalidArgument)
		}
	}
	if s.StreamServerPort != "" {
		if p, err := strconv.Atoi(s.StreamServerPort); err != nil || p < 0 || p > 65535 {
			return fmt.Errorf("stream_server_port %q is not a port number: %w", s.StreamServerPort, errdefs.ErrInvalidArgument)
		}
	}
	if s.EnableTLSStreaming && (s.X509KeyPairStreaming.TLSCertFile == "") != (s.X509KeyPairStreaming.TLSKeyFile == "") {
		return fmt.Errorf("x509_key_pair_streaming needs both tls_cert_file and tls_key_file, or neither for a self-signed certificate: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}
