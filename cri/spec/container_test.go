package spec

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/client/oci"
	"github.com/hullrt/hull/core/containers"
)

func TestContainerArgs(t *testing.T) {
	img := ocispec.ImageConfig{Entrypoint: []string{"/ep"}, Cmd: []string{"cmd1", "cmd2"}}
	for _, tc := range []struct {
		name          string
		command, args []string
		img           ocispec.ImageConfig
		want          []string
	}{
		{"image", nil, nil, img, []string{"/ep", "cmd1", "cmd2"}},
		{"command drops entrypoint and cmd", []string{"/bin/x"}, nil, img, []string{"/bin/x"}},
		{"command and args", []string{"/bin/x"}, []string{"a"}, img, []string{"/bin/x", "a"}},
		{"args replace cmd", nil, []string{"a", "b"}, img, []string{"/ep", "a", "b"}},
		{"empty entrypoint", nil, nil, ocispec.ImageConfig{Entrypoint: []string{""}, Cmd: []string{"/c"}}, []string{"/c"}},
		{"only cmd", nil, nil, ocispec.ImageConfig{Cmd: []string{"/c", "x"}}, []string{"/c", "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &runtime.ContainerConfig{Command: tc.command, Args: tc.args}
			got, err := ContainerArgs(cfg, tc.img)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %q want %q", got, tc.want)
			}
			if len(tc.img.Entrypoint) > 0 && len(got) > 0 && &got[0] == &tc.img.Entrypoint[0] {
				t.Fatal("arguments share the image's entrypoint")
			}
		})
	}
	_, err := ContainerArgs(&runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "x"}}, ocispec.ImageConfig{})
	wantErr(t, err, errInvalid, `"x"`)
	_, err = ContainerArgs(&runtime.ContainerConfig{Args: []string{""}}, ocispec.ImageConfig{Entrypoint: []string{""}})
	wantErr(t, err, errInvalid)
}

func TestContainerProcess(t *testing.T) {
	c := testContainer()
	c.Config.Envs = []*runtime.KeyValue{{Key: "A", Value: []byte("config")}, {Key: "B", Value: []byte("b")}}
	c.Config.Tty = true
	c.Config.Stdin = true
	s := mustContainer(t, c, Options{})
	p := s.Process
	if !reflect.DeepEqual(p.Args, []string{"/bin/sh", "-c", "true"}) {
		t.Errorf("args %q", p.Args)
	}
	wantEnv := []string{"PATH=/usr/bin", "TERM=xterm", "HOSTNAME=web-host", "A=config", "B=b"}
	if !reflect.DeepEqual(p.Env, wantEnv) {
		t.Errorf("env %q want %q", p.Env, wantEnv)
	}
	if p.Cwd != "/work" || !p.Terminal {
		t.Errorf("cwd %q terminal %v", p.Cwd, p.Terminal)
	}
	if p.Rlimits != nil || p.ApparmorProfile != "" || s.Linux.Seccomp != nil {
		t.Errorf("generator defaults kept: rlimits %v apparmor %q seccomp %v", p.Rlimits, p.ApparmorProfile, s.Linux.Seccomp != nil)
	}
	if s.Hostname != "" {
		t.Errorf("hostname %q: a container must not rename its pod", s.Hostname)
	}
	if p.User.UID != 0 || p.User.GID != 0 || !reflect.DeepEqual(p.User.AdditionalGids, []uint32{10, 44}) {
		t.Errorf("user %+v", p.User)
	}

	c = testContainer()
	c.Config.WorkingDir = "/cfg"
	if s := mustContainer(t, c, Options{}); s.Process.Cwd != "/cfg" || s.Process.Terminal {
		t.Errorf("cwd %q terminal %v", s.Process.Cwd, s.Process.Terminal)
	}
	c.Config.WorkingDir = "rel"
	_, err := containerSpec(t, c, Options{}, cgroup1)
	wantErr(t, err, errInvalid, "rel")
	c = testContainer()
	c.Config.Envs = []*runtime.KeyValue{{Key: "", Value: []byte("x")}}
	_, err = containerSpec(t, c, Options{}, cgroup1)
	wantErr(t, err, errInvalid)
}

