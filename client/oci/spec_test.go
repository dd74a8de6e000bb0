package oci

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/moby/profiles/seccomp"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/core/namespaces"
)

func testCtx() context.Context {
	return namespaces.WithNamespace(context.Background(), "testns")
}

// gen generates a spec for a container without a snapshot whose root path
// is root (if not empty), so that user options read root directly.
func gen(t *testing.T, root string, opts ...SpecOpts) (*Spec, error) {
	t.Helper()
	c := &containers.Container{ID: "c1"}
	if root != "" {
		opts = append([]SpecOpts{func(_ context.Context, _ Client, _ *containers.Container, s *Spec) error {
			s.Root.Path = root
			return nil
		}}, opts...)
	}
	return GenerateSpec(testCtx(), nil, c, opts...)
}

func mustGen(t *testing.T, root string, opts ...SpecOpts) *Spec {
	t.Helper()
	s, err := gen(t, root, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDefaults(t *testing.T) {
	s := mustGen(t, "")
	p := s.Process
	if p.Cwd != "/" || p.Terminal || p.User.UID != 0 || p.User.GID != 0 || p.NoNewPrivileges {
		t.Errorf("process defaults: %+v", p)
	}
	if !reflect.DeepEqual(p.Env, []string{DefaultPathEnv}) {
		t.Errorf("env %v", p.Env)
	}
	want := defaultCapabilities()
	if len(want) != 14 {
		t.Fatalf("default capability set has %d entries", len(want))
	}
	c := p.Capabilities
	if !reflect.DeepEqual(c.Bounding, want) || !reflect.DeepEqual(c.Effective, want) || !reflect.DeepEqual(c.Permitted, want) {
		t.Errorf("capabilities %+v", c)
	}
	if len(c.Inheritable) != 0 || len(c.Ambient) != 0 {
		t.Errorf("inheritable %v ambient %v must be empty", c.Inheritable, c.Ambient)
	}
	if !reflect.DeepEqual(p.Rlimits, []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}}) {
		t.Errorf("rlimits %+v", p.Rlimits)
	}
	if s.Root.Path != "rootfs" || s.Root.Readonly {
		t.Errorf("root %+v", s.Root)
	}
	if s.Hostname != "c1" {
		t.Errorf("hostname %q", s.Hostname)
	}
	var dests []string
	for _, m := range s.Mounts {
		dests = append(dests, m.Destination)
	}
	if !reflect.DeepEqual(dests, []string{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"}) {
		t.Errorf("mounts %v", dests)
	}
	for _, m := range s.Mounts {
		if (m.Destination == "/sys" || m.Destination == "/sys/fs/cgroup") && !slices.Contains(m.Options, "ro") {
			t.Errorf("%s not read-only", m.Destination)
		}
	}
	var nss []specs.LinuxNamespaceType
	for _, ns := range s.Linux.Namespaces {
		nss = append(nss, ns.Type)
		if ns.Path != "" {
			t.Errorf("namespace %s joins %s", ns.Type, ns.Path)
		}
	}
	if !reflect.DeepEqual(nss, []specs.LinuxNamespaceType{"pid", "ipc", "uts", "mount", "network"}) {
		t.Errorf("namespaces %v", nss)
	}
	for _, mp := range []string{"/proc/kcore", "/proc/keys", "/sys/firmware", "/proc/scsi", "/sys/devices/virtual/powercap"} {
		if !slices.Contains(s.Linux.MaskedPaths, mp) {
			t.Errorf("%s not masked", mp)
		}
	}
	if !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") || !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sysrq-trigger") {
		t.Errorf("readonly paths %v", s.Linux.ReadonlyPaths)
	}
	devs := s.Linux.Resources.Devices
	if len(devs) == 0 || devs[0].Allow || devs[0].Access != "rwm" || devs[0].Type != "" {
		t.Errorf("device rules must start with deny all: %+v", devs)
	}
	for _, d := range devs[1:] {
		if !d.Allow || d.Type != "c" {
			t.Errorf("rule %+v", d)
		}
	}
	if s.Linux.CgroupsPath != "/testns/c1" {
		t.Errorf("cgroups path %q", s.Linux.CgroupsPath)
	}
	if s.Linux.Seccomp != nil {
		t.Error("seccomp set by default")
	}
	if err := Validate(s); err == nil {
		t.Error("default spec without args validates")
	}
	s.Process.Args = []string{"/bin/true"}
	if err := Validate(s); err != nil {
		t.Errorf("default spec with args: %v", err)
	}
}

