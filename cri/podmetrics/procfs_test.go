package podmetrics

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParseNetDev(t *testing.T) {
	devs, err := parseNetDev(strings.NewReader(fakeNetDev))
	if err != nil {
		t.Fatal(err)
	}
	want := []netDev{
		{name: "lo", rxBytes: 900, rxPackets: 9, txBytes: 900, txPackets: 9},
		{name: "eth0", rxBytes: 1000, rxPackets: 10, rxErrors: 1, rxDropped: 2, txBytes: 2000, txPackets: 20, txErrors: 3, txDropped: 4},
		{name: "net1", rxBytes: 5, rxPackets: 6, rxErrors: 7, rxDropped: 8, txBytes: 9, txPackets: 10, txErrors: 11, txDropped: 12},
	}
	if !slices.Equal(devs, want) {
		t.Errorf("parseNetDev = %+v, want %+v", devs, want)
	}
	for _, bad := range []string{
		"eth0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n", // no colon
		": 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",    // no name
		"eth0: 1 2 3\n", // too few
		"eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 -16\n", // negative
		"eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 1e3\n", // not decimal
		"eth0: 99999999999999999999 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",
	} {
		if _, err := parseNetDev(strings.NewReader(bad)); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("parseNetDev(%q) = %v, want InvalidArgument", bad, err)
		}
	}
}

func TestIgnoredInterface(t *testing.T) {
	for name, ignored := range map[string]bool{"lo": true, "veth1234": true, "docker0": true, "eth0": false, "net1": false, "cni0": false} {
		if ignoredInterface(name) != ignored {
			t.Errorf("ignoredInterface(%q) = %v", name, !ignored)
		}
	}
}