// Two containers of one image must not share the image's env slice: an
// append into spare capacity would give one container the other's
// variables (CVE-2021-21334).
func TestEnvNotShared(t *testing.T) {
	env := make([]string, 1, 16)
	env[0] = "IMG=1"
	img := appImage()
	img.Env = env
	a, b := testContainer(), testContainer()
	a.Image, b.Image = img, img
	a.Config.Envs = []*runtime.KeyValue{{Key: "SECRET", Value: []byte("a")}}
	b.Config.Envs = []*runtime.KeyValue{{Key: "OTHER", Value: []byte("b")}}
	sa := mustContainer(t, a, Options{})
	sb := mustContainer(t, b, Options{})
	if slices.Contains(sb.Process.Env, "SECRET=a") || slices.Contains(sa.Process.Env, "OTHER=b") {
		t.Fatalf("env leaked: %q / %q", sa.Process.Env, sb.Process.Env)
	}
	if got := env[:cap(env)][1]; got != "" {
		t.Fatalf("image env backing array written: %q", got)
	}
	if &sa.Process.Env[0] == &sb.Process.Env[0] {
		t.Fatal("specs share an env slice")
	}
	sa.Process.Env[0] = "CHANGED=1"
	if sb.Process.Env[0] == "CHANGED=1" || img.Env[0] != "IMG=1" {
		t.Fatal("env slices are shared")
	}
}

func TestContainerUser(t *testing.T) {
	i64 := func(v int64) *runtime.Int64Value { return &runtime.Int64Value{Value: v} }
	for _, tc := range []struct {
		name      string
		sc        func(*runtime.LinuxContainerSecurityContext)
		imageUser string
		uid, gid  uint32
		groups    []uint32
	}{
		{"image root", nil, "", 0, 0, []uint32{10, 44}},
		{"image user", nil, "app", 1000, 1000, []uint32{29, 44}},
		{"image user and group", nil, "app:10", 1000, 10, []uint32{29, 44, 1000}},
		{"run_as_user", func(s *runtime.LinuxContainerSecurityContext) { s.RunAsUser = i64(1000) }, "nobody", 1000, 1000, []uint32{29, 44}},
		{"run_as_user unknown", func(s *runtime.LinuxContainerSecurityContext) { s.RunAsUser = i64(4321) }, "", 4321, 0, nil},
		{"run_as_user and group", func(s *runtime.LinuxContainerSecurityContext) { s.RunAsUser = i64(1000); s.RunAsGroup = i64(3000) }, "", 1000, 3000, []uint32{29, 44, 1000}},
		{"run_as_username", func(s *runtime.LinuxContainerSecurityContext) { s.RunAsUsername = "app" }, "", 1000, 1000, []uint32{29, 44}},
		{"supplemental merge", func(s *runtime.LinuxContainerSecurityContext) {
			s.RunAsUser = i64(1000)
			s.SupplementalGroups = []int64{5000, 29}
		}, "", 1000, 1000, []uint32{29, 44, 5000}},
		{"supplemental strict", func(s *runtime.LinuxContainerSecurityContext) {
			s.RunAsUser = i64(1000)
			s.SupplementalGroups = []int64{5000}
			s.SupplementalGroupsPolicy = runtime.SupplementalGroupsPolicy_Strict
		}, "", 1000, 1000, []uint32{5000}},
		{"strict without groups", func(s *runtime.LinuxContainerSecurityContext) {
			s.SupplementalGroupsPolicy = runtime.SupplementalGroupsPolicy_Strict
		}, "app", 1000, 1000, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testContainer()
			c.Image.User = tc.imageUser
			if tc.sc != nil {
				tc.sc(c.Config.Linux.SecurityContext)
			}
			u := mustContainer(t, c, Options{}).Process.User
			if u.UID != tc.uid || u.GID != tc.gid || !reflect.DeepEqual(u.AdditionalGids, tc.groups) {
				t.Fatalf("user %d:%d groups %v, want %d:%d %v", u.UID, u.GID, u.AdditionalGids, tc.uid, tc.gid, tc.groups)
			}
		})
	}
	for _, tc := range []struct {
		name  string
		sc    func(*runtime.LinuxContainerSecurityContext)
		class error
		names []string
	}{
		{"user and username", func(s *runtime.LinuxContainerSecurityContext) { s.RunAsUser = i64(1); s.RunAsUsername = "app" }, errInvalid, []string{"app"}},
		{"group alone", func(s *runtime.LinuxContainerSecurityContext) { s.RunAsGroup = i64(5) }, errInvalid, []string{"run_as_group"}},
		{"negative uid", func(s *runtime.LinuxContainerSecurityContext) { s.RunAsUser = i64(-1) }, errInvalid, []string{"-1"}},
		{"huge gid", func(s *runtime.LinuxContainerSecurityContext) { s.RunAsUser = i64(1); s.RunAsGroup = i64(1 << 32) }, errInvalid, []string{"4294967296"}},
		{"bad group", func(s *runtime.LinuxContainerSecurityContext) { s.SupplementalGroups = []int64{-3} }, errInvalid, []string{"-3"}},
		{"bad policy", func(s *runtime.LinuxContainerSecurityContext) { s.SupplementalGroupsPolicy = 7 }, errInvalid, []string{"7"}},
		{"unknown user", func(s *runtime.LinuxContainerSecurityContext) { s.RunAsUsername = "ghost" }, errdefs.ErrNotFound, []string{"ghost"}},
		{"username with colon", func(s *runtime.LinuxContainerSecurityContext) { s.RunAsUsername = "a:b" }, errInvalid, []string{"a:b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testContainer()
			tc.sc(c.Config.Linux.SecurityContext)
			_, err := containerSpec(t, c, Options{}, cgroup1)
			wantErr(t, err, tc.class, tc.names...)
		})
	}
}

