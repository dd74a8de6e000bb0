package spec

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/client/oci"
	"github.com/hullrt/hull/core/snapshots"
)

// nsMap is the spec's namespaces by type: the path, "" for a new one;
// absent for the host's.
func nsMap(s *oci.Spec) map[specs.LinuxNamespaceType]string {
	m := map[specs.LinuxNamespaceType]string{}
	for _, ns := range s.Linux.Namespaces {
		m[ns.Type] = ns.Path
	}
	return m
}

func TestSandboxBasics(t *testing.T) {
	sb := testSandbox()
	sb.RuntimeHandler = "runc"
	sb.Config.Linux.Resources = &runtime.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 1 << 30}
	s := mustSandbox(t, sb, Options{})
	p := s.Process
	if !reflect.DeepEqual(p.Args, []string{"/pause"}) || p.Cwd != "/" || !slices.Contains(p.Env, "PATH=/bin") {
		t.Errorf("process %q cwd %q env %q", p.Args, p.Cwd, p.Env)
	}
	if p.User.UID != 65534 || p.User.GID != 65534 {
		t.Errorf("user %+v", p.User)
	}
	if !s.Root.Readonly || s.Hostname != "web-host" || p.Rlimits != nil {
		t.Errorf("readonly %v hostname %q rlimits %v", s.Root.Readonly, s.Hostname, p.Rlimits)
	}
	if p.OOMScoreAdj == nil || *p.OOMScoreAdj != -998 {
		t.Errorf("oom_score_adj %v", p.OOMScoreAdj)
	}
	if sh := s.Linux.Resources.CPU; sh == nil || sh.Shares == nil || *sh.Shares != 2 || sh.Quota != nil {
		t.Errorf("cpu %+v", sh)
	}
	if s.Linux.CgroupsPath != "/kubepods/pod-uid-1/sb1" {
		t.Errorf("cgroups path %q", s.Linux.CgroupsPath)
	}
	if s.Linux.Seccomp != nil || len(p.Capabilities.Inheritable)+len(p.Capabilities.Ambient) != 0 {
		t.Error("seccomp or inheritable capabilities by default")
	}
	want := map[specs.LinuxNamespaceType]string{"pid": "", "ipc": "", "uts": "", "mount": "", "network": "/var/run/netns/cni-1"}
	if got := nsMap(s); !reflect.DeepEqual(got, want) {
		t.Errorf("namespaces %v", got)
	}
	if m := mountAt(s, "/dev/shm"); m == nil || m.Source != "/run/hull/sb1/shm" || m.Type != "bind" || !slices.Contains(m.Options, "ro") {
		t.Errorf("/dev/shm %+v", m)
	}
	if m := mountAt(s, "/sys/fs/cgroup"); m != nil {
		t.Errorf("the pause container mounts /sys/fs/cgroup: %+v", m)
	}
	wantA := map[string]string{
		AnnotationContainerType: "sandbox", AnnotationSandboxID: "sb1", AnnotationSandboxName: "web", AnnotationSandboxNamespace: "default",
		AnnotationSandboxUID: "uid-1", AnnotationSandboxLogDir: "/var/log/pods/default_web_uid-1", AnnotationRuntimeHandler: "runc",
		AnnotationSandboxCPUPeriod: "100000", AnnotationSandboxCPUQuota: "50000", AnnotationSandboxCPUShares: "512", AnnotationSandboxMemory: "1073741824",
	}
	if !reflect.DeepEqual(s.Annotations, wantA) {
		t.Errorf("annotations %v", s.Annotations)
	}
}

