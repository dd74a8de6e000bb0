package podmetrics

import (
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// labels renders a series' labels as series does: the base labels of the
// app container (or of the pause container / the pod when ctr is
// PauseContainerName) and extra "key=value" pairs, sorted by key.
func labels(ctr string, extra ...string) string {
	kv := map[string]string{"container": ctr, "namespace": "shop", "pod": "web"}
	switch ctr {
	case "app":
		kv["id"], kv["image"] = fakeCtrID, "docker.io/library/busybox:1.36"
	case "pod":
		kv["container"], kv["id"], kv["image"] = PauseContainerName, fakePodID, ""
	default:
		kv["id"], kv["image"] = fakePodID, "registry.k8s.io/pause:3.10"
	}
	for _, e := range extra {
		k, v, _ := strings.Cut(e, "=")
		kv[k] = v
	}
	var keys []string
	for k := range kv {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+kv[k])
	}
	return strings.Join(parts, ",")
}

type want struct {
	name   string
	labels string
	value  uint64
}

func checkValues(t *testing.T, got map[string]map[string]uint64, wants []want) {
	t.Helper()
	for _, w := range wants {
		v, ok := got[w.name][w.labels]
		if !ok {
			t.Errorf("no %s{%s}; have %v", w.name, w.labels, got[w.name])
			continue
		}
		if v != w.value {
			t.Errorf("%s{%s} = %d, want %d", w.name, w.labels, v, w.value)
		}
	}
}

// Values common to both cgroup versions: the fake stats scale alike, and
// /proc, the spec and the filesystem numbers are the same.
func commonWants() []want {
	app := labels("app")
	pause := labels(PauseContainerName)
	return []want{
		// 10*12e9 + 999999999 ns truncates to 120 s.
		{cpuUsageSeconds, app, 120},
		{cpuUserSeconds, app, 80},
		{cpuSystemSeconds, app, 40}, // 40.5 s
		{cpuUsageSeconds, pause, 12},
		{cpuCFSPeriods, app, 1000},
		{cpuCFSThrottledPeriods, app, 70},
		{cpuCFSThrottledSeconds, app, 30},
		{memoryUsage, app, 50000},
		{memoryMaxUsage, app, 60000},
		{memoryWorkingSet, app, 46000},
		{memoryCache, app, 10000},
		{memoryRSS, app, 20000},
		{memoryMappedFile, app, 3000},
		{memorySwap, app, 5000},
		{memoryKernel, app, 7000},
		{memoryFailcnt, app, 10},
		{oomEvents, app, 20},
		{memoryFailures, labels("app", "failure_type=pgfault", "scope=hierarchy"), 130},
		{memoryFailures, labels("app", "failure_type=pgmajfault", "scope=hierarchy"), 30},
		{hugetlbUsage, labels("app", "pagesize=2MB"), 20 << 20},
		{threads, app, 40},
		{threadsMax, app, 0},
		// /proc: the app container's cgroup holds pids 200 and 201 with
		// 3+1 and 3+2 descriptors, of which 1 and 2 sockets.
		{processes, app, 2},
		{fileDescriptors, app, 9},
		{sockets, app, 3},
		{processes, pause, 1},
		{fileDescriptors, pause, 3},
		{sockets, pause, 0},
		{ulimitsSoft, labels("app", "ulimit=max_open_files"), 1024},
		{ulimitsSoft, labels("app", "ulimit=max_processes"), 63382},
		{ulimitsSoft, labels("app", "ulimit=max_nice_priority"), 0},
		// The spec.
		{specCPUPeriod, app, 50000},
		{specCPUShares, app, 256},
		{specCPUQuota, app, 25000},
		{specMemoryLimit, app, 256 << 20},
		{specMemoryReservation, app, 128 << 20},
		{specMemorySwapLimit, app, 512 << 20},
		{specCPUPeriod, pause, 100000},
		{specCPUShares, pause, 2},
		{specMemoryLimit, pause, 0},
		// Filesystem and times.
		{fsUsage, labels("app", "device=/dev/sda1"), 8192},
		{fsLimit, labels("app", "device=/dev/sda1"), 10 << 30},
		{fsInodesTotal, labels("app", "device=/dev/sda1"), 1000},
		{fsInodesFree, labels("app", "device=/dev/sda1"), 600},
		{startTime, app, uint64(fakeNow.Unix() - 60)},
		{lastSeen, app, uint64(fakeNow.Unix())},
		// The pod's network, lo left out.
		{networkReceiveBytes, labels("pod", "interface=eth0"), 1000},
		{networkReceivePackets, labels("pod", "interface=eth0"), 10},
		{networkReceiveErrors, labels("pod", "interface=eth0"), 1},
		{networkReceiveDropped, labels("pod", "interface=eth0"), 2},
		{networkTransmitBytes, labels("pod", "interface=eth0"), 2000},
		{networkTransmitPackets, labels("pod", "interface=eth0"), 20},
		{networkTransmitErrors, labels("pod", "interface=eth0"), 3},
		{networkTransmitDropped, labels("pod", "interface=eth0"), 4},
		{networkReceiveBytes, labels("pod", "interface=net1"), 5},
		{networkTransmitDropped, labels("pod", "interface=net1"), 12},
	}
}