func TestParseCapability(t *testing.T) {
	for in, want := range map[string]string{
		"NET_ADMIN": "CAP_NET_ADMIN", "cap_chown": "CAP_CHOWN", "CAP_SYS_ADMIN": "CAP_SYS_ADMIN",
		"all": "ALL", "ALL": "ALL", "checkpoint_restore": "CAP_CHECKPOINT_RESTORE",
	} {
		if got, err := ParseCapability(in); err != nil || got != want {
			t.Errorf("%q: got %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "CAP_", "NET_ADMINS", "CAP_CAP_CHOWN", "ALLL", "cap all"} {
		_, err := ParseCapability(bad)
		wantErr(t, err, errInvalid, bad)
	}
}

func FuzzParseCapability(f *testing.F) {
	for _, s := range []string{"NET_ADMIN", "cap_chown", "ALL", "", "CAP_", "\x00", " CAP_KILL "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseCapability(s)
		if err != nil {
			if !strings.Contains(err.Error(), "unknown capability") {
				t.Fatalf("%q: %v", s, err)
			}
			return
		}
		if got != capAll && !slices.Contains(knownCapabilities(), got) {
			t.Fatalf("%q parsed to unknown %q", s, got)
		}
		if again, err := ParseCapability(got); err != nil || again != got {
			t.Fatalf("%q -> %q does not parse to itself: %q %v", s, got, again, err)
		}
	})
}

func TestCapabilities(t *testing.T) {
	def := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID",
		"CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}
	without := func(set []string, drop ...string) []string {
		return slices.DeleteFunc(slices.Clone(set), func(c string) bool { return slices.Contains(drop, c) })
	}
	all := boundingCapabilities()
	for _, tc := range []struct {
		name      string
		add, drop []string
		want      []string
	}{
		{"default", nil, nil, def},
		{"add", []string{"NET_ADMIN", "CAP_SYS_TIME"}, nil, append(slices.Clone(def), "CAP_NET_ADMIN", "CAP_SYS_TIME")},
		{"drop", nil, []string{"chown", "KILL"}, without(def, "CAP_CHOWN", "CAP_KILL")},
		{"drop all add one", []string{"NET_BIND_SERVICE"}, []string{"ALL"}, []string{"CAP_NET_BIND_SERVICE"}},
		{"add all drop one", []string{"ALL"}, []string{"SYS_ADMIN"}, without(all, "CAP_SYS_ADMIN")},
		{"add and drop same", []string{"NET_ADMIN"}, []string{"NET_ADMIN"}, def},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testContainer()
			c.Config.Linux.SecurityContext.Capabilities = &runtime.Capability{AddCapabilities: tc.add, DropCapabilities: tc.drop}
			caps := mustContainer(t, c, Options{}).Process.Capabilities
			for set, got := range map[string][]string{"bounding": caps.Bounding, "effective": caps.Effective, "permitted": caps.Permitted} {
				if !reflect.DeepEqual(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
					t.Errorf("%s %v, want %v", set, got, tc.want)
				}
			}
			if len(caps.Inheritable) != 0 || len(caps.Ambient) != 0 {
				t.Errorf("inheritable %v ambient %v", caps.Inheritable, caps.Ambient)
			}
		})
	}
	for _, capErr := range []*runtime.Capability{
		{AddCapabilities: []string{"NET_ADMINS"}},
		{DropCapabilities: []string{"BOGUS"}},
		{AddAmbientCapabilities: []string{"NET_BIND_SERVICE"}},
	} {
		c := testContainer()
		c.Config.Linux.SecurityContext.Capabilities = capErr
		_, err := containerSpec(t, c, Options{}, cgroup1)
		wantErr(t, err, errInvalid)
	}
}

