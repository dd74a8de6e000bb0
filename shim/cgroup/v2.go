package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"

	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
)

// metricsV2 reads a v2 cgroup directory as containerd's cgroup2 manager
// does: files of controllers not enabled for the cgroup are left at zero,
// but a cgroup directory that is gone is an error.
func metricsV2(dir string) (*v2.Metrics, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, err
	}
	m := &v2.Metrics{
		Pids: &v2.PidsStat{Current: readValue(dir, "pids.current"), Limit: readValue(dir, "pids.max")},
	}
	cpu, err := readKV(dir, "cpu.stat")
	if err != nil {
		return nil, err
	}
	m.CPU = &v2.CPUStat{
		UsageUsec: cpu["usage_usec"], UserUsec: cpu["user_usec"], SystemUsec: cpu["system_usec"],
		NrPeriods: cpu["nr_periods"], NrThrottled: cpu["nr_throttled"], ThrottledUsec: cpu["throttled_usec"],
		NrBursts: cpu["nr_bursts"], BurstUsec: cpu["burst_usec"],
		PSI: readPSI(dir, "cpu.pressure"),
	}
	mem, err := readKV(dir, "memory.stat")
	if err != nil {
		return nil, err
	}
	m.Memory = &v2.MemoryStat{
		Anon: mem["anon"], File: mem["file"], KernelStack: mem["kernel_stack"], Slab: mem["slab"], Sock: mem["sock"],
		Shmem: mem["shmem"], FileMapped: mem["file_mapped"], FileDirty: mem["file_dirty"], FileWriteback: mem["file_writeback"],
		AnonThp: mem["anon_thp"], InactiveAnon: mem["inactive_anon"], ActiveAnon: mem["active_anon"],
		InactiveFile: mem["inactive_file"], ActiveFile: mem["active_file"], Unevictable: mem["unevictable"],
		SlabReclaimable: mem["slab_reclaimable"], SlabUnreclaimable: mem["slab_unreclaimable"],
		Pgfault: mem["pgfault"], Pgmajfault: mem["pgmajfault"], WorkingsetRefault: mem["workingset_refault"],
		WorkingsetActivate: mem["workingset_activate"], WorkingsetNodereclaim: mem["workingset_nodereclaim"],
		Pgrefill: mem["pgrefill"], Pgscan: mem["pgscan"], Pgsteal: mem["pgsteal"], Pgactivate: mem["pgactivate"],
		Pgdeactivate: mem["pgdeactivate"], Pglazyfree: mem["pglazyfree"], Pglazyfreed: mem["pglazyfreed"],
		ThpFaultAlloc: mem["thp_fault_alloc"], ThpCollapseAlloc: mem["thp_collapse_alloc"],
		Usage: readValue(dir, "memory.current"), UsageLimit: readValue(dir, "memory.max"),
		SwapUsage: readValue(dir, "memory.swap.current"), SwapLimit: readValue(dir, "memory.swap.max"),
		MaxUsage: readValue(dir, "memory.peak"), SwapMaxUsage: readValue(dir, "memory.swap.peak"),
		PSI: readPSI(dir, "memory.pressure"),
	}
	ev, err := readKV(dir, "memory.events")
	if err != nil {
		return nil, err
	}
	if len(ev) > 0 {
		m.MemoryEvents = &v2.MemoryEvents{Low: ev["low"], High: ev["high"], Max: ev["max"], Oom: ev["oom"],
			OomKill: ev["oom_kill"], OomGroupKill: ev["oom_group_kill"]}
	}
	m.Io = &v2.IOStat{PSI: readPSI(dir, "io.pressure")}
	if data, err := os.ReadFile(filepath.Join(dir, "io.stat")); err == nil {
		for _, e := range parseIOStat(data) {
			m.Io.Usage = append(m.Io.Usage, &v2.IOEntry{Major: e.major, Minor: e.minor,
				Rbytes: e.values["rbytes"], Wbytes: e.values["wbytes"], Rios: e.values["rios"], Wios: e.values["wios"]})
		}
	}
	m.Hugetlb = hugetlbV2(dir)
	return m, nil
}

// hugetlbV2 reads the hugetlb.<size>.* files of the page sizes the cgroup
// has files for (the sizes the kernel supports), sorted by size name.
func hugetlbV2(dir string) []*v2.HugeTlbStat {
	names, err := filepath.Glob(filepath.Join(dir, "hugetlb.*.current"))
	if err != nil || len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	out := make([]*v2.HugeTlbStat, 0, len(names))
	for _, n := range names {
		size := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(n), "hugetlb."), ".current")
		ev, _ := readKV(dir, "hugetlb."+size+".events")
		out = append(out, &v2.HugeTlbStat{Pagesize: size, Current: readValue(dir, "hugetlb."+size+".current"),
			Max: readValue(dir, "hugetlb."+size+".max"), Failcnt: ev["max"]})
	}
	return out
}

// readValue reads a single-value file; a file that is missing or not a
// number reads as 0, as containerd reads it.
func readValue(dir, name string) uint64 {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return 0
	}
	v, _ := parseValue(data)
	return v
}

// readKV reads a flat keyed file; a missing one is empty, not an error
// (its controller is not enabled for the cgroup), other errors are.
func readKV(dir, name string) (map[string]uint64, error) {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]uint64{}, nil
	}
	if err != nil {
		return nil, err
	}
	return parseKV(data), nil
}

// readPSI reads a pressure file; nil when there is none (a kernel
// without PSI).
func readPSI(dir, name string) *v2.PSIStats {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return nil
	}
	some, full := parsePSI(data)
	conv := func(p *psiLine) *v2.PSIData {
		if p == nil {
			return nil
		}
		return &v2.PSIData{Avg10: p.avg10, Avg60: p.avg60, Avg300: p.avg300, Total: p.total}
	}
	return &v2.PSIStats{Some: conv(some), Full: conv(full)}
}
