package cgroup

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseProcCgroup(t *testing.T) {
	got, err := parseProcCgroup([]byte("12:cpu,cpuacct:/kubepods/pod1/c1\n4:memory:/kubepods/pod1/c1\n1:name=systemd:/system.slice\n0::/kubepods/pod1/c1\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"cpu": "/kubepods/pod1/c1", "cpuacct": "/kubepods/pod1/c1", "memory": "/kubepods/pod1/c1",
		"name=systemd": "/system.slice", "": "/kubepods/pod1/c1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if _, err := parseProcCgroup([]byte("0:/x\n")); err == nil {
		t.Error("a line without three fields parsed")
	}
}

func TestParseV1Mounts(t *testing.T) {
	info := "25 1 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n" +
		"30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n" +
		"31 25 0:27 /kube /sys/fs/cgroup/memory rw,nosuid shared:9 - cgroup cgroup rw,memory\n" +
		"32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate\n" +
		"33 25 0:29 / /mnt/my\\040cgroup rw - cgroup cgroup rw,pids\n" +
		"34 25 0:27 / /elsewhere/memory rw - cgroup cgroup rw,memory\n"
	got := parseV1Mounts([]byte(info))
	want := map[string]v1Mount{
		"cpu":     {dir: "/sys/fs/cgroup/cpu,cpuacct", root: "/"},
		"cpuacct": {dir: "/sys/fs/cgroup/cpu,cpuacct", root: "/"},
		"memory":  {dir: "/sys/fs/cgroup/memory", root: "/kube"},
		"pids":    {dir: "/mnt/my cgroup", root: "/"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestParseValue(t *testing.T) {
	for in, want := range map[string]uint64{"42\n": 42, "max\n": math.MaxUint64, "-1\n": 0, "9223372036854771712\n": 9223372036854771712} {
		if got, err := parseValue([]byte(in)); err != nil || got != want {
			t.Errorf("parseValue(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := parseValue([]byte("many")); err == nil {
		t.Error(`parseValue("many") did not fail`)
	}
}

func TestParseIOStatAndPSI(t *testing.T) {
	io := parseIOStat([]byte("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\nbogus\n259:1 rbytes=x wbytes=5\n"))
	if len(io) != 2 || io[0].major != 8 || io[0].minor != 0 || io[0].values["wbytes"] != 8192 || io[0].values["rios"] != 1 {
		t.Errorf("io.stat: %+v", io)
	}
	if _, ok := io[1].values["rbytes"]; ok || io[1].values["wbytes"] != 5 || io[1].major != 259 {
		t.Errorf("io.stat's second device: %+v", io[1])
	}
	some, full := parsePSI([]byte("some avg10=1.50 avg60=0.25 avg300=0.00 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n"))
	if some == nil || full == nil || some.avg10 != 1.5 || some.avg60 != 0.25 || some.total != 12345 || full.total != 7 {
		t.Errorf("pressure: some %+v full %+v", some, full)
	}
	if some, full := parsePSI([]byte("some avg10=oops\n")); some != nil || full != nil {
		t.Errorf("malformed pressure parsed: %+v %+v", some, full)
	}
}

// writeTree makes files (path relative to root: content) under root.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMetricsV1Tree reads a made-up v1 cgroup: units converted as
// containerd converts them, accountings the kernel lacks left empty, and
// blkio falling back to the throttle files when CFQ counts nothing.
func TestMetricsV1Tree(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"cpu/cpu.stat":                           "nr_periods 10\nnr_throttled 3\nthrottled_time 900\n",
		"cpu/cpuacct.stat":                       "user 150\nsystem 50\n",
		"cpu/cpuacct.usage":                      "2000000000\n",
		"cpu/cpuacct.usage_percpu":               "1500000000 500000000 \n",
		"memory/memory.stat":                     "cache 4096\nrss 8192\ntotal_rss 16384\nhierarchical_memory_limit 33554432\n",
		"memory/memory.oom_control":              "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
		"memory/memory.usage_in_bytes":           "12288\n",
		"memory/memory.max_usage_in_bytes":       "20480\n",
		"memory/memory.failcnt":                  "1\n",
		"memory/memory.limit_in_bytes":           "33554432\n",
		"memory/memory.kmem.usage_in_bytes":      "100\n",
		"memory/memory.kmem.max_usage_in_bytes":  "200\n",
		"memory/memory.kmem.failcnt":             "0\n",
		"memory/memory.kmem.limit_in_bytes":      "9223372036854771712\n",
		"pids/pids.current":                      "3\n",
		"pids/pids.max":                          "max\n",
		"hugetlb/hugetlb.2MB.usage_in_bytes":     "2097152\n",
		"hugetlb/hugetlb.2MB.max_usage_in_bytes": "4194304\n",
		"hugetlb/hugetlb.2MB.failcnt":            "0\n",
		"blkio/blkio.io_serviced_recursive":      "Total 0\n",
		"blkio/blkio.sectors_recursive":          "",
		"blkio/blkio.io_service_bytes_recursive": "Total 0\n",
		"blkio/blkio.io_queued_recursive":        "",
		"blkio/blkio.io_service_time_recursive":  "",
		"blkio/blkio.io_wait_time_recursive":     "",
		"blkio/blkio.io_merged_recursive":        "",
		"blkio/blkio.time_recursive":             "",
		"blkio/blkio.throttle.io_serviced":       "8:0 Read 5\n8:0 Write 7\nTotal 12\n",
		"blkio/blkio.throttle.io_service_bytes":  "8:0 Read 20480\n8:0 Write 28672\nTotal 49152\n",
	})
	dirs := map[string]string{}
	for _, c := range []string{"cpu", "memory", "pids", "hugetlb", "blkio"} {
		dirs[c] = filepath.Join(root, c)
	}
	dirs["cpuacct"] = dirs["cpu"]
	m, err := metricsV1(dirs)
	if err != nil {
		t.Fatal(err)
	}
	u := m.CPU.Usage
	if u.Total != 2e9 || u.User != 1.5e9 || u.Kernel != 0.5e9 || !reflect.DeepEqual(u.PerCPU, []uint64{1.5e9, 0.5e9}) {
		t.Errorf("cpu usage %v", u)
	}
	if th := m.CPU.Throttling; th.Periods != 10 || th.ThrottledPeriods != 3 || th.ThrottledTime != 900 {
		t.Errorf("throttling %v", th)
	}
	mem := m.Memory
	if mem.Cache != 4096 || mem.RSS != 8192 || mem.TotalRSS != 16384 || mem.HierarchicalMemoryLimit != 32<<20 {
		t.Errorf("memory.stat %v", mem)
	}
	if mem.Usage.Usage != 12288 || mem.Usage.Max != 20480 || mem.Usage.Failcnt != 1 || mem.Usage.Limit != 32<<20 {
		t.Errorf("memory usage %v", mem.Usage)
	}
	if mem.Swap == nil || mem.Swap.Usage != 0 || mem.Kernel.Usage != 100 || mem.Kernel.Max != 200 {
		t.Errorf("swap %v kernel %v", mem.Swap, mem.Kernel)
	}
	if m.MemoryOomControl.OomKill != 2 {
		t.Errorf("oom control %v", m.MemoryOomControl)
	}
	if m.Pids.Current != 3 || m.Pids.Limit != 0 {
		t.Errorf("pids %v", m.Pids)
	}
	if len(m.Hugetlb) != 1 || m.Hugetlb[0].Pagesize != "2MB" || m.Hugetlb[0].Usage != 2<<20 || m.Hugetlb[0].Max != 4<<20 {
		t.Errorf("hugetlb %v", m.Hugetlb)
	}
	b := m.Blkio
	if len(b.IoServicedRecursive) != 2 || b.IoServicedRecursive[1].Op != "Write" || b.IoServicedRecursive[1].Value != 7 ||
		len(b.IoServiceBytesRecursive) != 2 || b.IoServiceBytesRecursive[0].Major != 8 || b.IoServiceBytesRecursive[0].Value != 20480 {
		t.Errorf("blkio %v", b)
	}

	// A controller whose files are gone is left out; all gone is an
	// error.
	os.RemoveAll(dirs["blkio"])
	if m, err := metricsV1(dirs); err != nil || m.Blkio != nil || m.Memory == nil {
		t.Errorf("without blkio: %v %v", m, err)
	}
	os.RemoveAll(root)
	if _, err := metricsV1(dirs); err == nil {
		t.Error("a removed cgroup read without error")
	}
}

// TestMetricsV2Tree reads a made-up v2 cgroup: "max" limits, io.stat
// devices, pressure, hugetlb sizes found from the cgroup's own files.
func TestMetricsV2Tree(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"pids.current":          "4\n",
		"pids.max":              "max\n",
		"cpu.stat":              "usage_usec 300\nuser_usec 200\nsystem_usec 100\nnr_periods 0\n",
		"cpu.pressure":          "some avg10=0.00 avg60=0.00 avg300=0.00 total=99\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=9\n",
		"memory.stat":           "anon 1024\nfile 2048\npgfault 7\n",
		"memory.current":        "3072\n",
		"memory.max":            "max\n",
		"memory.swap.max":       "0\n",
		"memory.events":         "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n",
		"io.stat":               "253:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n",
		"hugetlb.1GB.current":   "0\n",
		"hugetlb.1GB.max":       "max\n",
		"hugetlb.2MB.current":   "2097152\n",
		"hugetlb.2MB.max":       "max\n",
		"hugetlb.2MB.events":    "max 3\n",
		"hugetlb.2MB.rsvd.max":  "max\n",
		"cgroup.controllers":    "cpu io memory pids hugetlb\n",
		"memory.swap.current":   "0\n",
		"memory.peak":           "4096\n",
		"hugetlb.1GB.rsvd.max":  "max\n",
		"memory.oom.group":      "0\n",
		"cgroup.procs":          "",
		"cgroup.events":         "populated 1\nfrozen 0\n",
		"memory.swap.peak":      "0\n",
		"memory.swap.events":    "max 0\n",
		"memory.pressure":       "",
		"io.pressure":           "",
		"cgroup.freeze":         "0\n",
		"hugetlb.1GB.events":    "max 0\n",
		"hugetlb.2MB.rsvd.curr": "0\n",
	})
	m, err := metricsV2(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Pids.Current != 4 || m.Pids.Limit != math.MaxUint64 {
		t.Errorf("pids %v", m.Pids)
	}
	if m.CPU.UsageUsec != 300 || m.CPU.UserUsec != 200 || m.CPU.PSI.Some.Total != 99 || m.CPU.PSI.Full.Total != 9 {
		t.Errorf("cpu %v", m.CPU)
	}
	if m.Memory.Anon != 1024 || m.Memory.Usage != 3072 || m.Memory.UsageLimit != math.MaxUint64 || m.Memory.MaxUsage != 4096 || m.Memory.Pgfault != 7 {
		t.Errorf("memory %v", m.Memory)
	}
	if m.MemoryEvents.Max != 5 || m.MemoryEvents.OomKill != 1 {
		t.Errorf("memory events %v", m.MemoryEvents)
	}
	if len(m.Io.Usage) != 1 || m.Io.Usage[0].Major != 253 || m.Io.Usage[0].Wbytes != 20 || m.Io.Usage[0].Wios != 2 {
		t.Errorf("io %v", m.Io)
	}
	var sizes []string
	for _, h := range m.Hugetlb {
		sizes = append(sizes, h.Pagesize)
		if h.Pagesize == "2MB" && (h.Current != 2<<20 || h.Failcnt != 3 || h.Max != math.MaxUint64) {
			t.Errorf("hugetlb 2MB %v", h)
		}
	}
	if strings.Join(sizes, " ") != "1GB 2MB" {
		t.Errorf("hugetlb sizes %v", sizes)
	}
	os.RemoveAll(dir)
	if _, err := metricsV2(dir); err == nil {
		t.Error("a removed cgroup read without error")
	}
}

// The parsers read files of the kernel's and of other processes'
// making (mountinfo); none may panic or loop on any input.

func FuzzParseProcCgroup(f *testing.F) {
	f.Add([]byte("12:cpu,cpuacct:/a\n0::/b\n"))
	f.Add([]byte("0::/\n"))
	f.Add([]byte(":::\n1::x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		paths, err := parseProcCgroup(data)
		if err != nil {
			return
		}
		for c, p := range paths {
			if !strings.HasPrefix(p, "/") {
				t.Errorf("controller %q: path %q is not absolute", c, p)
			}
		}
	})
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add([]byte("30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n"))
	f.Add([]byte("31 25 0:27 /k\\040 /m\\04 rw - cgroup cgroup memory\n"))
	f.Add([]byte(" - cgroup\n - \n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for c := range parseV1Mounts(data) {
			if c == "" || c == "rw" || c == "ro" {
				t.Errorf("controller %q", c)
			}
		}
	})
}

func FuzzParseStatFiles(f *testing.F) {
	f.Add([]byte("usage_usec 300\nuser_usec 200\n"))
	f.Add([]byte("8:0 rbytes=1 wbytes=2\n8:0 Read 5\nTotal 3\n"))
	f.Add([]byte("some avg10=1.5 avg60=0 avg300=0 total=1\nfull total=x\n"))
	f.Add([]byte("max\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parseKV(data)
		parseValue(data)
		for _, e := range parseIOStat(data) {
			if e.values == nil {
				t.Error("io.stat entry without values")
			}
		}
		parsePSI(data)
		for _, l := range parseBlkio(data) {
			if strings.ContainsAny(l.op, " \n") {
				t.Errorf("blkio op %q", l.op)
			}
		}
		unescapeMountinfo(string(data))
	})
}
