package oci

import (
	"context"
	"fmt"
	"math"
	"path"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/core/containers"
)

func ensureLinux(s *Spec) {
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
}

func ensureResources(s *Spec) {
	ensureLinux(s)
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
}

// WithProcessArgs sets the process's arguments, replacing any set before
// (including an image's entrypoint and command).
func WithProcessArgs(args ...string) SpecOpts {
	return func(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
		ensureProcess(s)
		s.Process.Args = append([]string(nil), args...)
		return nil
	}
}

// WithProcessCwd sets the process's working directory, which must be
// absolute: runc resolves a relative one against nothing defined.
func WithProcessCwd(cwd string) SpecOpts {
	return func(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
		if !path.IsAbs(cwd) {
			return fmt.Errorf("working directory %q is not absolute: %w", cwd, errdefs.ErrInvalidArgument)
		}
		ensureProcess(s)
		s.Process.Cwd = cwd
		return nil
	}
}

// envKey is the name part of a "KEY=value" entry (all of it if there is no
// '=').
func envKey(kv string) string {
	k, _, _ := strings.Cut(kv, "=")
	return k
}

// mergeEnv returns base with each entry of over replacing the entry of base
// with the same key, or appended if there is none. A key given several
// times in over keeps its last value.
func mergeEnv(base, over []string) []string {
	out := append([]string(nil), base...)
	idx := make(map[string]int, len(out))
	for i, kv := range out {
		idx[envKey(kv)] = i
	}
	for _, kv := range over {
		k := envKey(kv)
		if i, ok := idx[k]; ok {
			out[i] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	return out
}

// WithEnv sets environment variables ("KEY=value"): an entry replaces the
// one with the same key, others are added; variables not named stay.
func WithEnv(env []string) SpecOpts {
	return func(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
		for _, kv := range env {
			if envKey(kv) == "" {
				return fmt.Errorf("environment entry %q has no name: %w", kv, errdefs.ErrInvalidArgument)
			}
		}
		ensureProcess(s)
		s.Process.Env = mergeEnv(s.Process.Env, env)
		return nil
	}
}

// WithImageConfig applies the image's config: its Env is merged into the
// process environment (image values replace the defaults, such as PATH),
// Entrypoint followed by Cmd become the arguments, WorkingDir the working
// directory ("/" if unset), and User the process user, resolved like
// WithUser; an image without a User runs as root, still with root's
// supplementary groups from /etc/group. Apply it before options that
// should override the image.
func WithImageConfig(img Image) SpecOpts {
	return withImageConfig(img, nil, false)
}

// WithImageConfigArgs is WithImageConfig with args replacing the image's
// Cmd; the image's Entrypoint still comes first, as with `docker run image
// args...`.
func WithImageConfigArgs(img Image, args []string) SpecOpts {
	return withImageConfig(img, args, true)
}

func withImageConfig(img Image, args []string, replaceCmd bool) SpecOpts {
	return func(ctx context.Context, client Client, c *containers.Container, s *Spec) error {
		if img == nil {
			return fmt.Errorf("image config: no image: %w", errdefs.ErrInvalidArgument)
		}
		ic, err := img.Config(ctx)
		if err != nil {
			return fmt.Errorf("config of image %q: %w", img.Name(), err)
		}
		cfg := ic.Config
		cmd := cfg.Cmd
		if replaceCmd {
			cmd = args
		}
		argv := append(append([]string(nil), cfg.Entrypoint...), cmd...)
		if len(argv) == 0 {
			return fmt.Errorf("image %q has no entrypoint or command and none was given: %w", img.Name(), errdefs.ErrInvalidArgument)
		}
		ensureProcess(s)
		s.Process.Env = mergeEnv(s.Process.Env, cfg.Env)
		s.Process.Args = argv
		s.Process.Cwd = "/"
		if cfg.WorkingDir != "" {
			if !path.IsAbs(cfg.WorkingDir) {
				return fmt.Errorf("image %q: working directory %q is not absolute: %w", img.Name(), cfg.WorkingDir, errdefs.ErrInvalidArgument)
			}
			s.Process.Cwd = cfg.WorkingDir
		}
		user := cfg.User
		if user == "" {
			user = "0"
		}
		if err := setUser(ctx, client, c, s, user); err != nil {
			return fmt.Errorf("image %q: %w", img.Name(), err)
		}
		return nil
	}
}

// WithMounts adds mounts; a mount at the same destination as an existing
// one (the defaults included) replaces it, so that e.g. a bigger /dev/shm
// takes the place of the default one rather than stacking on it.
func WithMounts(mounts []specs.Mount) SpecOpts {
	return func(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
		for _, m := range mounts {
			if m.Destination == "" {
				return fmt.Errorf("mount of %q has no destination: %w", m.Source, errdefs.ErrInvalidArgument)
			}
			dest := path.Clean(m.Destination)
			replaced := false
			for i := range s.Mounts {
				if path.Clean(s.Mounts[i].Destination) == dest {
					s.Mounts[i] = m
					replaced = true
					break
				}
			}
			if !replaced {
				s.Mounts = append(s.Mounts, m)
			}
		}
		return nil
	}
}

// WithHostNamespace removes the namespace of type t from the spec, so the
// container shares the host's (e.g. specs.NetworkNamespace for host
// networking).
func WithHostNamespace(t specs.LinuxNamespaceType) SpecOpts {
	return func(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
		if s.Linux == nil {
			return nil
		}
		kept := s.Linux.Namespaces[:0]
		for _, ns := range s.Linux.Namespaces {
			if ns.Type != t {
				kept = append(kept, ns)
			}
		}
		s.Linux.Namespaces = kept
		return nil
	}
}

// WithLinuxNamespace sets the namespace of ns.Type to ns, replacing the
// one of that type if any: a Path joins an existing namespace (e.g.
// /proc/<pid>/ns/net or a bind-mounted netns), no Path makes a new one.
func WithLinuxNamespace(ns specs.LinuxNamespace) SpecOpts {
	return func(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
		if !knownNamespace(ns.Type) {
			return fmt.Errorf("unknown namespace type %q: %w", ns.Type, errdefs.ErrInvalidArgument)
		}
		if ns.Path != "" && !filepath.IsAbs(ns.Path) {
			return fmt.Errorf("namespace path %q is not absolute: %w", ns.Path, errdefs.ErrInvalidArgument)
		}
		ensureLinux(s)
		for i := range s.Linux.Namespaces {
			if s.Linux.Namespaces[i].Type == ns.Type {
				s.Linux.Namespaces[i] = ns
				return nil
			}
		}
		s.Linux.Namespaces = append(s.Linux.Namespaces, ns)
		return nil
	}
}

// WithHostname sets the container's hostname (in its uts namespace). The
// kernel takes at most 64 bytes.
func WithHostname(name string) SpecOpts {
	return func(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
		if len(name) > 64 {
			return fmt.Errorf("hostname %q is longer than 64 bytes: %w", name, errdefs.ErrInvalidArgument)
		}
		s.Hostname = name
		return nil
	}
}

// WithTTY gives the process a terminal and sets TERM=xterm, which most
// terminal programs need to draw.
func WithTTY(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
	ensureProcess(s)
	s.Process.Terminal = true
	s.Process.Env = mergeEnv(s.Process.Env, []string{"TERM=xterm"})
	return nil
}

// WithMemoryLimit sets the cgroup memory limit in bytes.
func WithMemoryLimit(limit uint64) SpecOpts {
	return func(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
		if limit == 0 || limit > math.MaxInt64 {
			return fmt.Errorf("memory limit %d is out of range: %w", limit, errdefs.ErrInvalidArgument)
		}
		ensureResources(s)
		if s.Linux.Resources.Memory == nil {
			s.Linux.Resources.Memory = &specs.LinuxMemory{}
		}
		v := int64(limit)
		s.Linux.Resources.Memory.Limit = &v
		return nil
	}
}

// cpuPeriod is the CFS period WithCPUs uses: 100ms, the kernel's default,
// so a quota reads as a fraction of it.
const cpuPeriod = 100000

// WithCPUs limits the container to cpus CPUs' worth of time (1.5 = one and
// a half), as a CFS quota over a 100ms period.
func WithCPUs(cpus float64) SpecOpts {
	return func(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
		if math.IsNaN(cpus) || math.IsInf(cpus, 0) || cpus <= 0 || cpus > 1<<20 {
			return fmt.Errorf("cpus %v is out of range: %w", cpus, errdefs.ErrInvalidArgument)
		}
		quota := int64(math.Round(cpus * cpuPeriod))
		if quota < 1000 {
			// The kernel rejects quotas under 1ms.
			return fmt.Errorf("cpus %v is below the kernel's 1ms quota minimum: %w", cpus, errdefs.ErrInvalidArgument)
		}
		ensureResources(s)
		if s.Linux.Resources.CPU == nil {
			s.Linux.Resources.CPU = &specs.LinuxCPU{}
		}
		period := uint64(cpuPeriod)
		s.Linux.Resources.CPU.Quota = &quota
		s.Linux.Resources.CPU.Period = &period
		return nil
	}
}

// WithCPUShares sets the container's relative CPU weight (cgroup v1
// shares; runc converts it to a v2 weight).
func WithCPUShares(shares uint64) SpecOpts {
	return func(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
		ensureResources(s)
		if s.Linux.Resources.CPU == nil {
			s.Linux.Resources.CPU = &specs.LinuxCPU{}
		}
		s.Linux.Resources.CPU.Shares = &shares
		return nil
	}
}

// WithPidsLimit limits the number of processes and threads in the
// container; it must be positive.
func WithPidsLimit(limit int64) SpecOpts {
	return func(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
		if limit <= 0 {
			return fmt.Errorf("pids limit %d is not positive: %w", limit, errdefs.ErrInvalidArgument)
		}
		ensureResources(s)
		s.Linux.Resources.Pids = &specs.LinuxPids{Limit: &limit}
		return nil
	}
}

// WithReadonlyRootfs mounts the root filesystem read-only.
func WithReadonlyRootfs(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
	if s.Root == nil {
		s.Root = &specs.Root{Path: "rootfs"}
	}
	s.Root.Readonly = true
	return nil
}

// WithNoNewPrivileges sets no_new_privs: setuid binaries and file
// capabilities then grant nothing on exec.
func WithNoNewPrivileges(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
	ensureProcess(s)
	s.Process.NoNewPrivileges = true
	return nil
}

// WithNewPrivileges clears no_new_privs again (the default), for images
// that rely on setuid binaries such as sudo or ping.
func WithNewPrivileges(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
	ensureProcess(s)
	s.Process.NoNewPrivileges = false
	return nil
}

// WithAnnotations adds annotations, replacing those with the same keys.
func WithAnnotations(annotations map[string]string) SpecOpts {
	return func(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
		if len(annotations) == 0 {
			return nil
		}
		if s.Annotations == nil {
			s.Annotations = make(map[string]string, len(annotations))
		}
		for k, v := range annotations {
			s.Annotations[k] = v
		}
		return nil
	}
}

// WithRlimit sets the resource limit typ ("RLIMIT_NOFILE", ...), replacing
// the one of that type if any. soft must not exceed hard.
func WithRlimit(typ string, hard, soft uint64) SpecOpts {
	return func(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
		if !strings.HasPrefix(typ, "RLIMIT_") {
			return fmt.Errorf("rlimit type %q: %w", typ, errdefs.ErrInvalidArgument)
		}
		if soft > hard {
			return fmt.Errorf("rlimit %s: soft limit %d above hard limit %d: %w", typ, soft, hard, errdefs.ErrInvalidArgument)
		}
		ensureProcess(s)
		rl := specs.POSIXRlimit{Type: typ, Hard: hard, Soft: soft}
		for i := range s.Process.Rlimits {
			if s.Process.Rlimits[i].Type == typ {
				s.Process.Rlimits[i] = rl
				return nil
			}
		}
		s.Process.Rlimits = append(s.Process.Rlimits, rl)
		return nil
	}
}

// WithOOMScoreAdj sets the process's oom_score_adj, from -1000 (never
// killed) to 1000 (killed first).
func WithOOMScoreAdj(score int) SpecOpts {
	return func(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
		if score < -1000 || score > 1000 {
			return fmt.Errorf("oom score adj %d is outside -1000..1000: %w", score, errdefs.ErrInvalidArgument)
		}
		ensureProcess(s)
		s.Process.OOMScoreAdj = &score
		return nil
	}
}

// WithCgroup sets the cgroup path, replacing the default
// /<namespace>/<id>. A systemd cgroup driver expects "slice:prefix:name".
func WithCgroup(p string) SpecOpts {
	return func(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
		if p == "" {
			return fmt.Errorf("empty cgroup path: %w", errdefs.ErrInvalidArgument)
		}
		ensureLinux(s)
		s.Linux.CgroupsPath = p
		return nil
	}
}

// currentCapabilities is every capability in the calling process's
// bounding set ("all current capabilities", as containerd's privileged
// means): on a host or sandbox whose bounding set lacks one, runc could not
// grant it and a privileged container would not start at all. When the set
// cannot be read, every capability is asked for.
func currentCapabilities() []string {
	all := AllCapabilities()
	var have []string
	for i, name := range all {
		r, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(i), 0, 0, 0)
		if err != nil {
			return all
		}
		if r == 1 {
			have = append(have, name)
		}
	}
	return have
}

// AllCapabilities lists every capability of Linux 6.x in the kernel's
// numbering order. runc drops the ones the running kernel does not know.
func AllCapabilities() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
		"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
		"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
		"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
		"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
		"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
		"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
		"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
		"CAP_CHECKPOINT_RESTORE",
	}
}

// WithPrivileged makes the container privileged, as `docker run
// --privileged`: every capability in the bounding, effective and permitted
// sets (still none inheritable or ambient, so a switch to a non-root user
// drops them), no masked or read-only paths, every device allowed, /sys and
// the cgroup tree writable, no seccomp filter and no AppArmor profile
// (left empty, which runc treats as unconfined also on hosts without
// AppArmor, where naming "unconfined" would fail).
func WithPrivileged(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
	ensureProcess(s)
	s.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding:  currentCapabilities(),
		Effective: currentCapabilities(),
		Permitted: currentCapabilities(),
	}
	s.Process.ApparmorProfile = ""
	ensureResources(s)
	s.Linux.MaskedPaths = nil
	s.Linux.ReadonlyPaths = nil
	s.Linux.Seccomp = nil
	s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	for i := range s.Mounts {
		m := &s.Mounts[i]
		if m.Type == "sysfs" || m.Type == "cgroup" || m.Type == "cgroup2" {
			opts := m.Options[:0:0]
			for _, o := range m.Options {
				if o != "ro" {
					opts = append(opts, o)
				}
			}
			m.Options = append(opts, "rw")
		}
	}
	return nil
}