func TestSandboxNamespaces(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ns       *runtime.NamespaceOption
		netns    string
		want     map[specs.LinuxNamespaceType]string
		hostname string
		shm      string
	}{
		{"pod", &runtime.NamespaceOption{}, "/netns", map[specs.LinuxNamespaceType]string{"pid": "", "ipc": "", "uts": "", "mount": "", "network": "/netns"}, "web-host", "/run/hull/sb1/shm"},
		{"host network", &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE}, "", map[specs.LinuxNamespaceType]string{"pid": "", "ipc": "", "mount": ""}, "", "/run/hull/sb1/shm"},
		{"host pid and ipc", &runtime.NamespaceOption{Pid: runtime.NamespaceMode_NODE, Ipc: runtime.NamespaceMode_NODE}, "/netns", map[specs.LinuxNamespaceType]string{"uts": "", "mount": "", "network": "/netns"}, "web-host", "/dev/shm"},
		{"container pid", &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}, "/netns", map[specs.LinuxNamespaceType]string{"pid": "", "ipc": "", "uts": "", "mount": "", "network": "/netns"}, "web-host", "/run/hull/sb1/shm"},
		{"userns", &runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD,
			Uids: []*runtime.IDMapping{{HostId: 100000, ContainerId: 0, Length: 65536}}, Gids: []*runtime.IDMapping{{HostId: 100000, ContainerId: 0, Length: 65536}}}},
			"/netns", map[specs.LinuxNamespaceType]string{"pid": "", "ipc": "", "uts": "", "mount": "", "network": "/netns", "user": ""}, "web-host", "/run/hull/sb1/shm"},
		{"userns node", &runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE}},
			"/netns", map[specs.LinuxNamespaceType]string{"pid": "", "ipc": "", "uts": "", "mount": "", "network": "/netns"}, "web-host", "/run/hull/sb1/shm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := testSandbox()
			sb.NetNSPath = tc.netns
			sb.Config.Linux.SecurityContext.NamespaceOptions = tc.ns
			s := mustSandbox(t, sb, Options{})
			if got := nsMap(s); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("namespaces %v want %v", got, tc.want)
			}
			if s.Hostname != tc.hostname {
				t.Errorf("hostname %q", s.Hostname)
			}
			if m := mountAt(s, "/dev/shm"); m == nil || m.Source != tc.shm {
				t.Errorf("/dev/shm %+v", m)
			}
			if _, user := tc.want["user"]; user {
				want := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
				if !reflect.DeepEqual(s.Linux.UIDMappings, want) || !reflect.DeepEqual(s.Linux.GIDMappings, want) {
					t.Errorf("mappings %v %v", s.Linux.UIDMappings, s.Linux.GIDMappings)
				}
			} else if len(s.Linux.UIDMappings) != 0 {
				t.Errorf("mappings without a user namespace: %v", s.Linux.UIDMappings)
			}
		})
	}
}

func TestSandboxSecurity(t *testing.T) {
	i64 := func(v int64) *runtime.Int64Value { return &runtime.Int64Value{Value: v} }
	sb := testSandbox()
	sc := sb.Config.Linux.SecurityContext
	sc.RunAsUser, sc.RunAsGroup, sc.SupplementalGroups = i64(1000), i64(2000), []int64{3000}
	sc.Seccomp = &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}
	s := mustSandbox(t, sb, Options{})
	if u := s.Process.User; u.UID != 1000 || u.GID != 2000 || !reflect.DeepEqual(u.AdditionalGids, []uint32{29, 44, 1000, 3000}) {
		t.Errorf("user %+v", u)
	}
	if s.Linux.Seccomp == nil {
		t.Error("no seccomp profile")
	}
	sc.Privileged = true
	s = mustSandbox(t, sb, Options{})
	if s.Linux.Seccomp != nil || len(s.Linux.MaskedPaths) != 0 || len(s.Process.Capabilities.Bounding) < 20 {
		t.Errorf("privileged sandbox: seccomp %v masked %v caps %v", s.Linux.Seccomp != nil, s.Linux.MaskedPaths, s.Process.Capabilities.Bounding)
	}
	sb = testSandbox()
	s = mustSandbox(t, sb, Options{UnsetSeccompProfile: "runtime/default"})
	if s.Linux.Seccomp == nil {
		t.Error("unset profile not applied")
	}
	min := -500
	if s := mustSandbox(t, sb, Options{MinOOMScoreAdj: &min}); *s.Process.OOMScoreAdj != -500 {
		t.Errorf("clamped oom_score_adj %d", *s.Process.OOMScoreAdj)
	}
	min = -999
	if s := mustSandbox(t, sb, Options{MinOOMScoreAdj: &min}); *s.Process.OOMScoreAdj != -998 {
		t.Errorf("oom_score_adj %d raised below the clamp", *s.Process.OOMScoreAdj)
	}
	sb.Config.Linux.CgroupParent = "kubepods-pod1.slice"
	if s := mustSandbox(t, sb, Options{CgroupDriver: "systemd"}); s.Linux.CgroupsPath != "kubepods-pod1.slice:hull:sb1" {
		t.Errorf("systemd cgroups path %q", s.Linux.CgroupsPath)
	}
}