func TestParseMountinfo(t *testing.T) {
	in := `22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 master:2 - cgroup cgroup rw,cpu,cpuacct
40 31 0:37 /a\040b /sys/fs/cgroup/sys\134temd rw - cgroup none rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
`
	got, err := parseMountinfo(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []cgroupMount{
		{root: "/", mountPoint: "/sys/fs/cgroup/cpu,cpuacct", options: []string{"rw", "cpu", "cpuacct"}},
		{root: "/a b", mountPoint: `/sys/fs/cgroup/sys\temd`, options: []string{"rw", "xattr", "name=systemd"}},
		{root: "/", mountPoint: "/sys/fs/cgroup/unified", v2: true, options: []string{"rw", "nsdelegate"}},
	}
	if len(got) != len(want) {
		t.Fatalf("parseMountinfo = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].root != want[i].root || got[i].mountPoint != want[i].mountPoint || got[i].v2 != want[i].v2 || !slices.Equal(got[i].options, want[i].options) {
			t.Errorf("mount %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"1 2 3\n", "22 1 0:21 / /sys rw - sysfs\n", "22 1 0:21 / /sys rw cgroup cgroup rw\n"} {
		if _, err := parseMountinfo(strings.NewReader(bad)); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("parseMountinfo(%q) = %v, want InvalidArgument", bad, err)
		}
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/plain`:      "/plain",
		`/a\040b`:     "/a b",
		`/tab\011x`:   "/tab\tx",
		`/bs\134`:     `/bs\`,
		`/short\04`:   `/short\04`,
		`/notoct\089`: `/notoct\089`,
		`\`:           `\`,
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseProcCgroup(t *testing.T) {
	got, err := parseProcCgroup(strings.NewReader("12:name=systemd:/a\n8:pids:/a:b\n2:cpu,cpuacct:/a\n0::/\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[1].path != "/a:b" || !slices.Equal(got[2].controllers, []string{"cpu", "cpuacct"}) || got[3].hierarchy != 0 || got[3].controllers != nil {
		t.Errorf("parseProcCgroup = %+v", got)
	}
	for _, bad := range []string{"x:pids:/a\n", "1:pids\n", "1:pids:relative\n", "-1:pids:/a\n"} {
		if _, err := parseProcCgroup(strings.NewReader(bad)); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("parseProcCgroup(%q) = %v, want InvalidArgument", bad, err)
		}
	}
}

func TestParseLimits(t *testing.T) {
	got, err := parseLimits(strings.NewReader(fakeLimits))
	if err != nil {
		t.Fatal(err)
	}
	want := []ulimit{{"max_open_files", 1024}, {"max_processes", 63382}, {"max_nice_priority", 0}}
	if !slices.Equal(got, want) {
		t.Errorf("parseLimits = %+v, want %+v", got, want)
	}
	for _, bad := range []string{"Max open files\n", "Max open files            lots                 1048576              files\n", "                          1 1\n"} {
		if _, err := parseLimits(strings.NewReader(bad)); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("parseLimits(%q) = %v, want InvalidArgument", bad, err)
		}
	}
}

func TestParseUevent(t *testing.T) {
	if got, err := parseUevent(strings.NewReader("MAJOR=8\nDEVNAME=nvme0n1\n")); err != nil || got != "nvme0n1" {
		t.Errorf("parseUevent = %q, %v", got, err)
	}
	if got, err := parseUevent(strings.NewReader("MAJOR=8\n")); err != nil || got != "" {
		t.Errorf("parseUevent without DEVNAME = %q, %v", got, err)
	}
}

func TestParsePidList(t *testing.T) {
	if got, err := parsePidList(strings.NewReader("1\n42\n\n")); err != nil || !slices.Equal(got, []uint64{1, 42}) {
		t.Errorf("parsePidList = %v, %v", got, err)
	}
	for _, bad := range []string{"0\n", "x\n", "4294967296\n", "-1\n"} {
		if _, err := parsePidList(strings.NewReader(bad)); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("parsePidList(%q) = %v, want InvalidArgument", bad, err)
		}
	}
}

// formatNetDev renders devices as /proc/net/dev does, for the round trip
// of FuzzParseNetDev.
func formatNetDev(devs []netDev) string {
	var b strings.Builder
	b.WriteString("Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n")
	for _, d := range devs {
		fmt.Fprintf(&b, "%6s: %d %d %d %d 0 0 0 0 %d %d %d %d 0 0 0 0\n", d.name,
			d.rxBytes, d.rxPackets, d.rxErrors, d.rxDropped, d.txBytes, d.txPackets, d.txErrors, d.txDropped)
	}
	return b.String()
}

func FuzzParseNetDev(f *testing.F) {
	f.Add(fakeNetDev)
	f.Add("eth0:1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n")
	f.Add("  a|b\n x: 1 2\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, in string) {
		devs, err := parseNetDev(strings.NewReader(in))
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("error %v is not InvalidArgument", err)
			}
			return
		}
		for _, d := range devs {
			if d.name == "" || strings.ContainsAny(d.name, ": \t\n|") {
				t.Fatalf("interface name %q", d.name)
			}
		}
		again, err := parseNetDev(strings.NewReader(formatNetDev(devs)))
		if err != nil || !slices.Equal(again, devs) {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, devs)
		}
	})
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add("41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n")
	f.Add("32 31 0:29 /a\\040b /x rw shared:1 - cgroup cgroup rw,cpu\n")
	f.Add("1 2 3 4 5 6 - \n")
	f.Fuzz(func(t *testing.T, in string) {
		mounts, err := parseMountinfo(strings.NewReader(in))
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("error %v is not InvalidArgument", err)
			}
			return
		}
		for _, m := range mounts {
			if m.mountPoint == "" || m.root == "" {
				t.Fatalf("mount %+v lacks a path", m)
			}
		}
	})
}

func FuzzUnescapeMountinfo(f *testing.F) {
	f.Add(`/a\040b\134`)
	f.Add(`\0`)
	f.Fuzz(func(t *testing.T, in string) {
		out := unescapeMountinfo(in)
		if len(out) > len(in) {
			t.Fatalf("unescapeMountinfo(%q) = %q grew", in, out)
		}
		if !strings.Contains(in, `\`) && out != in {
			t.Fatalf("unescapeMountinfo(%q) = %q changed a string without escapes", in, out)
		}
	})
}

func FuzzParseProcCgroup(f *testing.F) {
	f.Add("12:name=systemd:/a\n8:pids:/a:b\n0::/\n")
	f.Add("1::\n")
	f.Fuzz(func(t *testing.T, in string) {
		groups, err := parseProcCgroup(strings.NewReader(in))
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("error %v is not InvalidArgument", err)
			}
			return
		}
		for _, g := range groups {
			if g.hierarchy < 0 || !strings.HasPrefix(g.path, "/") {
				t.Fatalf("group %+v", g)
			}
			// Whatever the line, ranking and matching it must not fail.
			_ = hierarchyRank(g)
			_ = cgroupMatches(g.path, "a:b:c")
			// A path with ':' would read as systemd's slice:prefix:name.
			if !strings.Contains(g.path, ":") && !cgroupMatches(g.path, g.path) {
				t.Fatalf("cgroup %q does not match itself", g.path)
			}
		}
	})
}

func FuzzParseLimits(f *testing.F) {
	f.Add(fakeLimits)
	f.Add("Max open files            1024 1024 files\n")
	f.Add("short\n")
	f.Fuzz(func(t *testing.T, in string) {
		limits, err := parseLimits(strings.NewReader(in))
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("error %v is not InvalidArgument", err)
			}
			return
		}
		for _, l := range limits {
			if l.name == "" || strings.ContainsAny(l.name, " \t") {
				t.Fatalf("limit name %q", l.name)
			}
		}
	})
}

func FuzzParseUevent(f *testing.F) {
	f.Add("MAJOR=8\nDEVNAME=sda\n")
	f.Add("=\n")
	f.Fuzz(func(t *testing.T, in string) {
		name, err := parseUevent(strings.NewReader(in))
		if err == nil && name != strings.TrimSpace(name) {
			t.Fatalf("device name %q not trimmed", name)
		}
	})
}

func FuzzParsePidList(f *testing.F) {
	f.Add("1\n2\n")
	f.Add("0\n")
	f.Fuzz(func(t *testing.T, in string) {
		pids, err := parsePidList(strings.NewReader(in))
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("error %v is not InvalidArgument", err)
			}
			return
		}
		for _, p := range pids {
			if p == 0 || p > 1<<32-1 {
				t.Fatalf("pid %d", p)
			}
		}
	})
}
