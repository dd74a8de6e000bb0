package podmetrics

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var fakeNow = time.Unix(1700000000, 123456789)

const (
	fakePodID     = "sandbox0123"
	fakeCtrID     = "ctr4567"
	fakePausePid  = 100
	fakeCtrPid    = 200
	fakeChildPid  = 201
	fakePodCgroup = "/kubepods/besteffort/poduid1"
)

// fakeHost is a directory laid out like the parts of / that Collect reads:
// /proc/self/mountinfo, /proc/<pid>/{cgroup,fd,task,limits,net/dev}, the
// cgroup hierarchies' cgroup.procs and pids.max, /sys/dev/block.
type fakeHost struct {
	t    *testing.T
	root string
}

func newFakeHost(t *testing.T) *fakeHost {
	t.Helper()
	return &fakeHost{t: t, root: t.TempDir()}
}

func (f *fakeHost) write(rel, content string) {
	f.t.Helper()
	p := filepath.Join(f.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeHost) symlink(target, rel string) {
	f.t.Helper()
	p := filepath.Join(f.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeHost) mkdir(rel string) {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Join(f.root, rel), 0o755); err != nil {
		f.t.Fatal(err)
	}
}

// collector reads the fake host and logs (at debug level) into the
// returned buffer.
func (f *fakeHost) collector() (collector, *bytes.Buffer) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return collector{root: f.root, log: log}, &buf
}

const fakeNetDev = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     900      9    0    0    0     0          0         0      900       9    0    0    0     0       0          0
  eth0: 1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0
  net1:5 6 7 8 0 0 0 0 9 10 11 12 0 0 0 0
`

const fakeLimits = `Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max open files            1024                 1048576              files     
Max processes             63382                63382                processes 
Max nice priority         0                    0                    
`

// process lays out /proc/<pid>: its cgroup file, fds 0-2 (not sockets)
// plus the given number of sockets, and threads tasks.
func (f *fakeHost) process(pid int, cgroupFile string, socks, threads int) {
	dir := fmt.Sprintf("proc/%d", pid)
	f.write(dir+"/cgroup", cgroupFile)
	f.symlink("/dev/null", dir+"/fd/0")
	f.symlink("pipe:[77]", dir+"/fd/1")
	f.symlink("/var/log/x.log", dir+"/fd/2")
	for i := range socks {
		f.symlink(fmt.Sprintf("socket:[%d]", 1000+i), fmt.Sprintf("%s/fd/%d", dir, 3+i))
	}
	for i := range threads {
		f.mkdir(fmt.Sprintf("%s/task/%d", dir, pid+i))
	}
	f.write(dir+"/limits", fakeLimits)
}

// pod lays out a pod of a pause container and one container (with a
// child process) on a host of the given cgroup version ("v1": hybrid, as
// this project's machines; "v2": unified), and returns what Collect gets.
func (f *fakeHost) pod(version string) (Pod, []Container) {
	pauseCg := fakePodCgroup + "/" + fakePodID
	ctrCg := fakePodCgroup + "/" + fakeCtrID
	var pauseStats, ctrStats any
	var cgDir func(string) string
	switch version {
	case "v1":
		f.write("proc/self/mountinfo", `22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
