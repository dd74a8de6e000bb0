package podmetrics

import (
	"fmt"
	"strconv"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/errdefs"
)

// usage is one container's cgroup counters in cadvisor's terms, whichever
// cgroup version they came from. A nil part was not in the stats.
type usage struct {
	cpu      *cpuCounters
	memory   *memoryCounters
	pids     *pidsCounters
	hugetlb  []hugetlbCounters
	pressure *pressureCounters
	// ioBytes and ioOps are cadvisor's io_service_bytes and io_serviced:
	// per device and operation (Read, Write, and for cgroup v1 also Sync,
	// Async, Discard, Total).
	ioBytes, ioOps []blkioValue
}

type cpuCounters struct {
	totalNs, userNs, systemNs uint64
	// throttled is false when the stats hold no CFS counters.
	throttled                              bool
	periods, throttledPeriods, throttledNs uint64
}

type memoryCounters struct {
	// hasUsage is false when cgroup v1 stats lack memory.usage_in_bytes:
	// usage, maxUsage, failcnt and workingSet are then unknown.
	hasUsage                              bool
	usage, maxUsage, failcnt, workingSet  uint64
	cache, rss, mappedFile, swap, kernel  uint64
	oomKills                              uint64
	pgfault, pgmajfault                   uint64 // the cgroup's own
	hierarchyPgfault, hierarchyPgmajfault uint64 // with its descendants
}

type pidsCounters struct{ current, limit uint64 }

type hugetlbCounters struct {
	pagesize        string
	usage, maxUsage uint64
	hasMaxUsage     bool // cgroup v2 keeps no maximum
}

// pressureUsage holds PSI totals in microseconds: some (waiting) and full
// (stalled) for each resource.
type pressureCounters struct {
	cpuSome, cpuFull, memorySome, memoryFull, ioSome, ioFull uint64
	hasCPU, hasMemory, hasIO                                 bool
}

type blkioValue struct {
	major, minor uint64
	device       string // "" when the stats do not name it
	op           string
	value        uint64
}

// usageOf converts the shim's stats. Stats of another type are
// InvalidArgument.
func usageOf(stats any) (*usage, error) {
	switch s := stats.(type) {
	case *v1.Metrics:
		if s == nil {
			return nil, nil
		}
		return usageV1(s), nil
	case *v2.Metrics:
		if s == nil {
			return nil, nil
		}
		return usageV2(s), nil
	default:
		return nil, fmt.Errorf("cgroup stats of type %T: %w", stats, errdefs.ErrInvalidArgument)
	}
}

func usageV1(s *v1.Metrics) *usage {
	u := &usage{}
	if c := s.GetCPU(); c != nil {
		cu := &cpuCounters{}
		if us := c.GetUsage(); us != nil {
			// cgroup1 reports nanoseconds (cpuacct.usage; cpuacct.stat's
			// ticks are converted by the stats library).
			cu.totalNs, cu.userNs, cu.systemNs = us.Total, us.User, us.Kernel
		}
		if t := c.GetThrottling(); t != nil {
			cu.throttled = true
			cu.periods, cu.throttledPeriods, cu.throttledNs = t.Periods, t.ThrottledPeriods, t.ThrottledTime
		}
		u.cpu = cu
	}
	if m := s.GetMemory(); m != nil {
		mu := &memoryCounters{
			cache:               m.TotalCache,
			rss:                 m.TotalRSS,
			mappedFile:          m.TotalMappedFile,
			pgfault:             m.PgFault,
			pgmajfault:          m.PgMajFault,
			hierarchyPgfault:    m.TotalPgFault,
			hierarchyPgmajfault: m.TotalPgMajFault,
			kernel:              m.GetKernel().GetUsage(),
			oomKills:            s.GetMemoryOomControl().GetOomKill(),
		}
		if e := m.GetUsage(); e != nil {
			mu.hasUsage = true
			mu.usage, mu.maxUsage, mu.failcnt = e.Usage, e.Max, e.Failcnt
			mu.workingSet = saturatingSub(e.Usage, m.TotalInactiveFile)
			// memsw counts memory and swap together; without swap
			// accounting it is absent and swap reads 0, as cadvisor
			// reports it.
			mu.swap = saturatingSub(m.GetSwap().GetUsage(), e.Usage)
		}
		u.memory = mu
	}
	if p := s.GetPids(); p != nil {
		u.pids = &pidsCounters{current: p.Current, limit: p.Limit}
	}
	for _, h := range s.GetHugetlb() {
		u.hugetlb = append(u.hugetlb, hugetlbCounters{pagesize: h.Pagesize, usage: h.Usage, maxUsage: h.Max, hasMaxUsage: true})
	}
	if b := s.GetBlkio(); b != nil {
		for _, e := range b.IoServiceBytesRecursive {
			u.ioBytes = append(u.ioBytes, blkioValue{e.Major, e.Minor, e.Device, e.Op, e.Value})
		}
		for _, e := range b.IoServicedRecursive {
			u.ioOps = append(u.ioOps, blkioValue{e.Major, e.Minor, e.Device, e.Op, e.Value})
		}
	}
	return u
}