func TestDefaultsNeedNamespace(t *testing.T) {
	_, err := GenerateSpec(context.Background(), nil, &containers.Container{ID: "x"})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("got %v", err)
	}
}

func TestLongHostname(t *testing.T) {
	id := strings.Repeat("a", 100)
	s, err := GenerateSpec(testCtx(), nil, &containers.Container{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Hostname) != maxHostname {
		t.Fatalf("hostname length %d", len(s.Hostname))
	}
}

func TestProcessOptions(t *testing.T) {
	s := mustGen(t, "", WithProcessArgs("/bin/sh", "-c", "x"), WithProcessCwd("/work"),
		WithEnv([]string{"A=1", "PATH=/bin"}), WithEnv([]string{"A=2", "B"}), WithTTY, WithNoNewPrivileges,
		WithRlimit("RLIMIT_NOFILE", 4096, 2048), WithRlimit("RLIMIT_NPROC", 10, 10), WithOOMScoreAdj(-500))
	p := s.Process
	if !reflect.DeepEqual(p.Args, []string{"/bin/sh", "-c", "x"}) || p.Cwd != "/work" {
		t.Errorf("args %v cwd %q", p.Args, p.Cwd)
	}
	if !reflect.DeepEqual(p.Env, []string{"PATH=/bin", "A=2", "B", "TERM=xterm"}) {
		t.Errorf("env %v", p.Env)
	}
	if !p.Terminal || !p.NoNewPrivileges {
		t.Errorf("terminal %v nnp %v", p.Terminal, p.NoNewPrivileges)
	}
	if !reflect.DeepEqual(p.Rlimits, []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 4096, Soft: 2048}, {Type: "RLIMIT_NPROC", Hard: 10, Soft: 10}}) {
		t.Errorf("rlimits %+v", p.Rlimits)
	}
	if p.OOMScoreAdj == nil || *p.OOMScoreAdj != -500 {
		t.Errorf("oom %v", p.OOMScoreAdj)
	}
	s = mustGen(t, "", WithNoNewPrivileges, WithNewPrivileges)
	if s.Process.NoNewPrivileges {
		t.Error("WithNewPrivileges did not clear no_new_privs")
	}
}

func TestOptionErrors(t *testing.T) {
	for name, o := range map[string]SpecOpts{
		"cwd":        WithProcessCwd("rel"),
		"env":        WithEnv([]string{"=x"}),
		"rlimit":     WithRlimit("RLIMIT_NOFILE", 1, 2),
		"rlimittype": WithRlimit("NOFILE", 1, 1),
		"oom":        WithOOMScoreAdj(1001),
		"mem":        WithMemoryLimit(1 << 63),
		"mem0":       WithMemoryLimit(0),
		"cpus":       WithCPUs(-1),
		"cpusnan":    WithCPUs(0.001),
		"pids":       WithPidsLimit(0),
		"cgroup":     WithCgroup(""),
		"hostname":   WithHostname(strings.Repeat("h", 65)),
		"ns":         WithLinuxNamespace(specs.LinuxNamespace{Type: "bogus"}),
		"nspath":     WithLinuxNamespace(specs.LinuxNamespace{Type: "network", Path: "rel"}),
		"mount":      WithMounts([]specs.Mount{{Source: "/x"}}),
		"uidgid":     WithUIDGID(1<<31, 0),
		"uidgid2":    WithUIDGID(0, 1<<32-1),
		"userid":     WithUserID(1 << 31),
	} {
		_, err := gen(t, "", o)
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: got %v, want InvalidArgument", name, err)
		}
	}
}