func TestSandboxSysctls(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sysctls map[string]string
		ns      *runtime.NamespaceOption
		o       Options
		want    map[string]string
		bad     string
	}{
		{"namespaced", map[string]string{"net.core.somaxconn": "1024", "kernel.shmmax": "1", "net/ipv4/conf/eth0.100/forwarding": "1"}, &runtime.NamespaceOption{}, Options{},
			map[string]string{"net.core.somaxconn": "1024", "kernel.shmmax": "1", "net.ipv4.conf.eth0/100.forwarding": "1"}, ""},
		{"unprivileged defaults", nil, &runtime.NamespaceOption{}, Options{EnableUnprivilegedPorts: true, EnableUnprivilegedICMP: true},
			map[string]string{unprivilegedPortSysctl: "0", pingGroupRangeSysctl: "0 2147483647"}, ""},
		{"pod wins", map[string]string{unprivilegedPortSysctl: "80"}, &runtime.NamespaceOption{}, Options{EnableUnprivilegedPorts: true},
			map[string]string{unprivilegedPortSysctl: "80"}, ""},
		{"host network no defaults", map[string]string{"kernel.msgmax": "9"}, &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE}, Options{EnableUnprivilegedPorts: true, EnableUnprivilegedICMP: true},
			map[string]string{"kernel.msgmax": "9"}, ""},
		{"net with host network", map[string]string{"net.core.somaxconn": "1"}, &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE}, Options{}, nil, "net.core.somaxconn"},
		{"ipc with host ipc", map[string]string{"kernel.sem": "1 2 3 4"}, &runtime.NamespaceOption{Ipc: runtime.NamespaceMode_NODE}, Options{}, nil, "kernel.sem"},
		{"mqueue with host ipc", map[string]string{"fs.mqueue.msg_max": "1"}, &runtime.NamespaceOption{Ipc: runtime.NamespaceMode_NODE}, Options{}, nil, "fs.mqueue.msg_max"},
		{"not namespaced", map[string]string{"vm.swappiness": "1"}, &runtime.NamespaceOption{}, Options{}, nil, "vm.swappiness"},
		{"hostname", map[string]string{"kernel.hostname": "x"}, &runtime.NamespaceOption{}, Options{}, nil, "kernel.hostname"},
		{"bad name", map[string]string{"net..x": "1"}, &runtime.NamespaceOption{}, Options{}, nil, "net..x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := testSandbox()
			sb.Config.Linux.Sysctls = tc.sysctls
			sb.Config.Linux.SecurityContext.NamespaceOptions = tc.ns
			if tc.bad != "" {
				_, err := SandboxOpts(sb, tc.o)
				wantErr(t, err, errInvalid, tc.bad)
				return
			}
			s := mustSandbox(t, sb, tc.o)
			if !reflect.DeepEqual(s.Linux.Sysctl, tc.want) && !(len(s.Linux.Sysctl) == 0 && len(tc.want) == 0) {
				t.Fatalf("sysctls %v want %v", s.Linux.Sysctl, tc.want)
			}
		})
	}
}

func FuzzCheckSysctls(f *testing.F) {
	for _, s := range []string{"net.core.somaxconn", "net/ipv4/conf/eth0.1/rp_filter", "kernel.shmmax", "vm.swappiness", "", ".", "net.", "kernel.sem"} {
		f.Add(s, "1", false, false)
	}
	f.Fuzz(func(t *testing.T, name, value string, hostNet, hostIPC bool) {
		out, err := CheckSysctls(map[string]string{name: value}, hostNet, hostIPC)
		if err != nil {
			if !strings.Contains(err.Error(), "sysctl") {
				t.Fatalf("error %v does not say what", err)
			}
			return
		}
		n := NormalizeSysctl(name)
		if out[n] != value || len(out) != 1 {
			t.Fatalf("%q -> %v", name, out)
		}
		ns := sysctlNamespace(n)
		if ns == "" || (hostNet && (ns == "net" || ns == "uts")) || (hostIPC && ns == "ipc") {
			t.Fatalf("%q (%s namespace) accepted with hostNet=%v hostIPC=%v", name, ns, hostNet, hostIPC)
		}
		if !strings.Contains(n, "/") && NormalizeSysctl(strings.ReplaceAll(n, ".", "/")) != n {
			t.Fatalf("slash form of %q does not normalize back", n)
		}
	})
}

