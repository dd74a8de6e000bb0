package cgroup

import (
	"os"
	"path/filepath"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"google.golang.org/protobuf/proto"
)

// Stats reads the cgroup's counters into containerd's metrics type for
// its version: io.containerd.cgroups.v1.Metrics or
// io.containerd.cgroups.v2.Metrics.
func (c *Cgroup) Stats() proto.Message {
	if c.V2 {
		return StatsV2(c.Unified)
	}
	return c.statsV1()
}

func (c *Cgroup) statsV1() *v1.Metrics {
	m := &v1.Metrics{}
	if d, ok := c.V1["pids"]; ok {
		m.Pids = &v1.PidsStat{Current: readUint(d, "pids.current"), Limit: pidsLimit(d)}
	}
	if d, ok := c.V1["cpuacct"]; ok {
		usage := &v1.CPUUsage{Total: readUint(d, "cpuacct.usage")}
		if b, err := os.ReadFile(filepath.Join(d, "cpuacct.usage_percpu")); err == nil {
			usage.PerCPU = ParseUints(b)
		}
		// cpuacct.stat is in USER_HZ ticks (100 a second on Linux).
		st := readKV(d, "cpuacct.stat")
		usage.User, usage.Kernel = st["user"]*10_000_000, st["system"]*10_000_000
		m.CPU = &v1.CPUStat{Usage: usage}
	}
	if d, ok := c.V1["cpu"]; ok {
		if m.CPU == nil {
			m.CPU = &v1.CPUStat{}
		}
		st := readKV(d, "cpu.stat")
		m.CPU.Throttling = &v1.Throttle{Periods: st["nr_periods"], ThrottledPeriods: st["nr_throttled"], ThrottledTime: st["throttled_time"]}
	}
	if d, ok := c.V1["memory"]; ok {
		m.Memory = MemoryV1(readKV(d, "memory.stat"))
		m.Memory.Usage = memEntry(d, "memory")
		m.Memory.Swap = memEntry(d, "memory.memsw")
		m.Memory.Kernel = memEntry(d, "memory.kmem")
		m.Memory.KernelTCP = memEntry(d, "memory.kmem.tcp")
		oc := readKV(d, "memory.oom_control")
		m.MemoryOomControl = &v1.MemoryOomControl{OomKillDisable: oc["oom_kill_disable"], UnderOom: oc["under_oom"], OomKill: oc["oom_kill"]}
	}
	return m
}

func memEntry(dir, prefix string) *v1.MemoryEntry {
	return &v1.MemoryEntry{
		Usage: readUint(dir, prefix+".usage_in_bytes"), Limit: readUint(dir, prefix+".limit_in_bytes"),
		Max: readUint(dir, prefix+".max_usage_in_bytes"), Failcnt: readUint(dir, prefix+".failcnt"),
	}
}

// MemoryV1 maps a v1 memory.stat to the metrics' MemoryStat.
func MemoryV1(s map[string]uint64) *v1.MemoryStat {
	return &v1.MemoryStat{
		Cache: s["cache"], RSS: s["rss"], RSSHuge: s["rss_huge"], MappedFile: s["mapped_file"],
		Dirty: s["dirty"], Writeback: s["writeback"], PgPgIn: s["pgpgin"], PgPgOut: s["pgpgout"],
		PgFault: s["pgfault"], PgMajFault: s["pgmajfault"], InactiveAnon: s["inactive_anon"],
		ActiveAnon: s["active_anon"], InactiveFile: s["inactive_file"], ActiveFile: s["active_file"],
		Unevictable: s["unevictable"], HierarchicalMemoryLimit: s["hierarchical_memory_limit"],
		HierarchicalSwapLimit: s["hierarchical_memsw_limit"], TotalCache: s["total_cache"],
		TotalRSS: s["total_rss"], TotalRSSHuge: s["total_rss_huge"], TotalMappedFile: s["total_mapped_file"],
		TotalDirty: s["total_dirty"], TotalWriteback: s["total_writeback"], TotalPgPgIn: s["total_pgpgin"],
		TotalPgPgOut: s["total_pgpgout"], TotalPgFault: s["total_pgfault"], TotalPgMajFault: s["total_pgmajfault"],
		TotalInactiveAnon: s["total_inactive_anon"], TotalActiveAnon: s["total_active_anon"],
		TotalInactiveFile: s["total_inactive_file"], TotalActiveFile: s["total_active_file"],
		TotalUnevictable: s["total_unevictable"],
	}
}

// StatsV2 reads a unified-hierarchy directory.
func StatsV2(d string) *v2.Metrics {
	m := &v2.Metrics{
		Pids: &v2.PidsStat{Current: readUint(d, "pids.current"), Limit: pidsLimit(d)},
	}
	cpu := readKV(d, "cpu.stat")
	m.CPU = &v2.CPUStat{UsageUsec: cpu["usage_usec"], UserUsec: cpu["user_usec"], SystemUsec: cpu["system_usec"],
		NrPeriods: cpu["nr_periods"], NrThrottled: cpu["nr_throttled"], ThrottledUsec: cpu["throttled_usec"]}
	m.Memory = MemoryV2(readKV(d, "memory.stat"))
	m.Memory.Usage = readUint(d, "memory.current")
	m.Memory.UsageLimit = readUint(d, "memory.max")
	m.Memory.MaxUsage = readUint(d, "memory.peak")
	m.Memory.SwapUsage = readUint(d, "memory.swap.current")
	m.Memory.SwapLimit = readUint(d, "memory.swap.max")
	ev := readKV(d, "memory.events")
	m.MemoryEvents = &v2.MemoryEvents{Low: ev["low"], High: ev["high"], Max: ev["max"], Oom: ev["oom"],
		OomKill: ev["oom_kill"], OomGroupKill: ev["oom_group_kill"]}
	return m
}

// MemoryV2 maps a v2 memory.stat to the metrics' MemoryStat.
func MemoryV2(s map[string]uint64) *v2.MemoryStat {
	return &v2.MemoryStat{
		Anon: s["anon"], File: s["file"], KernelStack: s["kernel_stack"], Slab: s["slab"], Sock: s["sock"],
		Shmem: s["shmem"], FileMapped: s["file_mapped"], FileDirty: s["file_dirty"], FileWriteback: s["file_writeback"],
		AnonThp: s["anon_thp"], InactiveAnon: s["inactive_anon"], ActiveAnon: s["active_anon"],
		InactiveFile: s["inactive_file"], ActiveFile: s["active_file"], Unevictable: s["unevictable"],
		SlabReclaimable: s["slab_reclaimable"], SlabUnreclaimable: s["slab_unreclaimable"], Pgfault: s["pgfault"],
		Pgmajfault: s["pgmajfault"], WorkingsetRefault: s["workingset_refault"],
		WorkingsetActivate: s["workingset_activate"], WorkingsetNodereclaim: s["workingset_nodereclaim"],
		Pgrefill: s["pgrefill"], Pgscan: s["pgscan"], Pgsteal: s["pgsteal"], Pgactivate: s["pgactivate"],
		Pgdeactivate: s["pgdeactivate"], Pglazyfree: s["pglazyfree"], Pglazyfreed: s["pglazyfreed"],
		ThpFaultAlloc: s["thp_fault_alloc"], ThpCollapseAlloc: s["thp_collapse_alloc"],
	}
}

// pidsLimit reads pids.max, where "max" (no limit) reports as 0 as in
// containerd's metrics.
func pidsLimit(d string) uint64 {
	if v := readUint(d, "pids.max"); v != ^uint64(0) {
		return v
	}
	return 0
}