func TestResourceOptions(t *testing.T) {
	s := mustGen(t, "", WithMemoryLimit(64<<20), WithCPUs(1.5), WithCPUShares(512), WithPidsLimit(100), WithCgroup("/custom/path"))
	r := s.Linux.Resources
	if *r.Memory.Limit != 64<<20 || *r.CPU.Quota != 150000 || *r.CPU.Period != 100000 || *r.CPU.Shares != 512 || *r.Pids.Limit != 100 {
		t.Errorf("resources %+v", r)
	}
	if s.Linux.CgroupsPath != "/custom/path" {
		t.Errorf("cgroup %q", s.Linux.CgroupsPath)
	}
	if len(r.Devices) != len(defaultDevices()) {
		t.Error("resource options dropped device rules")
	}
}

func TestMountsAndNamespaces(t *testing.T) {
	shm := specs.Mount{Destination: "/dev/shm/", Type: "tmpfs", Source: "shm", Options: []string{"size=1g"}}
	data := specs.Mount{Destination: "/data", Type: "bind", Source: "/srv", Options: []string{"rbind", "ro"}}
	s := mustGen(t, "", WithMounts([]specs.Mount{shm, data}),
		WithHostNamespace(specs.NetworkNamespace),
		WithLinuxNamespace(specs.LinuxNamespace{Type: specs.IPCNamespace, Path: "/proc/1/ns/ipc"}),
		WithLinuxNamespace(specs.LinuxNamespace{Type: specs.CgroupNamespace}),
		WithHostname("web"), WithAnnotations(map[string]string{"a": "1"}), WithAnnotations(map[string]string{"a": "2", "b": "3"}))
	if len(s.Mounts) != len(defaultMounts())+1 {
		t.Fatalf("mounts %v", s.Mounts)
	}
	if !reflect.DeepEqual(s.Mounts[3], shm) || !reflect.DeepEqual(s.Mounts[len(s.Mounts)-1], data) {
		t.Errorf("mounts %+v", s.Mounts)
	}
	want := []specs.LinuxNamespace{{Type: "pid"}, {Type: "ipc", Path: "/proc/1/ns/ipc"}, {Type: "uts"}, {Type: "mount"}, {Type: "cgroup"}}
	if !reflect.DeepEqual(s.Linux.Namespaces, want) {
		t.Errorf("namespaces %+v", s.Linux.Namespaces)
	}
	if s.Hostname != "web" || !reflect.DeepEqual(s.Annotations, map[string]string{"a": "2", "b": "3"}) {
		t.Errorf("hostname %q annotations %v", s.Hostname, s.Annotations)
	}
}

func TestPrivilegedAndReadonly(t *testing.T) {
	s := mustGen(t, "", WithSeccompDefault, WithPrivileged, WithReadonlyRootfs)
	c := s.Process.Capabilities
	if !slices.Contains(c.Bounding, "CAP_SYS_ADMIN") || !reflect.DeepEqual(c.Bounding, c.Effective) || !reflect.DeepEqual(c.Bounding, c.Permitted) {
		t.Errorf("caps %+v", c)
	}
	if len(c.Inheritable) != 0 || len(c.Ambient) != 0 {
		t.Error("privileged sets inheritable or ambient capabilities")
	}
	if s.Linux.MaskedPaths != nil || s.Linux.ReadonlyPaths != nil || s.Linux.Seccomp != nil {
		t.Error("privileged keeps masks or seccomp")
	}
	if !reflect.DeepEqual(s.Linux.Resources.Devices, []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}) {
		t.Errorf("devices %+v", s.Linux.Resources.Devices)
	}
	for _, m := range s.Mounts {
		if m.Type == "sysfs" && slices.Contains(m.Options, "ro") {
			t.Error("/sys still read-only")
		}
	}
	if !s.Root.Readonly {
		t.Error("root not read-only")
	}
	// The default set of mounts is not shared between specs.
	if d := mustGen(t, ""); !slices.Contains(d.Mounts[5].Options, "ro") {
		t.Error("WithPrivileged changed the defaults of later specs")
	}
}

