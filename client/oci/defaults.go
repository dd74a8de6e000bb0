package oci

import (
	"context"
	"path"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultPathEnv is the PATH a container gets when nothing (image config,
// WithEnv) says otherwise; it is the one Docker and containerd use.
const DefaultPathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// maxHostname is the longest hostname the default spec derives from a
// container id: a DNS label is at most 63 bytes, one less than the kernel's
// HOST_NAME_MAX, so the name is usable in both.
const maxHostname = 63

// defaultCapabilities is the capability set of an unprivileged container:
// the set Docker established and containerd keeps, enough for a typical
// service that starts as root and drops to a user (setuid, chown, binding
// low ports) but without anything that reaches outside the container
// (SYS_ADMIN, NET_ADMIN, SYS_MODULE, SYS_PTRACE...).
func defaultCapabilities() []string {
	return []string{
		"CAP_CHOWN",
		"CAP_DAC_OVERRIDE",
		"CAP_FSETID",
		"CAP_FOWNER",
		"CAP_MKNOD",
		"CAP_NET_RAW",
		"CAP_SETGID",
		"CAP_SETUID",
		"CAP_SETFCAP",
		"CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE",
		"CAP_SYS_CHROOT",
		"CAP_KILL",
		"CAP_AUDIT_WRITE",
	}
}

// defaultCaps returns the default capabilities in the sets where they belong.
// Inheritable and ambient stay empty: a capability in them survives execve
// of a non-root program, so a process that switches to a user would keep
// root's capabilities (GHSA-c9cp-9c75-9v8c in containerd and Moby).
func defaultCaps() *specs.LinuxCapabilities {
	return &specs.LinuxCapabilities{
		Bounding:  defaultCapabilities(),
		Effective: defaultCapabilities(),
		Permitted: defaultCapabilities(),
	}
}

// defaultMaskedPaths hide kernel interfaces that leak host information or
// allow host-wide actions; runc bind-mounts /dev/null (or an empty
// read-only tmpfs for directories) over them.
func defaultMaskedPaths() []string {
	return []string{
		"/proc/acpi",
		"/proc/asound",
		"/proc/kcore",
		"/proc/keys",
		"/proc/latency_stats",
		"/proc/timer_list",
		"/proc/timer_stats",
		"/proc/sched_debug",
		"/proc/scsi",
		"/sys/firmware",
		"/sys/devices/virtual/powercap",
	}
}

// defaultReadonlyPaths are /proc entries a container may read but must not
// write, since writing them changes the host kernel (sysctls, irq affinity,
// sysrq).
func defaultReadonlyPaths() []string {
	return []string{
		"/proc/bus",
		"/proc/fs",
		"/proc/irq",
		"/proc/sys",
		"/proc/sysrq-trigger",
	}
}

// defaultMounts are the filesystems every Linux program expects. Each is
// nosuid (and most noexec, nodev) because nothing on them should be
// executed or used as a device; /sys and the cgroup tree are read-only
// because they are the host's.
func defaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		// gid=5 is the tty group on Debian-like systems, as the
		// terminal programs expect; newinstance gives the container its
		// own pts numbering.
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
}

// defaultNamespaces isolate the container from the host. The network
// namespace is new and empty (loopback only): hull sets up no network by
// default, a CNI plugin or WithLinuxNamespace joins one.
func defaultNamespaces() []specs.LinuxNamespace {
	return []specs.LinuxNamespace{
		{Type: specs.PIDNamespace},
		{Type: specs.IPCNamespace},
		{Type: specs.UTSNamespace},
		{Type: specs.MountNamespace},
		{Type: specs.NetworkNamespace},
	}
}

func ptrInt64(v int64) *int64 { return &v }

// defaultDevices is the device cgroup: deny everything, then allow the
// character devices every program may use. runc creates the nodes for
// these itself; the rules only decide what may be opened.
func defaultDevices() []specs.LinuxDeviceCgroup {
	allow := func(major, minor int64) specs.LinuxDeviceCgroup {
		d := specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: ptrInt64(major), Access: "rwm"}
		if minor >= 0 {
			d.Minor = ptrInt64(minor)
		}
		return d
	}
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		allow(1, 3),    // /dev/null
		allow(1, 5),    // /dev/zero
		allow(1, 7),    // /dev/full
		allow(1, 8),    // /dev/random
		allow(1, 9),    // /dev/urandom
		allow(5, 0),    // /dev/tty
		allow(5, 2),    // /dev/ptmx
		allow(136, -1), // /dev/pts/*
	}
}

// defaultSpec is the spec GenerateSpec starts from; see the package
// documentation for what it holds and why.
func defaultSpec(ctx context.Context, id string) (*Spec, error) {
	ns, err := namespaceOf(ctx)
	if err != nil {
		return nil, err
	}
	hostname := id
	if len(hostname) > maxHostname {
		hostname = hostname[:maxHostname]
	}
	return &Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{
			Cwd:             "/",
			Env:             []string{DefaultPathEnv},
			User:            specs.User{UID: 0, GID: 0},
			Capabilities:    defaultCaps(),
			NoNewPrivileges: false,
			Rlimits: []specs.POSIXRlimit{
				// 1024 keeps select(2)-based programs safe; raise
				// it with WithRlimit.
				{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024},
			},
		},
		Hostname: hostname,
		Mounts:   defaultMounts(),
		Linux: &specs.Linux{
			MaskedPaths:   defaultMaskedPaths(),
			ReadonlyPaths: defaultReadonlyPaths(),
			Resources:     &specs.LinuxResources{Devices: defaultDevices()},
			CgroupsPath:   path.Join("/", ns, id),
			Namespaces:    defaultNamespaces(),
		},
	}, nil
}