// An option placed before the CRI options that fills the inheritable and
// ambient sets must not survive them.
func TestNoInheritableCapabilities(t *testing.T) {
	c := testContainer()
	c.Config.Linux.SecurityContext.Capabilities = &runtime.Capability{AddCapabilities: []string{"SYS_ADMIN"}}
	opts, err := containerOpts(c, Options{}, cgroup1)
	if err != nil {
		t.Fatal(err)
	}
	dirty := func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		s.Process.Capabilities.Inheritable = []string{"CAP_SYS_ADMIN"}
		s.Process.Capabilities.Ambient = []string{"CAP_SYS_ADMIN"}
		return nil
	}
	s, err := generate(t, userRoot(t), "c1", append([]oci.SpecOpts{oci.WithPrivileged, dirty}, opts...))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Process.Capabilities.Inheritable) != 0 || len(s.Process.Capabilities.Ambient) != 0 {
		t.Fatalf("inheritable %v ambient %v", s.Process.Capabilities.Inheritable, s.Process.Capabilities.Ambient)
	}
}

func TestPrivileged(t *testing.T) {
	c := testContainer()
	c.Config.Linux.SecurityContext.Privileged = true
	c.Config.Linux.SecurityContext.Seccomp = &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}
	c.Config.Linux.SecurityContext.MaskedPaths = []string{"/proc/kcore"}
	_, err := containerSpec(t, c, Options{}, cgroup1)
	wantErr(t, err, errInvalid, "sb1")

	c.Sandbox.Config.Linux.SecurityContext.Privileged = true
	s := mustContainer(t, c, Options{})
	if !reflect.DeepEqual(s.Process.Capabilities.Bounding, boundingCapabilities()) {
		t.Errorf("bounding %v", s.Process.Capabilities.Bounding)
	}
	if len(s.Process.Capabilities.Inheritable)+len(s.Process.Capabilities.Ambient) != 0 {
		t.Error("inheritable or ambient capabilities")
	}
	if s.Linux.Seccomp != nil || s.Process.ApparmorProfile != "" {
		t.Error("privileged container is confined")
	}
	if len(s.Linux.MaskedPaths) != 0 || len(s.Linux.ReadonlyPaths) != 0 {
		t.Errorf("masked %v readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	for _, m := range s.Mounts {
		if m.Type == "sysfs" && slices.Contains(m.Options, "ro") {
			t.Errorf("/sys read-only: %v", m.Options)
		}
	}
	if d := s.Linux.Resources.Devices; len(d) != 1 || !d[0].Allow || d[0].Access != "rwm" {
		t.Errorf("device rules %+v", d)
	}
	found := false
	for _, d := range s.Linux.Devices {
		if d.Path == "/dev/null" && d.Type == "c" && d.Major == 1 && d.Minor == 3 {
			found = true
		}
		if strings.HasPrefix(d.Path, "/dev/pts/") || d.Path == "/dev/console" {
			t.Errorf("host device %s passed", d.Path)
		}
	}
	if !found {
		t.Error("host /dev/null not among the devices")
	}
}