// TestSeccompDefault checks the default profile is moby's, converted for
// the spec's capabilities and this architecture by the library itself,
// and what that means for a few calls.
func TestSeccompDefault(t *testing.T) {
	s := mustGen(t, "", WithSeccompDefault)
	p := s.Linux.Seccomp
	want, err := seccomp.GetDefaultProfile(s)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("profile differs from the library's for the same spec:\n%+v\nwant\n%+v", p, want)
	}
	if p.DefaultAction != specs.ActErrno || p.DefaultErrnoRet == nil || *p.DefaultErrnoRet != 1 {
		t.Fatalf("default action %s errno %v, want EPERM", p.DefaultAction, p.DefaultErrnoRet)
	}
	if runtime.GOARCH == "amd64" && !reflect.DeepEqual(p.Architectures, []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}) {
		t.Errorf("architectures %v: the compat modes must be covered", p.Architectures)
	}
	allowed := func(p *specs.LinuxSeccomp) map[string]bool {
		m := map[string]bool{}
		for _, sc := range p.Syscalls {
			if sc.Action == specs.ActAllow && len(sc.Args) == 0 {
				for _, n := range sc.Names {
					m[n] = true
				}
			}
		}
		return m
	}
	plain := allowed(p)
	for _, n := range []string{"read", "write", "execve", "openat", "exit_group", "futex"} {
		if !plain[n] {
			t.Errorf("%s not allowed", n)
		}
	}
	for _, n := range []string{"mount", "unshare", "setns", "bpf", "init_module", "keyctl", "clone", "clone3", "io_uring_setup"} {
		if plain[n] {
			t.Errorf("%s allowed unconditionally without the capability", n)
		}
	}
	admin, err := DefaultSeccompProfile(&specs.LinuxCapabilities{Bounding: []string{"CAP_SYS_ADMIN"}})
	if err != nil {
		t.Fatal(err)
	}
	if a := allowed(admin); !a["mount"] || !a["unshare"] || !a["clone"] {
		t.Error("mount, unshare or clone not allowed with CAP_SYS_ADMIN")
	}
	if _, err := DefaultSeccompProfile(nil); err != nil {
		t.Errorf("no capabilities: %v", err)
	}
	s = mustGen(t, "", WithSeccompDefault, WithSeccompUnconfined)
	if s.Linux.Seccomp != nil {
		t.Error("WithSeccompUnconfined kept the profile")
	}
}

func TestValidate(t *testing.T) {
	ok := func() *Spec {
		s := mustGen(t, "", WithProcessArgs("/bin/true"))
		return s
	}
	cases := map[string]func(*Spec){
		"process":          func(s *Spec) { s.Process = nil },
		"process.args":     func(s *Spec) { s.Process.Args = nil },
		"process.cwd":      func(s *Spec) { s.Process.Cwd = "rel" },
		"root.path":        func(s *Spec) { s.Root.Path = "" },
		"mounts[0]":        func(s *Spec) { s.Mounts[0].Destination = "" },
		"linux.namespaces": func(s *Spec) { s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "bogus"}) },
		"process.user.uid": func(s *Spec) { s.Process.User.UID = 1 << 31 },
		"additionalGids":   func(s *Spec) { s.Process.User.AdditionalGids = []uint32{1 << 31} },
	}
	for field, breakIt := range cases {
		s := ok()
		breakIt(s)
		err := Validate(s)
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: got %v", field, err)
		}
	}
	s := ok()
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "pid"})
	if err := Validate(s); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("repeated namespace: %v", err)
	}
	if err := Validate(nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Error("nil spec validates")
	}
}

