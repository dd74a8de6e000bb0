package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
)

// userHZ is the unit of cpuacct.stat: USER_HZ, which the kernel fixes at
// 100 on every architecture Linux exports it for.
const userHZ = 100

// metricsV1 reads a v1 cgroup, given its directory per controller, as
// containerd's cgroup1 library does with IgnoreNotExist: a controller
// whose files are missing (no kmem or swap accounting, no CFQ) is left
// out, other read errors fail the call. A cgroup whose directories are
// all gone is an error.
func metricsV1(dirs map[string]string) (*v1.Metrics, error) {
	gone := true
	for _, d := range dirs {
		if _, err := os.Stat(d); err == nil {
			gone = false
			break
		}
	}
	if gone {
		return nil, fmt.Errorf("cgroup v1 directories %v: %w", dirs, os.ErrNotExist)
	}
	m := &v1.Metrics{}
	readers := []struct {
		ctrl string
		read func(dir string, m *v1.Metrics) error
	}{
		{"hugetlb", hugetlbV1},
		{"pids", pidsV1},
		{"cpu", cpuV1},
		{"cpuacct", cpuacctV1},
		{"memory", memoryV1},
		{"blkio", blkioV1},
	}
	for _, r := range readers {
		dir, ok := dirs[r.ctrl]
		if !ok {
			continue
		}
		if err := r.read(dir, m); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("cgroup v1 %s: %w", r.ctrl, err)
		}
	}
	return m, nil
}

// readUint reads a single-value file, failing when it is missing or not a
// number.
func readUint(dir, name string) (uint64, error) {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return 0, err
	}
	v, err := parseValue(data)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", filepath.Join(dir, name), err)
	}
	return v, nil
}

func pidsV1(dir string, m *v1.Metrics) error {
	cur, err := readUint(dir, "pids.current")
	if err != nil {
		return err
	}
	// pids.max is "max" for no limit: 0, as containerd's library
	// reports it for v1.
	limit, _ := readUint(dir, "pids.max")
	if limit == ^uint64(0) {
		limit = 0
	}
	m.Pids = &v1.PidsStat{Current: cur, Limit: limit}
	return nil
}

// cpuStat is where the cpu and cpuacct controllers both write.
func cpuStat(m *v1.Metrics) *v1.CPUStat {
	if m.CPU == nil {
		m.CPU = &v1.CPUStat{Usage: &v1.CPUUsage{}, Throttling: &v1.Throttle{}}
	}
	return m.CPU
}

func cpuV1(dir string, m *v1.Metrics) error {
	data, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return err
	}
	kv := parseKV(data)
	t := cpuStat(m).Throttling
	t.Periods, t.ThrottledPeriods, t.ThrottledTime = kv["nr_periods"], kv["nr_throttled"], kv["throttled_time"]
	return nil
}

func cpuacctV1(dir string, m *v1.Metrics) error {
	data, err := os.ReadFile(filepath.Join(dir, "cpuacct.stat"))
	if err != nil {
		return err
	}
	ticks := parseKV(data)
	total, err := readUint(dir, "cpuacct.usage")
	if err != nil {
		return err
	}
	data, err = os.ReadFile(filepath.Join(dir, "cpuacct.usage_percpu"))
	if err != nil {
		return err
	}
	var percpu []uint64
	for _, f := range strings.Fields(string(data)) {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return fmt.Errorf("cpuacct.usage_percpu %q: %w", f, err)
		}
		percpu = append(percpu, v)
	}
	u := cpuStat(m).Usage
	u.Total, u.PerCPU = total, percpu
	u.User = ticks["user"] * (1e9 / userHZ)
	u.Kernel = ticks["system"] * (1e9 / userHZ)
	return nil
}