func TestSandboxBadInput(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mod    func(*Sandbox)
		class  error
		naming string
	}{
		{"no config", func(sb *Sandbox) { sb.Config = nil }, errInvalid, "sb1"},
		{"no args", func(sb *Sandbox) { sb.Image.Entrypoint = nil }, errInvalid, "sb1"},
		{"target pid", func(sb *Sandbox) { sb.Config.Linux.SecurityContext.NamespaceOptions.Pid = runtime.NamespaceMode_TARGET }, errInvalid, "TARGET"},
		{"bad network mode", func(sb *Sandbox) { sb.Config.Linux.SecurityContext.NamespaceOptions.Network = 9 }, errInvalid, "network"},
		{"userns without mappings", func(sb *Sandbox) {
			sb.Config.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD}
		}, errInvalid, "POD"},
		{"userns node with mappings", func(sb *Sandbox) {
			sb.Config.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE,
				Uids: []*runtime.IDMapping{{Length: 1}}, Gids: []*runtime.IDMapping{{Length: 1}}}
		}, errInvalid, "NODE"},
		{"userns container", func(sb *Sandbox) {
			sb.Config.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtime.UserNamespace{Mode: runtime.NamespaceMode_CONTAINER}
		}, errInvalid, "CONTAINER"},
		{"userns zero length", func(sb *Sandbox) {
			sb.Config.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD,
				Uids: []*runtime.IDMapping{{Length: 0}}, Gids: []*runtime.IDMapping{{Length: 1}}}
		}, errInvalid, "length 0"},
		{"userns overflow", func(sb *Sandbox) {
			sb.Config.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD,
				Uids: []*runtime.IDMapping{{HostId: 4294967295, Length: 2}}, Gids: []*runtime.IDMapping{{Length: 1}}}
		}, errInvalid, "4294967295"},
		{"userns overlap", func(sb *Sandbox) {
			sb.Config.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD,
				Uids: []*runtime.IDMapping{{ContainerId: 0, HostId: 1000, Length: 10}, {ContainerId: 5, HostId: 5000, Length: 10}}, Gids: []*runtime.IDMapping{{Length: 1}}}
		}, errInvalid, "overlap"},
		{"userns without container root", func(sb *Sandbox) {
			sb.Config.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD,
				Uids: []*runtime.IDMapping{{ContainerId: 1, HostId: 1000, Length: 100000}}, Gids: []*runtime.IDMapping{{ContainerId: 1, HostId: 1000, Length: 100000}}}
		}, errInvalid, "container id 0"},
		{"group without user", func(sb *Sandbox) { sb.Config.Linux.SecurityContext.RunAsGroup = &runtime.Int64Value{Value: 1} }, errInvalid, "run_as_group"},
		{"bad seccomp", func(sb *Sandbox) { sb.Config.Linux.SecurityContext.Seccomp = &runtime.SecurityProfile{ProfileType: 5} }, errInvalid, "5"},
		{"cgroup parent for driver", func(sb *Sandbox) { sb.Config.Linux.CgroupParent = "relative/parent" }, errInvalid, "relative/parent"},
		{"hostname too long", func(sb *Sandbox) { sb.Config.Hostname = strings.Repeat("h", 65) }, errInvalid, "hhhh"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := testSandbox()
			tc.mod(&sb)
			opts, err := SandboxOpts(sb, Options{})
			if err == nil {
				_, err = generate(t, userRoot(t), "sb1", opts)
			}
			wantErr(t, err, tc.class, tc.naming)
		})
	}
}