// writeRootfs makes a root filesystem with /etc/passwd and /etc/group.
func writeRootfs(t *testing.T, passwd, group string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if passwd != "" {
		if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(passwd), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if group != "" {
		if err := os.WriteFile(filepath.Join(root, "etc/group"), []byte(group), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const (
	testPasswd = "root:x:0:0:root:/root:/bin/sh\n" +
		"app:x:1000:1000::/home/app:/bin/sh\n" +
		"broken:x::0::/:/bin/sh\n" + // must never resolve to root
		"other:x:1001:1001::/:/bin/sh\n"
	testGroup = "root:x:0:\nwheel:x:10:root\napp:x:1000:app\nextra:x:2000:app,other\nmore:x:3000:other,app\nstaff:x:50:\n"
)

func TestWithUser(t *testing.T) {
	root := writeRootfs(t, testPasswd, testGroup)
	cases := []struct {
		user string
		want specs.User
	}{
		{"app", specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{2000, 3000}}},
		{"1000", specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{2000, 3000}}},
		{"app:staff", specs.User{UID: 1000, GID: 50, AdditionalGids: []uint32{1000, 2000, 3000}}},
		{"1000:50", specs.User{UID: 1000, GID: 50, AdditionalGids: []uint32{1000, 2000, 3000}}},
		{"1000:staff", specs.User{UID: 1000, GID: 50, AdditionalGids: []uint32{1000, 2000, 3000}}},
		{"root", specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{10}}},
		{"0", specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{10}}},
		{"4242", specs.User{UID: 4242, GID: 0}},
		{"4242:4343", specs.User{UID: 4242, GID: 4343}},
	}
	for _, tc := range cases {
		s, err := gen(t, root, WithUser(tc.user))
		if err != nil {
			t.Errorf("%s: %v", tc.user, err)
			continue
		}
		if !reflect.DeepEqual(s.Process.User, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.user, s.Process.User, tc.want)
		}
	}
	for _, user := range []string{"nobody", "broken", "app:nogroup", "ghost:0"} {
		_, err := gen(t, root, WithUser(user))
		if !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("%s: got %v, want NotFound", user, err)
		}
	}
	for _, user := range []string{"-1", "4294967296", "2147483648", "app:-5", "0:4294967295"} {
		_, err := gen(t, root, WithUser(user))
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), user) {
			t.Errorf("%s: got %v, want InvalidArgument naming it", user, err)
		}
	}
	// Replacing a user replaces its groups.
	s := mustGen(t, root, WithUser("app"), WithUser("other"))
	if !reflect.DeepEqual(s.Process.User.AdditionalGids, []uint32{2000, 3000}) || s.Process.User.UID != 1001 {
		t.Errorf("other: %+v", s.Process.User)
	}
	s = mustGen(t, root, WithUser("app"), WithUIDGID(5, 6))
	if !reflect.DeepEqual(s.Process.User, specs.User{UID: 5, GID: 6}) {
		t.Errorf("WithUIDGID: %+v", s.Process.User)
	}
}

func TestWithUsernameUserIDAdditionalGIDs(t *testing.T) {
	root := writeRootfs(t, testPasswd, testGroup)
	s := mustGen(t, root, WithUsername("app"))
	if s.Process.User.UID != 1000 || !reflect.DeepEqual(s.Process.User.AdditionalGids, []uint32{2000, 3000}) {
		t.Errorf("WithUsername: %+v", s.Process.User)
	}
	if _, err := gen(t, root, WithUsername("1000")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("WithUsername(\"1000\") read a number: %v", err)
	}
	s = mustGen(t, root, WithUserID(1000))
	if s.Process.User.GID != 1000 || !reflect.DeepEqual(s.Process.User.AdditionalGids, []uint32{2000, 3000}) {
		t.Errorf("WithUserID: %+v", s.Process.User)
	}
	s = mustGen(t, root, WithUIDGID(1000, 50), WithAdditionalGIDs("app"))
	if !reflect.DeepEqual(s.Process.User, specs.User{UID: 1000, GID: 50, AdditionalGids: []uint32{1000, 2000, 3000}}) {
		t.Errorf("WithAdditionalGIDs: %+v", s.Process.User)
	}
	if _, err := gen(t, root, WithAdditionalGIDs("ghost")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown user: %v", err)
	}
}

func TestUserNeedsRootfs(t *testing.T) {
	_, err := gen(t, "", WithUser("0"))
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("got %v", err)
	}
}

func TestUserWithoutFiles(t *testing.T) {
	root := writeRootfs(t, "", "")
	s := mustGen(t, root, WithUser("1000:1000"))
	if !reflect.DeepEqual(s.Process.User, specs.User{UID: 1000, GID: 1000}) {
		t.Errorf("%+v", s.Process.User)
	}
	if _, err := gen(t, root, WithUser("app")); !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), `"app"`) {
		t.Errorf("name without passwd: %v", err)
	}
}

