package spec

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestContainerMounts(t *testing.T) {
	host := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(host, link); err != nil {
		t.Fatal(err)
	}
	img := t.TempDir()
	if err := os.MkdirAll(filepath.Join(img, "sub/dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	imgMount := &runtime.Mount{ContainerPath: "/model", Image: &runtime.ImageSpec{Image: "sha256:abc"}}
	subMount := &runtime.Mount{ContainerPath: "/model-sub", Image: &runtime.ImageSpec{Image: "sha256:abc"}, ImageSubPath: "sub/dir"}
	c := testContainer()
	c.Config.Mounts = []*runtime.Mount{
		{ContainerPath: "/data/deep", HostPath: host, Readonly: true},
		{ContainerPath: "/data", HostPath: link},
		{ContainerPath: "/rro", HostPath: host, Readonly: true, RecursiveReadOnly: true},
		{ContainerPath: "/slave", HostPath: host, Propagation: runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER, MountOptions: []string{"noexec", "nosuid"}},
		{ContainerPath: "/etc/hosts", HostPath: host},
		imgMount, subMount,
	}
	c.ImageMounts = map[*runtime.Mount]string{imgMount: img, subMount: img}
	c.HostsPath, c.HostnamePath, c.ResolvConfPath, c.ShmPath = "/sb/hosts", "/sb/hostname", "/sb/resolv.conf", "/sb/shm"
	c.Volumes = []specs.Mount{
		{Destination: "/vol", Type: "bind", Source: "/state/v1", Options: []string{"rbind", "rprivate", "rw"}},
		{Destination: "/data", Type: "bind", Source: "/state/v2", Options: []string{"rbind", "rprivate", "rw"}},
	}
	s := mustContainer(t, c, Options{})
	want := map[string]specs.Mount{
		"/data":            {Destination: "/data", Type: "bind", Source: host, Options: []string{"rbind", "rprivate", "rw"}},
		"/data/deep":       {Destination: "/data/deep", Type: "bind", Source: host, Options: []string{"rbind", "rprivate", "ro"}},
		"/rro":             {Destination: "/rro", Type: "bind", Source: host, Options: []string{"rbind", "rprivate", "rro"}},
		"/slave":           {Destination: "/slave", Type: "bind", Source: host, Options: []string{"rbind", "rslave", "rw", "noexec", "nosuid"}},
		"/etc/hosts":       {Destination: "/etc/hosts", Type: "bind", Source: host, Options: []string{"rbind", "rprivate", "rw"}},
		"/model":           {Destination: "/model", Type: "bind", Source: img, Options: []string{"rbind", "rprivate", "ro", "nosuid", "nodev"}},
		"/model-sub":       {Destination: "/model-sub", Type: "bind", Source: filepath.Join(img, "sub/dir"), Options: []string{"rbind", "rprivate", "ro", "nosuid", "nodev"}},
		"/etc/hostname":    {Destination: "/etc/hostname", Type: "bind", Source: "/sb/hostname", Options: []string{"rbind", "rprivate", "rw"}},
		"/etc/resolv.conf": {Destination: "/etc/resolv.conf", Type: "bind", Source: "/sb/resolv.conf", Options: []string{"rbind", "rprivate", "rw"}},
		"/dev/shm":         {Destination: "/dev/shm", Type: "bind", Source: "/sb/shm", Options: []string{"rbind", "rprivate", "rw", "nosuid", "nodev", "noexec"}},
		"/vol":             {Destination: "/vol", Type: "bind", Source: "/state/v1", Options: []string{"rbind", "rprivate", "rw"}},
	}
	seen := map[string]int{}
	depth := 0
	for i, m := range s.Mounts {
		seen[m.Destination]++
		if m.Type != "bind" {
			continue
		}
		w, ok := want[m.Destination]
		if !ok {
			t.Errorf("unexpected bind %+v", m)
			continue
		}
		if !reflect.DeepEqual(m, w) {
			t.Errorf("mount %d: %+v\nwant %+v", i, m, w)
		}
		if d := strings.Count(m.Destination, "/"); d < depth {
			t.Errorf("%s after a deeper mount", m.Destination)
		} else {
			depth = d
		}
	}
	for d := range want {
		if seen[d] != 1 {
			t.Errorf("%s mounted %d times", d, seen[d])
		}
	}
	if s.Linux.RootfsPropagation != "rslave" {
		t.Errorf("rootfs propagation %q", s.Linux.RootfsPropagation)
	}
	for _, d := range []string{"/proc", "/dev", "/dev/pts", "/sys"} {
		if seen[d] != 1 {
			t.Errorf("default mount %s: %d", d, seen[d])
		}
	}

	// A /dev of the container's own replaces every default below it.
	c = testContainer()
	c.ShmPath = "/sb/shm"
	c.Config.Mounts = []*runtime.Mount{{ContainerPath: "/dev", HostPath: host}}
	s = mustContainer(t, c, Options{})
	for _, m := range s.Mounts {
		if strings.HasPrefix(m.Destination, "/dev/") && m.Destination != "/dev/shm" {
			t.Errorf("default %s kept under a mounted /dev", m.Destination)
		}
	}

	// Host IPC without a pod shm: the host's /dev/shm.
	c = testContainer()
	c.Sandbox.Config.Linux.SecurityContext.NamespaceOptions.Ipc = runtime.NamespaceMode_NODE
	if m := mountAt(mustContainer(t, c, Options{}), "/dev/shm"); m == nil || m.Source != "/dev/shm" || m.Type != "bind" {
		t.Errorf("/dev/shm with host ipc: %+v", m)
	}
}

func TestContainerMountErrors(t *testing.T) {
	host := t.TempDir()
	imgMount := &runtime.Mount{ContainerPath: "/img", Image: &runtime.ImageSpec{Image: "sha256:abc"}}
	for _, tc := range []struct {
		name   string
		m      *runtime.Mount
		class  error
		naming string
	}{
		{"relative container path", &runtime.Mount{ContainerPath: "data", HostPath: host}, errInvalid, `"data"`},
		{"missing host path", &runtime.Mount{ContainerPath: "/d", HostPath: host + "/nope"}, errdefs.ErrNotFound, host + "/nope"},
		{"no host path", &runtime.Mount{ContainerPath: "/d"}, errInvalid, "/d"},
		{"rro without readonly", &runtime.Mount{ContainerPath: "/d", HostPath: host, RecursiveReadOnly: true}, errInvalid, "/d"},
		{"rro with propagation", &runtime.Mount{ContainerPath: "/d", HostPath: host, Readonly: true, RecursiveReadOnly: true,
			Propagation: runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}, errInvalid, "PROPAGATION_HOST_TO_CONTAINER"},
		{"unknown propagation", &runtime.Mount{ContainerPath: "/d", HostPath: host, Propagation: 7}, errInvalid, "7"},
		{"bad mount option", &runtime.Mount{ContainerPath: "/d", HostPath: host, MountOptions: []string{"rw"}}, errInvalid, `"rw"`},
		{"image not mounted", imgMount, errdefs.ErrFailedPrecondition, "sha256:abc"},
		{"image and host path", &runtime.Mount{ContainerPath: "/i", HostPath: host, Image: &runtime.ImageSpec{Image: "sha256:def"}}, errInvalid, "sha256:def"},
		{"bad mount mapping", &runtime.Mount{ContainerPath: "/d", HostPath: host, UidMappings: []*runtime.IDMapping{{Length: 0}}}, errInvalid, "/d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testContainer()
			c.Config.Mounts = []*runtime.Mount{tc.m}
			_, err := containerSpec(t, c, Options{}, host0())
			wantErr(t, err, tc.class, tc.naming)
		})
	}
	// An image sub path that leaves the image is resolved inside it and
	// then does not exist.
	img := t.TempDir()
	if err := os.Symlink("/etc", filepath.Join(img, "esc")); err != nil {
		t.Fatal(err)
	}
	m := &runtime.Mount{ContainerPath: "/i", Image: &runtime.ImageSpec{Image: "sha256:abc"}, ImageSubPath: "esc/passwd"}
	c := testContainer()
	c.Config.Mounts = []*runtime.Mount{m}
	c.ImageMounts = map[*runtime.Mount]string{m: img}
	_, err := containerSpec(t, c, Options{}, host0())
	wantErr(t, err, errdefs.ErrNotFound, "esc/passwd")
}

func host0() host { return host{} }

func TestBidirectional(t *testing.T) {
	infos, err := parseMountinfo(strings.NewReader(`22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:5 / /srv rw master:2 - tmpfs tmpfs rw
31 30 0:6 / /srv/shared\040dir rw shared:7 - tmpfs tmpfs rw
32 22 0:7 / /priv rw - tmpfs tmpfs rw
`))
	if err != nil {
		t.Fatal(err)
	}
	for p, ok := range map[string]bool{"/": true, "/var/x": true, "/srv/a": false, "/srv/shared dir/x": true, "/priv": false, "/private": true} {
		err := ensureShared(p, infos)
		if ok != (err == nil) {
			t.Errorf("%s: %v", p, err)
		}
		if err != nil && !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not name %s", err, p)
		}
	}
	// The real mount table: a bidirectional mount is either accepted
	// with rshared or refused naming the path, depending on the host.
	dir := t.TempDir()
	c := testContainer()
	c.Config.Mounts = []*runtime.Mount{{ContainerPath: "/b", HostPath: dir, Propagation: runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL}}
	s, err := containerSpec(t, c, Options{}, host0())
	if err != nil {
		wantErr(t, err, errInvalid, dir)
		return
	}
	if m := mountAt(s, "/b"); m == nil || !slices.Contains(m.Options, "rshared") || s.Linux.RootfsPropagation != "rshared" {
		t.Errorf("bidirectional mount %+v, rootfs %q", m, s.Linux.RootfsPropagation)
	}
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add("22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n")
	f.Add("31 30 0:6 / /a\\040b rw shared:7 master:3 - tmpfs tmpfs rw\n")
	f.Add("1 2 3 4 5 6\n")
	f.Add("x - y\n\\")
	f.Fuzz(func(t *testing.T, s string) {
		infos, err := parseMountinfo(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, m := range infos {
			if slices.Contains(m.optional, "-") {
				t.Fatalf("separator among optional fields: %q", m.optional)
			}
		}
		_, _ = mountOf(infos, "/x")
	})
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/a\134b`: `/a\b`, `/a\08`: `/a\08`, `/x\`: `/x\`, `/y\777`: `/y\777`, "/plain": "/plain"} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("%q: %q want %q", in, got, want)
		}
	}
}

func TestDevices(t *testing.T) {
	devDir := t.TempDir()
	if err := os.Symlink("/dev/null", filepath.Join(devDir, "nul")); err != nil {
		t.Fatal(err)
	}
	c := testContainer()
	c.Config.Devices = []*runtime.Device{
		{ContainerPath: "/dev/mynull", HostPath: "/dev/null", Permissions: "rw"},
		{ContainerPath: "/dev/z", HostPath: filepath.Join(devDir, "nul")},
	}
	s := mustContainer(t, c, Options{})
	byPath := map[string]specs.LinuxDevice{}
	for _, d := range s.Linux.Devices {
		byPath[d.Path] = d
	}
	for p, access := range map[string]string{"/dev/mynull": "rw", "/dev/z": "rwm"} {
		d, ok := byPath[p]
		if !ok || d.Type != "c" || d.Major != 1 || d.Minor != 3 || d.FileMode == nil || d.UID == nil || *d.UID != 0 {
			t.Errorf("%s: %+v", p, d)
		}
		found := false
		for _, r := range s.Linux.Resources.Devices {
			if r.Allow && r.Type == "c" && r.Major != nil && *r.Major == 1 && r.Minor != nil && *r.Minor == 3 && r.Access == access {
				found = true
			}
		}
		if !found {
			t.Errorf("no cgroup rule %s for %s: %+v", access, p, s.Linux.Resources.Devices)
		}
	}
	if r := s.Linux.Resources.Devices[0]; r.Allow || r.Access != "rwm" {
		t.Errorf("device rules no longer start with deny all: %+v", r)
	}

	// Ownership from the security context.
	c.Config.Linux.SecurityContext.RunAsUser = &runtime.Int64Value{Value: 1000}
	c.Config.Linux.SecurityContext.RunAsGroup = &runtime.Int64Value{Value: 2000}
	s = mustContainer(t, c, Options{DeviceOwnershipFromSecurityContext: true})
	for _, d := range s.Linux.Devices {
		if *d.UID != 1000 || *d.GID != 2000 {
			t.Errorf("%s owned by %d:%d", d.Path, *d.UID, *d.GID)
		}
	}

	// A directory adds the devices below it.
	if _, err := os.Stat("/dev/pts/ptmx"); err == nil {
		c = testContainer()
		c.Config.Devices = []*runtime.Device{{ContainerPath: "/dev/hostpts", HostPath: "/dev/pts"}}
		s = mustContainer(t, c, Options{})
		found := false
		for _, d := range s.Linux.Devices {
			if d.Path == "/dev/hostpts/ptmx" && d.Type == "c" && d.Major == 5 && d.Minor == 2 {
				found = true
			}
		}
		if !found {
			t.Errorf("devices of a directory: %+v", s.Linux.Devices)
		}
	}

	plain := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		d      *runtime.Device
		class  error
		naming string
	}{
		{"missing", &runtime.Device{ContainerPath: "/dev/x", HostPath: "/dev/does-not-exist"}, errdefs.ErrNotFound, "/dev/does-not-exist"},
		{"not a device", &runtime.Device{ContainerPath: "/dev/x", HostPath: plain}, errInvalid, plain},
		{"relative", &runtime.Device{ContainerPath: "dev/x", HostPath: "/dev/null"}, errInvalid, "dev/x"},
		{"bad permissions", &runtime.Device{ContainerPath: "/dev/x", HostPath: "/dev/null", Permissions: "rx"}, errInvalid, "rx"},
		{"no host path", &runtime.Device{ContainerPath: "/dev/x"}, errInvalid, "/dev/x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testContainer()
			c.Config.Devices = []*runtime.Device{tc.d}
			_, err := containerSpec(t, c, Options{}, host0())
			wantErr(t, err, tc.class, tc.naming)
		})
	}
}

func FuzzCheckDevicePermissions(f *testing.F) {
	for _, s := range []string{"", "r", "rwm", "mwr", "rr", "x", "rwmr"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := CheckDevicePermissions(s)
		if err != nil {
			return
		}
		if s == "" && p != "rwm" || s != "" && p != s || len(p) > 3 || strings.Trim(p, "rwm") != "" {
			t.Fatalf("%q -> %q", s, p)
		}
	})
}

func TestResources(t *testing.T) {
	r := &runtime.LinuxContainerResources{
		CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 1 << 28, OomScoreAdj: -100,
		CpusetCpus: "0-1", CpusetMems: "0", HugepageLimits: []*runtime.HugepageLimit{{PageSize: "2MB", Limit: 1 << 21}},
		Unified: map[string]string{"memory.high": "1000000"},
	}
	c := testContainer()
	c.Config.Linux.Resources = r
	s, err := containerSpec(t, c, Options{}, host{hugetlb: true, swap: true})
	if err != nil {
		t.Fatal(err)
	}
	res := s.Linux.Resources
	cpu, mem := res.CPU, res.Memory
	if *cpu.Period != 100000 || *cpu.Quota != 50000 || *cpu.Shares != 512 || cpu.Cpus != "0-1" || cpu.Mems != "0" {
		t.Errorf("cpu %+v", cpu)
	}
	if *mem.Limit != 1<<28 || mem.Swap == nil || *mem.Swap != 1<<28 {
		t.Errorf("memory %+v", mem)
	}
	if !reflect.DeepEqual(res.HugepageLimits, []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1 << 21}}) || res.Unified["memory.high"] != "1000000" {
		t.Errorf("hugepages %v unified %v", res.HugepageLimits, res.Unified)
	}
	if *s.Process.OOMScoreAdj != -100 {
		t.Errorf("oom_score_adj %d", *s.Process.OOMScoreAdj)
	}
	if s.Linux.CgroupsPath != "/kubepods/pod-uid-1/c1" {
		t.Errorf("cgroups path %q", s.Linux.CgroupsPath)
	}
	// Clamp, explicit swap, no swap accounting.
	min := 0
	r.MemorySwapLimitInBytes = 1 << 29
	s, err = containerSpec(t, c, Options{MinOOMScoreAdj: &min}, host{hugetlb: true, swap: true})
	if err != nil {
		t.Fatal(err)
	}
	if *s.Process.OOMScoreAdj != 0 || *s.Linux.Resources.Memory.Swap != 1<<29 {
		t.Errorf("oom %d swap %d", *s.Process.OOMScoreAdj, *s.Linux.Resources.Memory.Swap)
	}
	s, err = containerSpec(t, c, Options{}, host{hugetlb: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.Resources.Memory.Swap != nil {
		t.Errorf("swap %d without swap accounting", *s.Linux.Resources.Memory.Swap)
	}
	// Hugetlb missing, tolerated or disabled.
	_, err = containerSpec(t, c, Options{}, host{})
	wantErr(t, err, errdefs.ErrFailedPrecondition, "hugetlb")
	for _, o := range []Options{{TolerateMissingHugetlb: true}, {DisableHugetlb: true}} {
		s, err := containerSpec(t, c, o, host{hugetlb: o.DisableHugetlb})
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Linux.Resources.HugepageLimits) != 0 {
			t.Errorf("%+v: hugepages %v", o, s.Linux.Resources.HugepageLimits)
		}
	}
	// systemd.
	c.Sandbox.Config.Linux.CgroupParent = "kubepods-burstable-pod1.slice"
	s, err = containerSpec(t, c, Options{CgroupDriver: "systemd", TolerateMissingHugetlb: true}, host{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.CgroupsPath != "kubepods-burstable-pod1.slice:hull:c1" {
		t.Errorf("systemd cgroups path %q", s.Linux.CgroupsPath)
	}

	for _, tc := range []struct {
		name   string
		r      *runtime.LinuxContainerResources
		naming string
	}{
		{"oom", &runtime.LinuxContainerResources{OomScoreAdj: 1001}, "1001"},
		{"shares", &runtime.LinuxContainerResources{CpuShares: -2}, "cpu_shares"},
		{"memory", &runtime.LinuxContainerResources{MemoryLimitInBytes: -5}, "memory_limit_in_bytes"},
		{"unified key", &runtime.LinuxContainerResources{Unified: map[string]string{"../x": "1"}}, "../x"},
		{"page size", &runtime.LinuxContainerResources{HugepageLimits: []*runtime.HugepageLimit{{PageSize: "../2MB"}}}, "../2MB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testContainer()
			c.Config.Linux.Resources = tc.r
			_, err := containerSpec(t, c, Options{}, host{hugetlb: true})
			wantErr(t, err, errInvalid, tc.naming)
		})
	}
	c = testContainer()
	c.Sandbox.Config.Linux.CgroupParent = "/kubepods/x"
	_, err = containerSpec(t, c, Options{CgroupDriver: "systemd"}, host{})
	wantErr(t, err, errInvalid, "/kubepods/x")
}

func TestCgroupsPath(t *testing.T) {
	for _, tc := range []struct {
		driver, parent, id, want string
	}{
		{"cgroupfs", "/kubepods/burstable/pod1", "c1", "/kubepods/burstable/pod1/c1"},
		{"", "/kubepods/", "c1", "/kubepods/c1"},
		{"cgroupfs", "", "c1", ""},
		{"systemd", "kubepods-burstable-pod1.slice", "c1", "kubepods-burstable-pod1.slice:hull:c1"},
		{"systemd", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice", "c1", "kubepods-burstable-pod1.slice:hull:c1"},
		{"systemd", "", "c1", "system.slice:hull:c1"},
		{"systemd", "-.slice", "c1", "-.slice:hull:c1"},
	} {
		got, err := CgroupsPath(tc.driver, tc.parent, tc.id)
		if err != nil || got != tc.want {
			t.Errorf("%s %q %q: %q, %v; want %q", tc.driver, tc.parent, tc.id, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ driver, parent, id, naming string }{
		{"systemd", "/kubepods/pod1", "c1", "/kubepods/pod1"},
		{"systemd", "kube--pods.slice", "c1", "kube--pods.slice"},
		{"systemd", "a:b.slice", "c1", "a:b.slice"},
		{"systemd", ".slice", "c1", ".slice"},
		{"cgroupfs", "kubepods/pod1", "c1", "kubepods/pod1"},
		{"cgroupfs", "/kubepods.slice", "c1", "/kubepods.slice"},
		{"cgroupfs", "/k", "a/b", "a/b"},
		{"cgroupfs", "/k", "", `""`},
		{"openrc", "/k", "c1", "openrc"},
	} {
		_, err := CgroupsPath(tc.driver, tc.parent, tc.id)
		wantErr(t, err, errInvalid, tc.naming)
	}
}

func FuzzCgroupsPath(f *testing.F) {
	for _, s := range []string{"/kubepods/pod1", "kubepods-pod1.slice", "", "-.slice", "a--b.slice", "/x.slice", "a/b"} {
		f.Add("systemd", s, "c1")
		f.Add("cgroupfs", s, "c1")
	}
	f.Fuzz(func(t *testing.T, driver, parent, id string) {
		p, err := CgroupsPath(driver, parent, id)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("error %v is not InvalidArgument", err)
			}
			return
		}
		switch driver {
		case "systemd":
			parts := strings.Split(p, ":")
			if len(parts) != 3 || !strings.HasSuffix(parts[0], ".slice") || parts[1] != "hull" || parts[2] != id {
				t.Fatalf("%q %q: %q", parent, id, p)
			}
		default:
			if parent == "" {
				if p != "" {
					t.Fatalf("empty parent gave %q", p)
				}
				return
			}
			if !strings.HasPrefix(p, "/") || filepath.Base(p) != id || filepath.Clean(p) != p {
				t.Fatalf("%q %q: %q", parent, id, p)
			}
		}
	})
}