func TestCollectV1(t *testing.T) {
	f := newFakeHost(t)
	pod, ctrs := f.pod("v1")
	c, logs := f.collector()
	pm := c.collect(pod, ctrs, fakeNow)
	if pm.PodSandboxId != fakePodID || len(pm.ContainerMetrics) != 2 || pm.ContainerMetrics[1].ContainerId != fakeCtrID {
		t.Fatalf("pod metrics for %q with containers %v", pm.PodSandboxId, pm.ContainerMetrics)
	}
	got := series(t, pm)
	vda := []string{"device=/dev/vda", "major=252", "minor=0"}
	checkValues(t, got, append(commonWants(),
		want{memoryFailures, labels("app", "failure_type=pgfault", "scope=container"), 110},
		want{memoryFailures, labels("app", "failure_type=pgmajfault", "scope=container"), 20},
		want{hugetlbMaxUsage, labels("app", "pagesize=2MB"), 40 << 20},
		want{blkioDeviceUsage, labels("app", append(vda, "operation=Read")...), 40960},
		want{blkioDeviceUsage, labels("app", append(vda, "operation=Write")...), 81920},
		want{blkioDeviceUsage, labels("app", append(vda, "operation=Total")...), 122880},
		// The stats do not name 8:0: /sys does.
		want{blkioDeviceUsage, labels("app", "device=/dev/sda", "major=8", "minor=0", "operation=Read"), 5120},
		want{fsReadsBytes, labels("app", "device=/dev/vda"), 40960},
		want{fsReadsBytes, labels("app", "device=/dev/sda"), 5120},
		want{fsWritesBytes, labels("app", "device=/dev/vda"), 81920},
		want{fsReads, labels("app", "device=/dev/vda"), 10},
		want{fsWrites, labels("app", "device=/dev/vda"), 20},
	))
	for _, name := range []string{pressureCPUWaiting, pressureMemoryStalled, pressureIOWaiting} {
		if len(got[name]) > 0 {
			t.Errorf("cgroup v1 has no PSI, yet %s = %v", name, got[name])
		}
	}
	for l := range got[networkReceiveBytes] {
		if strings.Contains(l, "interface=lo") {
			t.Errorf("loopback reported: %s", l)
		}
	}
	if len(got[networkReceiveBytes]) != 2 {
		t.Errorf("network series %v, want eth0 and net1", got[networkReceiveBytes])
	}
	if logs.Len() > 0 {
		t.Errorf("unexpected log output:\n%s", logs)
	}
}

func TestCollectV2(t *testing.T) {
	f := newFakeHost(t)
	pod, ctrs := f.pod("v2")
	c, logs := f.collector()
	got := series(t, c.collect(pod, ctrs, fakeNow))
	sda := []string{"device=/dev/sda", "major=8", "minor=0"}
	checkValues(t, got, append(commonWants(),
		// cgroup2's memory.stat is hierarchical: both scopes alike.
		want{memoryFailures, labels("app", "failure_type=pgfault", "scope=container"), 130},
		want{memoryFailures, labels("app", "failure_type=pgmajfault", "scope=container"), 30},
		want{blkioDeviceUsage, labels("app", append(sda, "operation=Read")...), 40960},
		want{blkioDeviceUsage, labels("app", append(sda, "operation=Write")...), 81920},
		want{fsReadsBytes, labels("app", "device=/dev/sda"), 40960},
		want{fsWritesBytes, labels("app", "device=/dev/sda"), 81920},
		want{fsReads, labels("app", "device=/dev/sda"), 10},
		want{fsWrites, labels("app", "device=/dev/sda"), 20},
		want{pressureCPUWaiting, labels("app"), 50},
		want{pressureCPUStalled, labels("app"), 20},
		want{pressureMemoryWaiting, labels("app"), 70},
		want{pressureMemoryStalled, labels("app"), 10},
		want{pressureIOWaiting, labels("app"), 90},
		want{pressureIOStalled, labels("app"), 80},
	))
	if len(got[hugetlbMaxUsage]) > 0 {
		t.Errorf("cgroup v2 keeps no hugetlb peak, yet %v", got[hugetlbMaxUsage])
	}
	if logs.Len() > 0 {
		t.Errorf("unexpected log output:\n%s", logs)
	}
}