31 22 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`)
		cgFile := func(p string) string {
			return "12:name=systemd:" + p + "\n8:pids:" + p + "\n4:memory:" + p + "\n2:cpu,cpuacct:" + p + "\n0::/\n"
		}
		f.process(fakePausePid, cgFile(pauseCg), 0, 1)
		f.process(fakeCtrPid, cgFile(ctrCg), 1, 3)
		f.process(fakeChildPid, cgFile(ctrCg), 2, 1)
		cgDir = func(p string) string { return "sys/fs/cgroup/pids" + p }
		pauseStats, ctrStats = fakeV1Stats(1), fakeV1Stats(10)
	case "v2":
		f.write("proc/self/mountinfo", "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n")
		cgFile := func(p string) string { return "0::" + p + "\n" }
		f.process(fakePausePid, cgFile(pauseCg), 0, 1)
		f.process(fakeCtrPid, cgFile(ctrCg), 1, 3)
		f.process(fakeChildPid, cgFile(ctrCg), 2, 1)
		cgDir = func(p string) string { return "sys/fs/cgroup" + p }
		pauseStats, ctrStats = fakeV2Stats(1), fakeV2Stats(10)
	default:
		f.t.Fatalf("no cgroup version %q", version)
	}
	f.write(cgDir(pauseCg)+"/cgroup.procs", fmt.Sprintf("%d\n", fakePausePid))
	f.write(cgDir(pauseCg)+"/pids.max", "max\n")
	f.write(cgDir(ctrCg)+"/cgroup.procs", fmt.Sprintf("%d\n%d\n", fakeCtrPid, fakeChildPid))
	f.write(cgDir(ctrCg)+"/pids.max", "512\n")
	f.write(fmt.Sprintf("proc/%d/net/dev", fakePausePid), fakeNetDev)
	f.write("sys/dev/block/8:0/uevent", "MAJOR=8\nMINOR=0\nDEVNAME=sda\nDEVTYPE=disk\n")

	period, shares, quota := uint64(50000), uint64(256), int64(25000)
	limit, reservation, swap := int64(256<<20), int64(128<<20), int64(512<<20)
	pauseShares := uint64(2)
	pod := Pod{ID: fakePodID, Name: "web", Namespace: "shop", NetNSPid: fakePausePid}
	return pod, []Container{
		{
			ID: fakePodID, Name: PauseContainerName, PodName: "web", PodNamespace: "shop", PodID: fakePodID,
			Image: "registry.k8s.io/pause:3.10", Stats: pauseStats, Pid: fakePausePid, CgroupPath: pauseCg,
			Spec:        &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: &pauseShares}}}},
			StartedAt:   fakeNow.Add(-time.Hour),
			FsUsedBytes: 4096, FsInodesUsed: 3, FsLimitBytes: 10 << 30, FsInodesTotal: 1000, FsInodesFree: 600, FsDevice: "/dev/sda1",
		},
		{
			ID: fakeCtrID, Name: "app", PodName: "web", PodNamespace: "shop", PodID: fakePodID,
			Image: "docker.io/library/busybox:1.36", Stats: ctrStats, Pid: fakeCtrPid, CgroupPath: ctrCg,
			Spec: &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{
				CPU:    &specs.LinuxCPU{Period: &period, Shares: &shares, Quota: &quota},
				Memory: &specs.LinuxMemory{Limit: &limit, Reservation: &reservation, Swap: &swap},
			}}},
			StartedAt:   fakeNow.Add(-time.Minute),
			FsUsedBytes: 8192, FsInodesUsed: 13, FsLimitBytes: 10 << 30, FsInodesTotal: 1000, FsInodesFree: 600, FsDevice: "/dev/sda1",
		},
	}
}

// fakeV1Stats are cgroup v1 counters scaled by k.
func fakeV1Stats(k uint64) *v1.Metrics {
	return &v1.Metrics{
		CPU: &v1.CPUStat{
			Usage:      &v1.CPUUsage{Total: k*12e9 + 999_999_999, User: k * 8e9, Kernel: k*4e9 + 5e8},
			Throttling: &v1.Throttle{Periods: k * 100, ThrottledPeriods: k * 7, ThrottledTime: k * 3e9},
		},
		Memory: &v1.MemoryStat{
			TotalCache: k * 1000, TotalRSS: k * 2000, TotalMappedFile: k * 300, TotalInactiveFile: k * 400,
			PgFault: k * 11, PgMajFault: k * 2, TotalPgFault: k * 13, TotalPgMajFault: k * 3,
			Usage:  &v1.MemoryEntry{Usage: k * 5000, Max: k * 6000, Failcnt: k},
			Swap:   &v1.MemoryEntry{Usage: k * 5500},
			Kernel: &v1.MemoryEntry{Usage: k * 700},
		},
		MemoryOomControl: &v1.MemoryOomControl{OomKill: k * 2},
		Pids:             &v1.PidsStat{Current: k * 4, Limit: 0},
		Hugetlb:          []*v1.HugetlbStat{{Pagesize: "2MB", Usage: k * 2 << 20, Max: k * 4 << 20}},
		Blkio: &v1.BlkIOStat{
			IoServiceBytesRecursive: []*v1.BlkIOEntry{
				{Op: "Read", Device: "/dev/vda", Major: 252, Minor: 0, Value: k * 4096},
				{Op: "Write", Device: "/dev/vda", Major: 252, Minor: 0, Value: k * 8192},
				{Op: "Total", Device: "/dev/vda", Major: 252, Minor: 0, Value: k * 12288},
				{Op: "Read", Major: 8, Minor: 0, Value: k * 512},
			},
			IoServicedRecursive: []*v1.BlkIOEntry{
				{Op: "Read", Device: "/dev/vda", Major: 252, Minor: 0, Value: k},
				{Op: "Write", Device: "/dev/vda", Major: 252, Minor: 0, Value: k * 2},
				{Op: "Total", Device: "/dev/vda", Major: 252, Minor: 0, Value: k * 3},
			},
		},
	}
}

// fakeV2Stats are cgroup v2 counters scaled by k.
func fakeV2Stats(k uint64) *v2.Metrics {
	psi := func(some, full uint64) *v2.PSIStats {
		return &v2.PSIStats{Some: &v2.PSIData{Total: some}, Full: &v2.PSIData{Total: full}}
	}
	return &v2.Metrics{
		CPU: &v2.CPUStat{
			UsageUsec: k*12e6 + 999_999, UserUsec: k * 8e6, SystemUsec: k*4e6 + 5e5,
			NrPeriods: k * 100, NrThrottled: k * 7, ThrottledUsec: k * 3e6,
			PSI: psi(k*5e6, k*2e6),
		},
		Memory: &v2.MemoryStat{
			Usage: k * 5000, MaxUsage: k * 6000, SwapUsage: k * 500, InactiveFile: k * 400,
			File: k * 1000, Anon: k * 2000, FileMapped: k * 300,
			KernelStack: k * 100, Slab: k * 500, Sock: k * 100,
			Pgfault: k * 13, Pgmajfault: k * 3,
			PSI: psi(k*7e6, k*1e6),
		},
		MemoryEvents: &v2.MemoryEvents{Max: k, OomKill: k * 2},
		Pids:         &v2.PidsStat{Current: k * 4, Limit: 0},
		Hugetlb:      []*v2.HugeTlbStat{{Pagesize: "2MB", Current: k * 2 << 20, Max: 1 << 30}},
		Io: &v2.IOStat{
			Usage: []*v2.IOEntry{{Major: 8, Minor: 0, Rbytes: k * 4096, Wbytes: k * 8192, Rios: k, Wios: k * 2}},
			PSI:   psi(k*9e6, k*8e6),
		},
	}
}

// series indexes a pod's metrics by name and labels ("k=v,k=v", keys
// sorted), checking on the way that each has its descriptor's label count
// and the collection time.
func series(t *testing.T, pm *runtime.PodSandboxMetrics) map[string]map[string]uint64 {
	t.Helper()
	keys := map[string][]string{}
	for _, d := range Descriptors() {
		keys[d.Name] = d.LabelKeys
	}
	out := map[string]map[string]uint64{}
	add := func(scope string, name string, values []string, v uint64, ts int64) {
		k, ok := keys[name]
		if !ok {
			t.Errorf("%s: metric %q has no descriptor", scope, name)
			return
		}
		if len(values) != len(k) {
			t.Errorf("%s: %s has label values %v for keys %v", scope, name, values, k)
			return
		}
		if ts != fakeNow.UnixNano() {
			t.Errorf("%s: %s has timestamp %d, want %d", scope, name, ts, fakeNow.UnixNano())
		}
		var parts []string
		for i := range k {
			parts = append(parts, k[i]+"="+values[i])
		}
		l := strings.Join(parts, ",")
		if out[name] == nil {
			out[name] = map[string]uint64{}
		}
		if _, dup := out[name][l]; dup {
			t.Errorf("%s: %s{%s} reported twice", scope, name, l)
		}
		out[name][l] = v
	}
	for _, m := range pm.GetMetrics() {
		add("pod", m.GetName(), m.GetLabelValues(), m.GetValue().GetValue(), m.GetTimestamp())
	}
	for _, cm := range pm.GetContainerMetrics() {
		for _, m := range cm.GetMetrics() {
			add(cm.GetContainerId(), m.GetName(), m.GetLabelValues(), m.GetValue().GetValue(), m.GetTimestamp())
		}
	}
	return out
}