func memoryV1(dir string, m *v1.Metrics) error {
	data, err := os.ReadFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return err
	}
	raw := parseKV(data)
	s := &v1.MemoryStat{
		Cache: raw["cache"], RSS: raw["rss"], RSSHuge: raw["rss_huge"], MappedFile: raw["mapped_file"],
		Dirty: raw["dirty"], Writeback: raw["writeback"], PgPgIn: raw["pgpgin"], PgPgOut: raw["pgpgout"],
		PgFault: raw["pgfault"], PgMajFault: raw["pgmajfault"], InactiveAnon: raw["inactive_anon"],
		ActiveAnon: raw["active_anon"], InactiveFile: raw["inactive_file"], ActiveFile: raw["active_file"],
		Unevictable: raw["unevictable"], HierarchicalMemoryLimit: raw["hierarchical_memory_limit"],
		HierarchicalSwapLimit: raw["hierarchical_memsw_limit"], TotalCache: raw["total_cache"],
		TotalRSS: raw["total_rss"], TotalRSSHuge: raw["total_rss_huge"], TotalMappedFile: raw["total_mapped_file"],
		TotalDirty: raw["total_dirty"], TotalWriteback: raw["total_writeback"], TotalPgPgIn: raw["total_pgpgin"],
		TotalPgPgOut: raw["total_pgpgout"], TotalPgFault: raw["total_pgfault"], TotalPgMajFault: raw["total_pgmajfault"],
		TotalInactiveAnon: raw["total_inactive_anon"], TotalActiveAnon: raw["total_active_anon"],
		TotalInactiveFile: raw["total_inactive_file"], TotalActiveFile: raw["total_active_file"],
		TotalUnevictable: raw["total_unevictable"],
	}
	data, err = os.ReadFile(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		return err
	}
	oom := parseKV(data)
	m.Memory = s
	m.MemoryOomControl = &v1.MemoryOomControl{OomKillDisable: oom["oom_kill_disable"], UnderOom: oom["under_oom"], OomKill: oom["oom_kill"]}
	// Each accounting the kernel lacks (memsw without swap accounting,
	// kmem on newer kernels) is left empty rather than failing the rest.
	for _, e := range []struct {
		prefix string
		entry  **v1.MemoryEntry
	}{{"memory.", &s.Usage}, {"memory.memsw.", &s.Swap}, {"memory.kmem.", &s.Kernel}, {"memory.kmem.tcp.", &s.KernelTCP}} {
		me := &v1.MemoryEntry{}
		*e.entry = me
		for _, f := range []struct {
			name string
			v    *uint64
		}{{"usage_in_bytes", &me.Usage}, {"max_usage_in_bytes", &me.Max}, {"failcnt", &me.Failcnt}, {"limit_in_bytes", &me.Limit}} {
			v, err := readUint(dir, e.prefix+f.name)
			if errors.Is(err, os.ErrNotExist) {
				break
			}
			if err != nil {
				return err
			}
			*f.v = v
		}
	}
	return nil
}

func hugetlbV1(dir string, m *v1.Metrics) error {
	names, err := filepath.Glob(filepath.Join(dir, "hugetlb.*.usage_in_bytes"))
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, n := range names {
		size := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(n), "hugetlb."), ".usage_in_bytes")
		if strings.Contains(size, ".") { // hugetlb.<size>.rsvd.usage_in_bytes
			continue
		}
		s := &v1.HugetlbStat{Pagesize: size}
		for _, f := range []struct {
			name string
			v    *uint64
		}{{"usage_in_bytes", &s.Usage}, {"max_usage_in_bytes", &s.Max}, {"failcnt", &s.Failcnt}} {
			if *f.v, err = readUint(dir, "hugetlb."+size+"."+f.name); err != nil {
				return err
			}
		}
		m.Hugetlb = append(m.Hugetlb, s)
	}
	return nil
}

func blkioV1(dir string, m *v1.Metrics) error {
	b := &v1.BlkIOStat{}
	read := func(name string, into *[]*v1.BlkIOEntry) error {
		data, err := os.ReadFile(filepath.Join(dir, "blkio."+name))
		if err != nil {
			return err
		}
		for _, l := range parseBlkio(data) {
			*into = append(*into, &v1.BlkIOEntry{Op: l.op, Major: l.major, Minor: l.minor, Value: l.value})
		}
		return nil
	}
	// CFQ's files, where the kernel has them and the cgroup's devices
	// use CFQ; else the throttle files, which every kernel keeps.
	if _, err := os.Lstat(filepath.Join(dir, "blkio.io_serviced_recursive")); err == nil {
		for _, f := range []struct {
			name string
			into *[]*v1.BlkIOEntry
		}{
			{"sectors_recursive", &b.SectorsRecursive}, {"io_service_bytes_recursive", &b.IoServiceBytesRecursive},
			{"io_serviced_recursive", &b.IoServicedRecursive}, {"io_queued_recursive", &b.IoQueuedRecursive},
			{"io_service_time_recursive", &b.IoServiceTimeRecursive}, {"io_wait_time_recursive", &b.IoWaitTimeRecursive},
			{"io_merged_recursive", &b.IoMergedRecursive}, {"time_recursive", &b.IoTimeRecursive},
		} {
			if err := read(f.name, f.into); err != nil {
				return err
			}
		}
		if len(b.IoServicedRecursive)+len(b.IoServiceBytesRecursive)+len(b.SectorsRecursive) > 0 {
			m.Blkio = b
			return nil
		}
	}
	if err := read("throttle.io_serviced", &b.IoServicedRecursive); err != nil {
		return err
	}
	if err := read("throttle.io_service_bytes", &b.IoServiceBytesRecursive); err != nil {
		return err
	}
	m.Blkio = b
	return nil
}