// TestCollectMissingSources checks that what is not known is left out,
// not reported as zero.
func TestCollectMissingSources(t *testing.T) {
	f := newFakeHost(t)
	c, logs := f.collector()
	pm := c.collect(Pod{ID: "p", Name: "n", Namespace: "ns"}, []Container{{ID: "c", Name: "x", Stats: "not stats"}}, fakeNow)
	if len(pm.Metrics) != 0 {
		t.Errorf("pod metrics without a network namespace: %v", pm.Metrics)
	}
	var names []string
	for _, m := range pm.ContainerMetrics[0].Metrics {
		names = append(names, m.Name)
	}
	if !slices.Equal(names, []string{lastSeen}) {
		t.Errorf("metrics %v, want only %s", names, lastSeen)
	}
	if !strings.Contains(logs.String(), "not understood") {
		t.Errorf("stats of an unknown type not logged: %q", logs)
	}
}

func TestCollectV1PartialStats(t *testing.T) {
	f := newFakeHost(t)
	c, _ := f.collector()
	// A v1 memory controller without usage files: only what memory.stat
	// gives is reported, and CPU without CFS counters has no cfs series.
	stats := &v1.Metrics{
		CPU:    &v1.CPUStat{Usage: &v1.CPUUsage{Total: 3e9}},
		Memory: &v1.MemoryStat{TotalCache: 5, Swap: &v1.MemoryEntry{Usage: 10}},
	}
	got := series(t, c.collect(Pod{ID: "p"}, []Container{{ID: "c", Stats: stats}}, fakeNow))
	for _, name := range []string{memoryUsage, memoryWorkingSet, memorySwap, memoryFailcnt, cpuCFSPeriods} {
		if len(got[name]) > 0 {
			t.Errorf("%s reported without its source: %v", name, got[name])
		}
	}
	for _, name := range []string{memoryCache, cpuUsageSeconds, oomEvents} {
		if len(got[name]) != 1 {
			t.Errorf("%s: %v, want one series", name, got[name])
		}
	}
}

// TestCollectRecycledPid: a pid whose cgroup is not the container's is not
// counted as the container's.
func TestCollectRecycledPid(t *testing.T) {
	f := newFakeHost(t)
	pod, ctrs := f.pod("v1")
	ctrs[1].CgroupPath = fakePodCgroup + "/someone-else"
	c, logs := f.collector()
	got := series(t, c.collect(pod, ctrs[1:], fakeNow))
	for _, name := range []string{processes, fileDescriptors, sockets, ulimitsSoft} {
		if len(got[name]) > 0 {
			t.Errorf("%s reported for a pid in another cgroup: %v", name, got[name])
		}
	}
	if !strings.Contains(logs.String(), "someone-else") {
		t.Errorf("the mismatch is not logged: %q", logs)
	}
}

// TestCollectThreadsFromProc: without the pids controller in the stats,
// threads are counted in /proc and the limit read from pids.max.
func TestCollectThreadsFromProc(t *testing.T) {
	f := newFakeHost(t)
	pod, ctrs := f.pod("v1")
	ctrs[1].Stats.(*v1.Metrics).Pids = nil
	c, _ := f.collector()
	got := series(t, c.collect(pod, ctrs[1:], fakeNow))
	checkValues(t, got, []want{{threads, labels("app"), 4}, {threadsMax, labels("app"), 512}})
}