func TestContainerNamespaces(t *testing.T) {
	usernsOpt := func() *runtime.UserNamespace {
		return &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD,
			Uids: []*runtime.IDMapping{{HostId: 100000, Length: 65536}}, Gids: []*runtime.IDMapping{{HostId: 100000, Length: 65536}}}
	}
	for _, tc := range []struct {
		name   string
		pod    *runtime.NamespaceOption
		ctr    *runtime.NamespaceOption
		netns  string
		h      host
		target uint32
		want   map[specs.LinuxNamespaceType]string
	}{
		{"pod", &runtime.NamespaceOption{}, &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}, "/netns", host{},
			0, map[specs.LinuxNamespaceType]string{"pid": "", "ipc": "/proc/4242/ns/ipc", "uts": "/proc/4242/ns/uts", "mount": "", "network": "/netns"}},
		{"no netns path", &runtime.NamespaceOption{}, &runtime.NamespaceOption{Pid: runtime.NamespaceMode_POD}, "", host{},
			0, map[specs.LinuxNamespaceType]string{"pid": "/proc/4242/ns/pid", "ipc": "/proc/4242/ns/ipc", "uts": "/proc/4242/ns/uts", "mount": "", "network": "/proc/4242/ns/net"}},
		{"host", &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE, Ipc: runtime.NamespaceMode_NODE, Pid: runtime.NamespaceMode_NODE},
			&runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE, Ipc: runtime.NamespaceMode_NODE, Pid: runtime.NamespaceMode_NODE}, "", host{},
			0, map[specs.LinuxNamespaceType]string{"mount": ""}},
		{"target", &runtime.NamespaceOption{}, &runtime.NamespaceOption{Pid: runtime.NamespaceMode_TARGET, TargetId: "c0"}, "/netns", host{},
			777, map[specs.LinuxNamespaceType]string{"pid": "/proc/777/ns/pid", "ipc": "/proc/4242/ns/ipc", "uts": "/proc/4242/ns/uts", "mount": "", "network": "/netns"}},
		{"cgroup v2", &runtime.NamespaceOption{}, &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}, "/netns", host{cgroup2: true},
			0, map[specs.LinuxNamespaceType]string{"pid": "", "ipc": "/proc/4242/ns/ipc", "uts": "/proc/4242/ns/uts", "mount": "", "network": "/netns", "cgroup": ""}},
		{"userns", &runtime.NamespaceOption{UsernsOptions: usernsOpt()}, &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER, UsernsOptions: usernsOpt()}, "/netns", host{},
			0, map[specs.LinuxNamespaceType]string{"pid": "", "ipc": "/proc/4242/ns/ipc", "uts": "/proc/4242/ns/uts", "mount": "", "network": "/netns", "user": "/proc/4242/ns/user"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testContainer()
			c.Sandbox.Config.Linux.SecurityContext.NamespaceOptions = tc.pod
			c.Config.Linux.SecurityContext.NamespaceOptions = tc.ctr
			c.Sandbox.NetNSPath = tc.netns
			c.TargetPid = tc.target
			c.HostsPath = "/sb/hosts"
			s, err := containerSpec(t, c, Options{}, tc.h)
			if err != nil {
				t.Fatal(err)
			}
			if got := nsMap(s); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("namespaces %v\nwant %v", got, tc.want)
			}
			if _, user := tc.want["user"]; user {
				want := []specs.LinuxIDMapping{{HostID: 100000, Size: 65536}}
				if !reflect.DeepEqual(s.Linux.UIDMappings, want) || !reflect.DeepEqual(s.Linux.GIDMappings, want) {
					t.Errorf("mappings %v %v", s.Linux.UIDMappings, s.Linux.GIDMappings)
				}
				if m := mountAt(s, "/etc/hosts"); m == nil || !reflect.DeepEqual(m.UIDMappings, want) || !reflect.DeepEqual(m.GIDMappings, want) {
					t.Errorf("/etc/hosts not idmapped: %+v", m)
				}
			}
		})
	}
	for _, tc := range []struct {
		name   string
		mod    func(*Container)
		class  error
		naming string
	}{
		{"no pause pid", func(c *Container) { c.Sandbox.Pid = 0 }, errdefs.ErrFailedPrecondition, "sb1"},
		{"target without id", func(c *Container) { c.Config.Linux.SecurityContext.NamespaceOptions.Pid = runtime.NamespaceMode_TARGET }, errInvalid, "target_id"},
		{"target not running", func(c *Container) {
			c.Config.Linux.SecurityContext.NamespaceOptions = &runtime.NamespaceOption{Pid: runtime.NamespaceMode_TARGET, TargetId: "c0"}
		}, errdefs.ErrFailedPrecondition, "c0"},
		{"bad pid mode", func(c *Container) { c.Config.Linux.SecurityContext.NamespaceOptions.Pid = 8 }, errInvalid, "8"},
		{"userns differs", func(c *Container) {
			c.Config.Linux.SecurityContext.NamespaceOptions.UsernsOptions = usernsOpt()
		}, errInvalid, "user namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testContainer()
			tc.mod(&c)
			_, err := containerSpec(t, c, Options{}, host{})
			wantErr(t, err, tc.class, tc.naming)
		})
	}
}

func TestUsernsSnapshotLabels(t *testing.T) {
	pod := &runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD,
		Uids: []*runtime.IDMapping{{ContainerId: 0, HostId: 100000, Length: 65536}},
		Gids: []*runtime.IDMapping{{ContainerId: 0, HostId: 200000, Length: 65536}}}}
	l, err := UsernsSnapshotLabels(pod)
	if err != nil {
		t.Fatal(err)
	}
	if l[snapshots.LabelUIDMapping] != "0:100000:65536" || l[snapshots.LabelGIDMapping] != "0:200000:65536" || len(l) != 2 {
		t.Errorf("labels = %v", l)
	}
	for _, host := range []*runtime.NamespaceOption{nil, {}, {UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE}}} {
		if l, err := UsernsSnapshotLabels(host); l != nil || err != nil {
			t.Errorf("UsernsSnapshotLabels(%v) = %v, %v; want none", host, l, err)
		}
	}
	if _, err := UsernsSnapshotLabels(&runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_TARGET}}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("mode TARGET: err = %v, want InvalidArgument", err)
	}
}