func usageV2(s *v2.Metrics) *usage {
	const usec = 1000 // nanoseconds
	u := &usage{}
	p := &pressureCounters{}
	if c := s.GetCPU(); c != nil {
		u.cpu = &cpuCounters{
			totalNs: c.UsageUsec * usec, userNs: c.UserUsec * usec, systemNs: c.SystemUsec * usec,
			// cgroup2's cpu.stat always holds the CFS counters.
			throttled: true,
			periods:   c.NrPeriods, throttledPeriods: c.NrThrottled, throttledNs: c.ThrottledUsec * usec,
		}
		p.hasCPU, p.cpuSome, p.cpuFull = psi(c.GetPSI())
	}
	if m := s.GetMemory(); m != nil {
		u.memory = &memoryCounters{
			hasUsage:   true,
			usage:      m.Usage,
			maxUsage:   m.MaxUsage,
			workingSet: saturatingSub(m.Usage, m.InactiveFile),
			// memory.events' max counts the times usage hit memory.max,
			// the nearest to cgroup1's failcnt.
			failcnt:    s.GetMemoryEvents().GetMax(),
			cache:      m.File,
			rss:        m.Anon,
			mappedFile: m.FileMapped,
			swap:       m.SwapUsage,
			// memory.stat's kernel memory parts the stats carry.
			kernel:   m.KernelStack + m.Slab + m.Sock,
			oomKills: s.GetMemoryEvents().GetOomKill(),
			// cgroup2's memory.stat is hierarchical only.
			pgfault: m.Pgfault, pgmajfault: m.Pgmajfault,
			hierarchyPgfault: m.Pgfault, hierarchyPgmajfault: m.Pgmajfault,
		}
		p.hasMemory, p.memorySome, p.memoryFull = psi(m.GetPSI())
	}
	if pi := s.GetPids(); pi != nil {
		u.pids = &pidsCounters{current: pi.Current, limit: pi.Limit}
	}
	for _, h := range s.GetHugetlb() {
		// cgroup2's Max is the limit (hugetlb.<size>.max), not a peak.
		u.hugetlb = append(u.hugetlb, hugetlbCounters{pagesize: h.Pagesize, usage: h.Current})
	}
	if io := s.GetIo(); io != nil {
		for _, e := range io.Usage {
			u.ioBytes = append(u.ioBytes,
				blkioValue{major: e.Major, minor: e.Minor, op: "Read", value: e.Rbytes},
				blkioValue{major: e.Major, minor: e.Minor, op: "Write", value: e.Wbytes})
			u.ioOps = append(u.ioOps,
				blkioValue{major: e.Major, minor: e.Minor, op: "Read", value: e.Rios},
				blkioValue{major: e.Major, minor: e.Minor, op: "Write", value: e.Wios})
		}
		p.hasIO, p.ioSome, p.ioFull = psi(io.GetPSI())
	}
	if p.hasCPU || p.hasMemory || p.hasIO {
		u.pressure = p
	}
	return u
}

// psi returns the some and full totals (microseconds) of PSI stats.
func psi(s *v2.PSIStats) (ok bool, some, full uint64) {
	if s == nil || (s.Some == nil && s.Full == nil) {
		return false, 0, 0
	}
	return true, s.GetSome().GetTotal(), s.GetFull().GetTotal()
}

func saturatingSub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// seconds truncates nanoseconds to whole seconds, the finest a CRI value
// can hold.
func seconds(ns uint64) uint64 { return ns / 1e9 }