func TestCollectSpecDefaults(t *testing.T) {
	f := newFakeHost(t)
	c, _ := f.collector()
	unlimited := int64(-1)
	got := series(t, c.collect(Pod{}, []Container{
		{ID: "empty", Spec: &specs.Spec{}},
		{ID: "unlimited", Spec: &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &unlimited, Swap: &unlimited}}}}},
	}, fakeNow))
	for _, id := range []string{"empty", "unlimited"} {
		l := "container=,id=" + id + ",image=,namespace=,pod="
		checkValues(t, got, []want{
			{specCPUPeriod, l, 100000}, {specCPUShares, l, 1024},
			{specMemoryLimit, l, 0}, {specMemorySwapLimit, l, 0}, {specMemoryReservation, l, 0},
		})
	}
	if len(got[specCPUQuota]) > 0 {
		t.Errorf("quota reported without one: %v", got[specCPUQuota])
	}
}

func TestCgroupMatches(t *testing.T) {
	for _, tc := range []struct {
		found, spec string
		ok          bool
	}{
		{"/kubepods/pod1/abc", "", true},
		{"/kubepods/pod1/abc", "/kubepods/pod1/abc", true},
		{"/kubepods/pod1/abc", "kubepods/pod1/abc", true},
		{"/kubepods/pod1/abc", "/pod1/abc", true},
		{"/kubepods/pod1/abc", "/kubepods/pod1/ab", false},
		{"/kubepods/pod1/xabc", "/abc", false},
		{"/kubepods.slice/kubepods-pod1.slice/hull-abc.scope", "kubepods-pod1.slice:hull:abc", true},
		{"/kubepods.slice/kubepods-pod1.slice/hull-abd.scope", "kubepods-pod1.slice:hull:abc", false},
		{"/system.slice/abc.scope", "system.slice::abc", true},
		{"/machine.slice/my.slice", "system.slice:x:my.slice", true},
	} {
		if got := cgroupMatches(tc.found, tc.spec); got != tc.ok {
			t.Errorf("cgroupMatches(%q, %q) = %v, want %v", tc.found, tc.spec, got, tc.ok)
		}
	}
}

// TestCgroupOfMountRoot: a hierarchy mounted at a cgroup below its root
// (as inside a container) is found relative to that root.
func TestCgroupOfMountRoot(t *testing.T) {
	f := newFakeHost(t)
	f.write("proc/self/mountinfo", `40 31 0:36 /outer /sys/fs/cgroup/my\040pids rw - cgroup cgroup rw,pids
41 31 0:37 /elsewhere /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
`)
	f.write("proc/7/cgroup", "3:memory:/outer/inner\n2:pids:/outer/inner\n")
	c, _ := f.collector()
	dir, err := c.cgroupOf(7, "/outer/inner")
	if err != nil {
		t.Fatal(err)
	}
	if want := f.root + "/sys/fs/cgroup/my pids/inner"; dir != want {
		t.Errorf("cgroupOf = %q, want %q", dir, want)
	}
	f.write("proc/8/cgroup", "3:memory:/outer/inner\n")
	if _, err := c.cgroupOf(8, ""); err == nil {
		t.Error("a cgroup outside every mount was found")
	}
}

func TestCollectTimestampOfNow(t *testing.T) {
	f := newFakeHost(t)
	pod, ctrs := f.pod("v1")
	c, _ := f.collector()
	later := fakeNow.Add(time.Hour)
	pm := c.collect(pod, ctrs, later)
	for _, cm := range pm.ContainerMetrics {
		for _, m := range cm.Metrics {
			if m.Timestamp != later.UnixNano() {
				t.Fatalf("%s at %d, want %d", m.Name, m.Timestamp, later.UnixNano())
			}
		}
	}
	if n := len(pm.ContainerMetrics[0].Metrics); n < 40 {
		t.Errorf("only %d metrics for the pause container", n)
	}
}

// TestEmitterRefusesMismatches: a metric added under an unknown name or
// with labels other than its descriptor's is left out and recorded.
func TestEmitterRefusesMismatches(t *testing.T) {
	defs := map[string]described{}
	for _, d := range definitions() {
		defs[d.name] = described{d, d.labelKeys()}
	}
	e := newEmitter(defs, fakeNow, baseLabels{container: "c"})
	e.add("container_no_such_metric", 1)
	e.add(networkReceiveBytes, 1)                              // lacks interface
	e.add(networkReceiveBytes, 1, label{keyDevice, "sda"})     // wrong key
	e.add(cpuUsageSeconds, 1, label{keyInterface, "eth0"})     // one too many
	e.add(networkReceiveBytes, 7, label{keyInterface, "eth0"}) // right
	if len(e.out) != 1 || e.out[0].Value.Value != 7 || len(e.bad) != 4 {
		t.Errorf("out %v, bad %v; want the one right metric out and four bad", e.out, e.bad)
	}
}
