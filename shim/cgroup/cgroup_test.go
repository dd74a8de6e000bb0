package cgroup

import (
	"os"
	"path/filepath"
	"testing"
)

const hybridProc = `9:name=systemd:/
8:pids:/default/c1
4:memory:/default/c1
2:cpu,cpuacct:/default/c1
0::/default/c1
`

const hybridMountinfo = `25 20 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
27 25 0:24 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
28 25 0:25 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
30 25 0:27 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
`

func TestResolveHybrid(t *testing.T) {
	members, err := ParseProcCgroup([]byte(hybridProc))
	if err != nil {
		t.Fatal(err)
	}
	mounts, err := ParseMountinfo([]byte(hybridMountinfo))
	if err != nil {
		t.Fatal(err)
	}
	cg := Resolve(members, mounts)
	if cg.V2 {
		t.Fatal("memory is a v1 controller here: want v1")
	}
	for ctrl, want := range map[string]string{
		"memory": "/sys/fs/cgroup/memory/default/c1", "pids": "/sys/fs/cgroup/pids/default/c1",
		"cpu": "/sys/fs/cgroup/cpu,cpuacct/default/c1", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct/default/c1",
		"name=systemd": "/sys/fs/cgroup/systemd",
	} {
		if cg.V1[ctrl] != want {
			t.Errorf("%s: %q, want %q", ctrl, cg.V1[ctrl], want)
		}
	}
	if cg.Unified != "/sys/fs/cgroup/unified/default/c1" {
		t.Errorf("unified %q", cg.Unified)
	}
}

func TestResolveV2(t *testing.T) {
	members, _ := ParseProcCgroup([]byte("0::/system.slice/c2\n"))
	mounts, _ := ParseMountinfo([]byte("26 20 0:23 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"))
	cg := Resolve(members, mounts)
	if !cg.V2 || cg.Unified != "/sys/fs/cgroup/system.slice/c2" {
		t.Fatalf("%+v", cg)
	}
}

func TestResolveMountRoot(t *testing.T) {
	// A mount showing a subtree (a cgroup namespace's view or a bind).
	members, _ := ParseProcCgroup([]byte("4:memory:/outer/c1\n"))
	mounts, _ := ParseMountinfo([]byte(`28 25 0:25 /outer /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory` + "\n"))
	if got := Resolve(members, mounts).V1["memory"]; got != "/sys/fs/cgroup/memory/c1" {
		t.Fatalf("memory %q", got)
	}
}

func TestParseProcCgroupErrors(t *testing.T) {
	for _, bad := range []string{"x", "a:memory:/", "1:memory:relative", "-1:memory:/"} {
		if _, err := ParseProcCgroup([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseMemoryEvents(t *testing.T) {
	v, ok := ParseMemoryEvents([]byte("low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n"))
	if !ok || v != 2 {
		t.Fatalf("oom_kill %d %v", v, ok)
	}
	if _, ok := ParseMemoryEvents([]byte("low 0\n")); ok {
		t.Fatal("no oom_kill line, yet found")
	}
}

func TestParseKV(t *testing.T) {
	kv := ParseKV([]byte("a 1\nb max\nc -1\nbad\nd x\n"))
	if kv["a"] != 1 || kv["b"] != ^uint64(0) || kv["c"] != ^uint64(0) {
		t.Fatalf("%v", kv)
	}
	if _, ok := kv["d"]; ok {
		t.Fatal("non-number kept")
	}
	if got := ParseUints([]byte("1 2 3\n")); len(got) != 3 || got[2] != 3 {
		t.Fatalf("%v", got)
	}
}

func TestUnescape(t *testing.T) {
	if got := unescape(`/a\040b\\c\0`); got != `/a b\\c\0` {
		t.Fatalf("%q", got)
	}
}

func TestStatsV2FromFiles(t *testing.T) {
	d := t.TempDir()
	for name, content := range map[string]string{
		"pids.current": "3\n", "pids.max": "max\n", "cpu.stat": "usage_usec 100\nuser_usec 60\nsystem_usec 40\n",
		"memory.current": "4096\n", "memory.max": "max\n", "memory.stat": "anon 1024\nfile 2048\n",
		"memory.events": "oom 1\noom_kill 1\n",
	} {
		os.WriteFile(filepath.Join(d, name), []byte(content), 0o644)
	}
	m := StatsV2(d)
	if m.Pids.Current != 3 || m.Pids.Limit != 0 || m.CPU.UsageUsec != 100 || m.Memory.Usage != 4096 ||
		m.Memory.Anon != 1024 || m.MemoryEvents.OomKill != 1 {
		t.Fatalf("%v", m)
	}
}

func FuzzParseProcCgroup(f *testing.F) {
	f.Add([]byte(hybridProc))
	f.Add([]byte("0::/\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ms, err := ParseProcCgroup(data)
		if err != nil {
			return
		}
		for _, m := range ms {
			if m.Hierarchy < 0 || len(m.Path) == 0 || m.Path[0] != '/' {
				t.Fatalf("bad membership %+v", m)
			}
		}
	})
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add([]byte(hybridMountinfo))
	f.Fuzz(func(t *testing.T, data []byte) {
		mounts, _ := ParseMountinfo(data)
		members, _ := ParseProcCgroup([]byte(hybridProc))
		Resolve(members, mounts)
	})
}

func FuzzParseKV(f *testing.F) {
	f.Add([]byte("low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\n"))
	f.Add([]byte("cache 1\nrss -1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ParseKV(data)
		ParseMemoryEvents(data)
		ParseUints(data)
		unescape(string(data))
	})
}