func TestRootfsSymlinks(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "passwd"), []byte("evil:x:0:0::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := writeRootfs(t, "", testGroup)
	// An absolute link is resolved inside the root, not on the host.
	if err := os.Symlink(filepath.Join(outside, "passwd"), filepath.Join(root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	if _, err := gen(t, root, WithUser("evil")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("absolute symlink escaped: %v", err)
	}
	// A relative link that climbs with .. stays at the root too.
	root2 := writeRootfs(t, "", "")
	rel, _ := filepath.Rel(filepath.Join(root2, "etc"), filepath.Join(outside, "passwd"))
	if err := os.Symlink(rel, filepath.Join(root2, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	if _, err := gen(t, root2, WithUser("evil")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("relative symlink escaped: %v", err)
	}
	// Links inside the root work, absolute ones resolved against it.
	root3 := writeRootfs(t, "", "")
	if err := os.MkdirAll(filepath.Join(root3, "usr/lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root3, "usr/lib/passwd"), []byte(testPasswd), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/lib/passwd", filepath.Join(root3, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../etc/../../../etc", filepath.Join(root3, "usr/etc")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/etc/passwd", filepath.Join(root3, "etc/group")); err != nil {
		t.Fatal(err)
	}
	s := mustGen(t, root3, WithUser("app"))
	if s.Process.User.UID != 1000 {
		t.Errorf("%+v", s.Process.User)
	}
	// A loop is an error, not a hang.
	root4 := writeRootfs(t, "", "")
	if err := os.Symlink("/etc/passwd", filepath.Join(root4, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	if _, err := gen(t, root4, WithUser("app")); err == nil || errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("loop: %v", err)
	}
	// A directory is refused.
	root5 := writeRootfs(t, "", "")
	if err := os.Mkdir(filepath.Join(root5, "etc/passwd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := gen(t, root5, WithUser("app")); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("directory: %v", err)
	}
}

type fakeImage struct {
	cfg ocispec.ImageConfig
}

func (f fakeImage) Name() string { return "example.com/app:1" }
func (f fakeImage) Config(context.Context) (ocispec.Image, error) {
	return ocispec.Image{Config: f.cfg}, nil
}

func TestWithImageConfig(t *testing.T) {
	root := writeRootfs(t, testPasswd, testGroup)
	img := fakeImage{ocispec.ImageConfig{
		Env:        []string{"PATH=/app/bin:/bin", "LANG=C.UTF-8"},
		Entrypoint: []string{"/entry"},
		Cmd:        []string{"serve", "--port=80"},
		WorkingDir: "/app",
		User:       "app",
	}}
	s := mustGen(t, root, WithImageConfig(img), WithEnv([]string{"LANG=de_DE"}))
	p := s.Process
	if !reflect.DeepEqual(p.Args, []string{"/entry", "serve", "--port=80"}) || p.Cwd != "/app" {
		t.Errorf("args %v cwd %s", p.Args, p.Cwd)
	}
	if !reflect.DeepEqual(p.Env, []string{"PATH=/app/bin:/bin", "LANG=de_DE"}) {
		t.Errorf("env %v", p.Env)
	}
	if !reflect.DeepEqual(p.User, specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{2000, 3000}}) {
		t.Errorf("user %+v", p.User)
	}
	s = mustGen(t, root, WithImageConfigArgs(img, []string{"check"}))
	if !reflect.DeepEqual(s.Process.Args, []string{"/entry", "check"}) {
		t.Errorf("args %v", s.Process.Args)
	}
	// No user: root, with root's supplementary groups.
	s = mustGen(t, root, WithImageConfig(fakeImage{ocispec.ImageConfig{Cmd: []string{"/bin/sh"}}}))
	if !reflect.DeepEqual(s.Process.User, specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{10}}) || s.Process.Cwd != "/" {
		t.Errorf("user %+v cwd %s", s.Process.User, s.Process.Cwd)
	}
	if !reflect.DeepEqual(s.Process.Env, []string{DefaultPathEnv}) {
		t.Errorf("env %v", s.Process.Env)
	}
	for name, cfg := range map[string]ocispec.ImageConfig{
		"noargs":  {},
		"relwd":   {Cmd: []string{"x"}, WorkingDir: "app"},
		"baduser": {Cmd: []string{"x"}, User: "4294967296"},
	} {
		if _, err := gen(t, root, WithImageConfig(fakeImage{cfg})); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := gen(t, root, WithImageConfig(fakeImage{ocispec.ImageConfig{Cmd: []string{"x"}, User: "ghost"}})); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown image user: %v", err)
	}
}