func TestSeccomp(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	if err := os.WriteFile(good, []byte(`{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"defaultAction":`), 0o644); err != nil {
		t.Fatal(err)
	}
	type kind int
	const (
		none kind = iota
		dflt
		custom
	)
	for _, tc := range []struct {
		name   string
		sp     *runtime.SecurityProfile
		path   string
		unset  string
		priv   bool
		want   kind
		class  error
		naming string
	}{
		{"unset unconfined", nil, "", "", false, none, nil, ""},
		{"unset runtime default", nil, "", "runtime/default", false, dflt, nil, ""},
		{"runtime default", &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}, "", "", false, dflt, nil, ""},
		{"unconfined", &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Unconfined}, "", "runtime/default", false, none, nil, ""},
		{"localhost", &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: good}, "", "", false, custom, nil, ""},
		{"deprecated path", nil, "localhost/" + good, "", false, custom, nil, ""},
		{"deprecated docker default", nil, "docker/default", "", false, dflt, nil, ""},
		{"privileged", &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}, "", "", true, none, nil, ""},
		{"missing file", &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: dir + "/nope.json"}, "", "", false, none, errdefs.ErrNotFound, "nope.json"},
		{"bad json", &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: bad}, "", "", false, none, errInvalid, "bad.json"},
		{"relative", &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: "prof.json"}, "", "", false, none, errInvalid, "prof.json"},
		{"no ref", &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost}, "", "", false, none, errInvalid, "localhost_ref"},
		{"ref without localhost", &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault, LocalhostRef: good}, "", "", false, none, errInvalid, good},
		{"bad type", &runtime.SecurityProfile{ProfileType: 9}, "", "", false, none, errInvalid, "9"},
		{"bad deprecated", nil, "whatever", "", false, none, errInvalid, "whatever"},
		{"bad unset", nil, "", "strict", false, none, errInvalid, "strict"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testContainer()
			sc := c.Config.Linux.SecurityContext
			sc.Seccomp, sc.SeccompProfilePath, sc.Privileged = tc.sp, tc.path, tc.priv //nolint:staticcheck
			c.Sandbox.Config.Linux.SecurityContext.Privileged = tc.priv
			s, err := containerSpec(t, c, Options{UnsetSeccompProfile: tc.unset}, cgroup1)
			if tc.class != nil {
				wantErr(t, err, tc.class, tc.naming)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := s.Linux.Seccomp
			switch tc.want {
			case none:
				if got != nil {
					t.Fatalf("seccomp %v", got.DefaultAction)
				}
			case dflt:
				want, err := oci.DefaultSeccompProfile(s.Process.Capabilities)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatal("not the default profile for the spec's capabilities")
				}
			case custom:
				if got == nil || got.DefaultAction != specs.ActErrno || len(got.Syscalls) != 1 || !reflect.DeepEqual(got.Syscalls[0].Names, []string{"read", "write"}) {
					t.Fatalf("profile %+v", got)
				}
			}
		})
	}
}

func FuzzParseProfileName(f *testing.F) {
	for _, s := range []string{"", "runtime/default", "docker/default", "unconfined", "localhost/", "localhost//x.json", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		typ, ref, ok, err := ParseProfileName(s)
		switch {
		case err != nil:
			if ok || s == "" {
				t.Fatalf("%q: ok with error %v", s, err)
			}
		case !ok:
			if s != "" {
				t.Fatalf("%q: not ok without error", s)
			}
		case typ == runtime.SecurityProfile_Localhost:
			if ref == "" || "localhost/"+ref != s {
				t.Fatalf("%q: ref %q", s, ref)
			}
		default:
			if ref != "" {
				t.Fatalf("%q: ref %q for %v", s, ref, typ)
			}
		}
	})
}