// cgroupMetrics reports the cgroup counters.
func (c collector) cgroupMetrics(e *emitter, u *usage) {
	if cu := u.cpu; cu != nil {
		e.add(cpuUsageSeconds, seconds(cu.totalNs))
		e.add(cpuUserSeconds, seconds(cu.userNs))
		e.add(cpuSystemSeconds, seconds(cu.systemNs))
		if cu.throttled {
			e.add(cpuCFSPeriods, cu.periods)
			e.add(cpuCFSThrottledPeriods, cu.throttledPeriods)
			e.add(cpuCFSThrottledSeconds, seconds(cu.throttledNs))
		}
	}
	if m := u.memory; m != nil {
		if m.hasUsage {
			e.add(memoryUsage, m.usage)
			e.add(memoryMaxUsage, m.maxUsage)
			e.add(memoryWorkingSet, m.workingSet)
			e.add(memoryFailcnt, m.failcnt)
			e.add(memorySwap, m.swap)
		}
		e.add(memoryCache, m.cache)
		e.add(memoryRSS, m.rss)
		e.add(memoryMappedFile, m.mappedFile)
		e.add(memoryKernel, m.kernel)
		e.add(oomEvents, m.oomKills)
		for _, f := range []struct {
			kind, scope string
			v           uint64
		}{
			{"pgfault", "container", m.pgfault},
			{"pgmajfault", "container", m.pgmajfault},
			{"pgfault", "hierarchy", m.hierarchyPgfault},
			{"pgmajfault", "hierarchy", m.hierarchyPgmajfault},
		} {
			e.add(memoryFailures, f.v, label{keyFailureType, f.kind}, label{keyScope, f.scope})
		}
	}
	if p := u.pids; p != nil {
		e.add(threads, p.current)
		e.add(threadsMax, p.limit)
	}
	for _, h := range u.hugetlb {
		l := label{keyPagesize, h.pagesize}
		e.add(hugetlbUsage, h.usage, l)
		if h.hasMaxUsage {
			e.add(hugetlbMaxUsage, h.maxUsage, l)
		}
	}
	if p := u.pressure; p != nil {
		const usec = 1000
		if p.hasCPU {
			e.add(pressureCPUWaiting, seconds(p.cpuSome*usec))
			e.add(pressureCPUStalled, seconds(p.cpuFull*usec))
		}
		if p.hasMemory {
			e.add(pressureMemoryWaiting, seconds(p.memorySome*usec))
			e.add(pressureMemoryStalled, seconds(p.memoryFull*usec))
		}
		if p.hasIO {
			e.add(pressureIOWaiting, seconds(p.ioSome*usec))
			e.add(pressureIOStalled, seconds(p.ioFull*usec))
		}
	}
	names := deviceNames{c: c, known: map[[2]uint64]string{}}
	for _, b := range u.ioBytes {
		dev := names.name(b)
		e.add(blkioDeviceUsage, b.value, label{keyDevice, dev},
			label{keyMajor, strconv.FormatUint(b.major, 10)}, label{keyMinor, strconv.FormatUint(b.minor, 10)},
			label{keyOperation, b.op})
		switch b.op {
		case "Read":
			e.add(fsReadsBytes, b.value, label{keyDevice, dev})
		case "Write":
			e.add(fsWritesBytes, b.value, label{keyDevice, dev})
		}
	}
	for _, b := range u.ioOps {
		switch b.op {
		case "Read":
			e.add(fsReads, b.value, label{keyDevice, names.name(b)})
		case "Write":
			e.add(fsWrites, b.value, label{keyDevice, names.name(b)})
		}
	}
}

// deviceNames names block devices by number, reading each one's name from
// /sys once per container.
type deviceNames struct {
	c     collector
	known map[[2]uint64]string
}

// name is the stats' device name, else /dev/<DEVNAME> from the device's
// uevent in /sys, else "major:minor".
func (d deviceNames) name(b blkioValue) string {
	if b.device != "" {
		return b.device
	}
	k := [2]uint64{b.major, b.minor}
	if n, ok := d.known[k]; ok {
		return n
	}
	num := strconv.FormatUint(b.major, 10) + ":" + strconv.FormatUint(b.minor, 10)
	n := num
	if dev, err := readDevName(d.c.path("sys", "dev", "block", num, "uevent")); err == nil && dev != "" {
		n = "/dev/" + dev
	}
	d.known[k] = n
	return n
}