func FuzzLoadSeccompProfile(f *testing.F) {
	f.Add([]byte(`{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"]}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &oci.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}
		p, err := LoadSeccompProfile(data, s)
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Fatalf("error %v is not InvalidArgument", err)
		}
		if err == nil && p != nil && p.DefaultAction == "" && len(p.Syscalls) == 0 {
			t.Fatal("empty profile returned as a filter")
		}
	})
}

func TestAppArmor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sp      *runtime.SecurityProfile
		old     string
		enabled bool
		want    string
		fail    bool
	}{
		{"disabled default", &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}, "", false, "", false},
		{"disabled unconfined", &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Unconfined}, "", false, "", false},
		{"disabled localhost", &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: "p"}, "", false, "", true},
		{"disabled deprecated localhost", nil, "localhost/p", false, "", true},
		{"enabled localhost", &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: "p"}, "", true, "p", false},
		{"enabled unconfined", nil, "unconfined", true, "unconfined", false},
		{"bad deprecated", nil, "nonsense", false, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testContainer()
			c.Config.Linux.SecurityContext.Apparmor = tc.sp
			c.Config.Linux.SecurityContext.ApparmorProfile = tc.old //nolint:staticcheck
			s, err := containerSpec(t, c, Options{AppArmorEnabled: tc.enabled}, cgroup1)
			if tc.fail {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Process.ApparmorProfile != tc.want {
				t.Fatalf("profile %q want %q", s.Process.ApparmorProfile, tc.want)
			}
		})
	}
}

func TestSELinux(t *testing.T) {
	c := testContainer()
	c.Config.Linux.SecurityContext.SelinuxOptions = &runtime.SELinuxOption{Level: "s0:c1,c2"}
	if s := mustContainer(t, c, Options{}); s.Process.SelinuxLabel != "" {
		t.Fatalf("label %q with SELinux disabled", s.Process.SelinuxLabel)
	}
	_, err := containerSpec(t, c, Options{SELinuxEnabled: true}, cgroup1)
	wantErr(t, err, errdefs.ErrFailedPrecondition, "s0:c1,c2")
}

func TestMaskedPaths(t *testing.T) {
	def := mustContainer(t, testContainer(), Options{DisableProcMount: true}).Linux
	if !slices.Contains(def.MaskedPaths, "/proc/kcore") || !slices.Contains(def.ReadonlyPaths, "/proc/sys") {
		t.Fatalf("defaults %v %v", def.MaskedPaths, def.ReadonlyPaths)
	}
	for _, tc := range []struct {
		name             string
		masked, readonly []string
		disable          bool
		wantM, wantR     []string
	}{
		{"given", []string{"/proc/a"}, []string{"/proc/b"}, false, []string{"/proc/a"}, []string{"/proc/b"}},
		{"unmasked", nil, nil, false, nil, nil},
		{"unmasked but proc mount disabled", nil, nil, true, def.MaskedPaths, def.ReadonlyPaths},
		{"given with proc mount disabled", []string{"/proc/a"}, nil, true, []string{"/proc/a"}, def.ReadonlyPaths},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testContainer()
			c.Config.Linux.SecurityContext.MaskedPaths = tc.masked
			c.Config.Linux.SecurityContext.ReadonlyPaths = tc.readonly
			l := mustContainer(t, c, Options{DisableProcMount: tc.disable}).Linux
			if !slices.Equal(l.MaskedPaths, tc.wantM) || !slices.Equal(l.ReadonlyPaths, tc.wantR) {
				t.Fatalf("masked %v readonly %v, want %v %v", l.MaskedPaths, l.ReadonlyPaths, tc.wantM, tc.wantR)
			}
		})
	}
}

func TestContainerSecurityFlags(t *testing.T) {
	c := testContainer()
	c.Config.Linux.SecurityContext.NoNewPrivs = true
	c.Config.Linux.SecurityContext.ReadonlyRootfs = true
	c.HostsPath = "/sb/hosts"
	s := mustContainer(t, c, Options{})
	if !s.Process.NoNewPrivileges || !s.Root.Readonly {
		t.Fatalf("no_new_privs %v readonly %v", s.Process.NoNewPrivileges, s.Root.Readonly)
	}
	if m := mountAt(s, "/etc/hosts"); m == nil || !slices.Contains(m.Options, "ro") {
		t.Fatalf("/etc/hosts with a read-only root: %+v", m)
	}
	s = mustContainer(t, testContainer(), Options{})
	if s.Process.NoNewPrivileges || s.Root.Readonly {
		t.Fatal("flags set by default")
	}
}

func TestContainerAnnotations(t *testing.T) {
	c := testContainer()
	c.Config.Annotations = map[string]string{"user": "x", AnnotationSandboxID: "forged"}
	c.RuntimeHandler = "runc"
	a := mustContainer(t, c, Options{}).Annotations
	want := map[string]string{
		"user": "x", AnnotationContainerType: "container", AnnotationSandboxID: "sb1", AnnotationContainerName: "app",
		AnnotationImageName: "docker.io/library/busybox:latest", AnnotationSandboxName: "web", AnnotationSandboxNamespace: "default",
		AnnotationSandboxUID: "uid-1", AnnotationRuntimeHandler: "runc",
	}
	if !reflect.DeepEqual(a, want) {
		t.Fatalf("annotations %v\nwant %v", a, want)
	}
}

func mountAt(s *oci.Spec, dst string) *specs.Mount {
	for i := range s.Mounts {
		if s.Mounts[i].Destination == dst {
			return &s.Mounts[i]
		}
	}
	return nil
}

func TestValidateSpecs(t *testing.T) {
	sb := mustSandbox(t, testSandbox(), Options{})
	if err := oci.Validate(sb); err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	c := testContainer()
	c.HostsPath, c.ResolvConfPath, c.HostnamePath, c.ShmPath = "/sb/hosts", "/sb/resolv.conf", "/sb/hostname", "/sb/shm"
	c.Config.Linux.SecurityContext.Seccomp = &runtime.SecurityProfile{}
	s := mustContainer(t, c, Options{})
	if err := oci.Validate(s); err != nil {
		t.Fatalf("container: %v", err)
	}
}
