package taskmetrics

import (
	"fmt"
	"strconv"
	"strings"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
)

// The labels every task metric carries, named as containerd names them.
var taskLabels = []string{"container_id", "namespace"}

// value is one sample of a family: its value and the values of the
// family's own labels (beyond taskLabels).
type value struct {
	v      float64
	labels []string
}

// spec is a metric family and how to read its samples from statistics of
// type M. The names are containerd's, unit suffixes included (even where
// containerd's unit is odd, such as memory_pgfault_bytes, a count): the
// point is that queries written against containerd keep working.
type spec[M any] struct {
	name, help string
	vt         prometheus.ValueType
	labels     []string
	values     func(M) []value
}

// field is the single sample get reads from section, when the statistics
// hold the section (a controller the cgroup lacks has none).
func field[S any](section *S, get func(*S) uint64) []value {
	if section == nil {
		return nil
	}
	return []value{{v: float64(get(section))}}
}

func gauge[M any](name, help string, values func(M) []value) spec[M] {
	return spec[M]{name: name, help: help, vt: prometheus.GaugeValue, values: values}
}

func counter[M any](name, help string, values func(M) []value) spec[M] {
	return spec[M]{name: name, help: help, vt: prometheus.CounterValue, values: values}
}

func labelled[M any](name, help string, labels []string, values func(M) []value) spec[M] {
	return spec[M]{name: name, help: help, vt: prometheus.GaugeValue, labels: labels, values: values}
}

// v1Specs are the families of cgroup v1 statistics.
func v1Specs() []spec[*v1.Metrics] {
	type m = *v1.Metrics
	cpu := func(name, help string, get func(*v1.CPUUsage) uint64) spec[m] {
		return gauge(name, help, func(s m) []value { return field(s.GetCPU().GetUsage(), get) })
	}
	throttle := func(name, help string, get func(*v1.Throttle) uint64) spec[m] {
		return gauge(name, help, func(s m) []value { return field(s.GetCPU().GetThrottling(), get) })
	}
	mem := func(stat, help string, get func(*v1.MemoryStat) uint64) spec[m] {
		return gauge("container_memory_"+stat+"_bytes", help, func(s m) []value { return field(s.Memory, get) })
	}
	out := []spec[m]{
		cpu("container_cpu_total_nanoseconds", "The total cpu time", func(u *v1.CPUUsage) uint64 { return u.Total }),
		cpu("container_cpu_kernel_nanoseconds", "The total kernel cpu time", func(u *v1.CPUUsage) uint64 { return u.Kernel }),
		cpu("container_cpu_user_nanoseconds", "The total user cpu time", func(u *v1.CPUUsage) uint64 { return u.User }),
		labelled("container_per_cpu_nanoseconds", "The total cpu time per cpu", []string{"cpu"}, func(s m) []value {
			var out []value
			for i, v := range s.GetCPU().GetUsage().GetPerCPU() {
				out = append(out, value{v: float64(v), labels: []string{strconv.Itoa(i)}})
			}
			return out
		}),
		throttle("container_cpu_throttle_periods_total", "The total cpu throttle periods", func(t *v1.Throttle) uint64 { return t.Periods }),
		throttle("container_cpu_throttled_periods_total", "The total cpu throttled periods", func(t *v1.Throttle) uint64 { return t.ThrottledPeriods }),
		throttle("container_cpu_throttled_time_nanoseconds", "The total cpu throttled time", func(t *v1.Throttle) uint64 { return t.ThrottledTime }),

		mem("cache", "The cache amount used", func(s *v1.MemoryStat) uint64 { return s.Cache }),
		mem("rss", "The rss amount used", func(s *v1.MemoryStat) uint64 { return s.RSS }),
		mem("rss_huge", "The rss_huge amount used", func(s *v1.MemoryStat) uint64 { return s.RSSHuge }),
		mem("mapped_file", "The mapped_file amount used", func(s *v1.MemoryStat) uint64 { return s.MappedFile }),
		mem("dirty", "The dirty amount", func(s *v1.MemoryStat) uint64 { return s.Dirty }),
		mem("writeback", "The writeback amount", func(s *v1.MemoryStat) uint64 { return s.Writeback }),
		mem("pgpgin", "The pgpgin amount", func(s *v1.MemoryStat) uint64 { return s.PgPgIn }),
		mem("pgpgout", "The pgpgout amount", func(s *v1.MemoryStat) uint64 { return s.PgPgOut }),
		mem("pgfault", "The pgfault amount", func(s *v1.MemoryStat) uint64 { return s.PgFault }),
		mem("pgmajfault", "The pgmajfault amount", func(s *v1.MemoryStat) uint64 { return s.PgMajFault }),
		mem("inactive_anon", "The inactive_anon amount", func(s *v1.MemoryStat) uint64 { return s.InactiveAnon }),
		mem("active_anon", "The active_anon amount", func(s *v1.MemoryStat) uint64 { return s.ActiveAnon }),
		mem("inactive_file", "The inactive_file amount", func(s *v1.MemoryStat) uint64 { return s.InactiveFile }),
		mem("active_file", "The active_file amount", func(s *v1.MemoryStat) uint64 { return s.ActiveFile }),
		mem("unevictable", "The unevictable amount", func(s *v1.MemoryStat) uint64 { return s.Unevictable }),
		mem("hierarchical_memory_limit", "The hierarchical_memory_limit amount", func(s *v1.MemoryStat) uint64 { return s.HierarchicalMemoryLimit }),
		mem("hierarchical_memsw_limit", "The hierarchical_memsw_limit amount", func(s *v1.MemoryStat) uint64 { return s.HierarchicalSwapLimit }),
		mem("total_cache", "The total_cache amount used", func(s *v1.MemoryStat) uint64 { return s.TotalCache }),
		mem("total_rss", "The total_rss amount used", func(s *v1.MemoryStat) uint64 { return s.TotalRSS }),
		mem("total_rss_huge", "The total_rss_huge amount used", func(s *v1.MemoryStat) uint64 { return s.TotalRSSHuge }),
		mem("total_mapped_file", "The total_mapped_file amount used", func(s *v1.MemoryStat) uint64 { return s.TotalMappedFile }),
		mem("total_dirty", "The total_dirty amount", func(s *v1.MemoryStat) uint64 { return s.TotalDirty }),
		mem("total_writeback", "The total_writeback amount", func(s *v1.MemoryStat) uint64 { return s.TotalWriteback }),
		mem("total_pgpgin", "The total_pgpgin amount", func(s *v1.MemoryStat) uint64 { return s.TotalPgPgIn }),
		mem("total_pgpgout", "The total_pgpgout amount", func(s *v1.MemoryStat) uint64 { return s.TotalPgPgOut }),
		mem("total_pgfault", "The total_pgfault amount", func(s *v1.MemoryStat) uint64 { return s.TotalPgFault }),
		mem("total_pgmajfault", "The total_pgmajfault amount", func(s *v1.MemoryStat) uint64 { return s.TotalPgMajFault }),
		mem("total_inactive_anon", "The total_inactive_anon amount", func(s *v1.MemoryStat) uint64 { return s.TotalInactiveAnon }),
		mem("total_active_anon", "The total_active_anon amount", func(s *v1.MemoryStat) uint64 { return s.TotalActiveAnon }),
		mem("total_inactive_file", "The total_inactive_file amount", func(s *v1.MemoryStat) uint64 { return s.TotalInactiveFile }),
		mem("total_active_file", "The total_active_file amount", func(s *v1.MemoryStat) uint64 { return s.TotalActiveFile }),
		mem("total_unevictable", "The total_unevictable amount", func(s *v1.MemoryStat) uint64 { return s.TotalUnevictable }),
	}
	// memory.{usage,memsw,kmem,kmem.tcp}_in_bytes and their max, limit
	// and failcnt files.
	for _, e := range []struct {
		name string
		get  func(*v1.MemoryStat) *v1.MemoryEntry
	}{
		{"usage", (*v1.MemoryStat).GetUsage},
		{"swap", (*v1.MemoryStat).GetSwap},
		{"kernel", (*v1.MemoryStat).GetKernel},
		{"kerneltcp", (*v1.MemoryStat).GetKernelTCP},
	} {
		entry := func(s m) *v1.MemoryEntry { return e.get(s.GetMemory()) }
		prefix := "container_memory_" + e.name
		out = append(out,
			gauge(prefix+"_failcnt_total", "The "+e.name+" failcnt", func(s m) []value { return field(entry(s), (*v1.MemoryEntry).GetFailcnt) }),
			gauge(prefix+"_limit_bytes", "The "+e.name+" limit", func(s m) []value { return field(entry(s), (*v1.MemoryEntry).GetLimit) }),
			gauge(prefix+"_max_bytes", "The "+e.name+" maximum usage", func(s m) []value { return field(entry(s), (*v1.MemoryEntry).GetMax) }),
			gauge(prefix+"_usage_bytes", "The "+e.name+" usage", func(s m) []value { return field(entry(s), (*v1.MemoryEntry).GetUsage) }),
		)
	}
	// cgroup v1 counts OOM kills (memory.oom_control's oom_kill) but not
	// OOM events: containerd counts those with an eventfd of its own.
	// Counting kills in both families keeps alerts on either working.
	oomKills := func(s m) []value { return field(s.GetMemoryOomControl(), (*v1.MemoryOomControl).GetOomKill) }
	out = append(out,
		counter(oomTotal, oomTotalHelp, oomKills),
		counter(oomKillTotal, oomKillTotalHelp, oomKills),
		gauge(pidsLimit, pidsLimitHelp, func(s m) []value { return field(s.GetPids(), (*v1.PidsStat).GetLimit) }),
		gauge(pidsCurrent, pidsCurrentHelp, func(s m) []value { return field(s.GetPids(), (*v1.PidsStat).GetCurrent) }),
	)
	blkio := func(name, help string, get func(*v1.BlkIOStat) []*v1.BlkIOEntry) spec[m] {
		return labelled(name, help, []string{"op", "device", "major", "minor"}, func(s m) []value {
			var out []value
			for _, e := range get(s.GetBlkio()) {
				if e == nil {
					continue
				}
				out = append(out, value{v: float64(e.Value), labels: []string{e.Op, e.Device, strconv.FormatUint(e.Major, 10), strconv.FormatUint(e.Minor, 10)}})
			}
			return out
		})
	}
	out = append(out,
		blkio("container_blkio_io_merged_recursive_total", "The blkio io merged recursive", (*v1.BlkIOStat).GetIoMergedRecursive),
		blkio("container_blkio_io_queued_recursive_total", "The blkio io queued recursive", (*v1.BlkIOStat).GetIoQueuedRecursive),
		blkio("container_blkio_io_service_bytes_recursive_bytes", "The blkio io service bytes recursive", (*v1.BlkIOStat).GetIoServiceBytesRecursive),
		blkio("container_blkio_io_service_time_recursive_total", "The blkio io service time recursive", (*v1.BlkIOStat).GetIoServiceTimeRecursive),
		blkio("container_blkio_io_serviced_recursive_total", "The blkio io serviced recursive", (*v1.BlkIOStat).GetIoServicedRecursive),
		blkio("container_blkio_io_time_recursive_total", "The blkio io time recursive", (*v1.BlkIOStat).GetIoTimeRecursive),
		blkio("container_blkio_sectors_recursive_total", "The blkio sectors recursive", (*v1.BlkIOStat).GetSectorsRecursive),
	)
	hugetlb := func(name, help string, get func(*v1.HugetlbStat) uint64) spec[m] {
		return labelled(name, help, []string{"page"}, func(s m) []value {
			var out []value
			for _, h := range s.GetHugetlb() {
				if h != nil {
					out = append(out, value{v: float64(get(h)), labels: []string{h.Pagesize}})
				}
			}
			return out
		})
	}
	return append(out,
		hugetlb("container_hugetlb_usage_bytes", "The hugetlb usage", (*v1.HugetlbStat).GetUsage),
		hugetlb("container_hugetlb_failcnt_total", "The hugetlb failcnt", (*v1.HugetlbStat).GetFailcnt),
		hugetlb("container_hugetlb_max_bytes", "The hugetlb maximum usage", (*v1.HugetlbStat).GetMax),
	)
}

// The families both cgroup versions have, with one help text each (a
// registry refuses two for one name).
const (
	oomTotal         = "container_memory_oom_total"
	oomTotalHelp     = "The number of times a container has received an oom event (cgroup v1: its OOM kills)"
	oomKillTotal     = "container_memory_oom_kill_total"
	oomKillTotalHelp = "The number of processes of a container the OOM killer killed"
	pidsLimit        = "container_pids_limit"
	pidsLimitHelp    = "The limit to the number of pids allowed"
	pidsCurrent      = "container_pids_current"
	pidsCurrentHelp  = "The current number of pids"
)

// v2Specs are the families of cgroup v2 statistics.
func v2Specs() []spec[*v2.Metrics] {
	type m = *v2.Metrics
	cpu := func(name, help string, get func(*v2.CPUStat) uint64) spec[m] {
		return gauge(name, help, func(s m) []value { return field(s.CPU, get) })
	}
	memGauge := func(name, help string, get func(*v2.MemoryStat) uint64) spec[m] {
		return gauge(name, help, func(s m) []value { return field(s.Memory, get) })
	}
	mem := func(stat string, get func(*v2.MemoryStat) uint64) spec[m] {
		return memGauge("container_memory_"+stat+"_bytes", "The "+stat+" amount", get)
	}
	io := func(name, help string, get func(*v2.IOEntry) uint64) spec[m] {
		return labelled(name, help, []string{"major", "minor"}, func(s m) []value {
			var out []value
			for _, e := range s.GetIo().GetUsage() {
				if e != nil {
					out = append(out, value{v: float64(get(e)), labels: []string{strconv.FormatUint(e.Major, 10), strconv.FormatUint(e.Minor, 10)}})
				}
			}
			return out
		})
	}
	return []spec[m]{
		cpu("container_cpu_usage_usec_microseconds", "Total cpu usage (cgroup v2)", func(c *v2.CPUStat) uint64 { return c.UsageUsec }),
		cpu("container_cpu_user_usec_microseconds", "Current cpu usage in user space (cgroup v2)", func(c *v2.CPUStat) uint64 { return c.UserUsec }),
		cpu("container_cpu_system_usec_microseconds", "Current cpu usage in kernel space (cgroup v2)", func(c *v2.CPUStat) uint64 { return c.SystemUsec }),
		cpu("container_cpu_nr_periods_total", "Current cpu number of periods (only if controller is enabled)", func(c *v2.CPUStat) uint64 { return c.NrPeriods }),
		cpu("container_cpu_nr_throttled_total", "Total number of times tasks have been throttled (only if controller is enabled)", func(c *v2.CPUStat) uint64 { return c.NrThrottled }),
		cpu("container_cpu_throttled_usec_microseconds", "Total time duration for which tasks have been throttled. (only if controller is enabled)", func(c *v2.CPUStat) uint64 { return c.ThrottledUsec }),

		memGauge("container_memory_usage_bytes", "Current memory usage (cgroup v2)", func(s *v2.MemoryStat) uint64 { return s.Usage }),
		// The same names as v1's usage and swap entries: one help each.
		memGauge("container_memory_usage_limit_bytes", "The usage limit", func(s *v2.MemoryStat) uint64 { return s.UsageLimit }),
		memGauge("container_memory_swap_usage_bytes", "The swap usage", func(s *v2.MemoryStat) uint64 { return s.SwapUsage }),
		memGauge("container_memory_swap_limit_bytes", "The swap limit", func(s *v2.MemoryStat) uint64 { return s.SwapLimit }),
		mem("file_mapped", func(s *v2.MemoryStat) uint64 { return s.FileMapped }),
		mem("file_dirty", func(s *v2.MemoryStat) uint64 { return s.FileDirty }),
		mem("file_writeback", func(s *v2.MemoryStat) uint64 { return s.FileWriteback }),
		mem("pgactivate", func(s *v2.MemoryStat) uint64 { return s.Pgactivate }),
		mem("pgdeactivate", func(s *v2.MemoryStat) uint64 { return s.Pgdeactivate }),
		mem("pgfault", func(s *v2.MemoryStat) uint64 { return s.Pgfault }),
		mem("pgmajfault", func(s *v2.MemoryStat) uint64 { return s.Pgmajfault }),
		mem("pglazyfree", func(s *v2.MemoryStat) uint64 { return s.Pglazyfree }),
		mem("pgrefill", func(s *v2.MemoryStat) uint64 { return s.Pgrefill }),
		mem("pglazyfreed", func(s *v2.MemoryStat) uint64 { return s.Pglazyfreed }),
		mem("pgscan", func(s *v2.MemoryStat) uint64 { return s.Pgscan }),
		mem("pgsteal", func(s *v2.MemoryStat) uint64 { return s.Pgsteal }),
		mem("inactive_anon", func(s *v2.MemoryStat) uint64 { return s.InactiveAnon }),
		mem("active_anon", func(s *v2.MemoryStat) uint64 { return s.ActiveAnon }),
		mem("inactive_file", func(s *v2.MemoryStat) uint64 { return s.InactiveFile }),
		mem("active_file", func(s *v2.MemoryStat) uint64 { return s.ActiveFile }),
		mem("unevictable", func(s *v2.MemoryStat) uint64 { return s.Unevictable }),
		mem("anon", func(s *v2.MemoryStat) uint64 { return s.Anon }),
		mem("file", func(s *v2.MemoryStat) uint64 { return s.File }),
		mem("kernel_stack", func(s *v2.MemoryStat) uint64 { return s.KernelStack }),
		mem("slab", func(s *v2.MemoryStat) uint64 { return s.Slab }),
		mem("sock", func(s *v2.MemoryStat) uint64 { return s.Sock }),
		mem("shmem", func(s *v2.MemoryStat) uint64 { return s.Shmem }),
		mem("anon_thp", func(s *v2.MemoryStat) uint64 { return s.AnonThp }),
		mem("slab_reclaimable", func(s *v2.MemoryStat) uint64 { return s.SlabReclaimable }),
		mem("slab_unreclaimable", func(s *v2.MemoryStat) uint64 { return s.SlabUnreclaimable }),
		mem("workingset_refault", func(s *v2.MemoryStat) uint64 { return s.WorkingsetRefault }),
		mem("workingset_activate", func(s *v2.MemoryStat) uint64 { return s.WorkingsetActivate }),
		mem("workingset_nodereclaim", func(s *v2.MemoryStat) uint64 { return s.WorkingsetNodereclaim }),
		mem("thp_fault_alloc", func(s *v2.MemoryStat) uint64 { return s.ThpFaultAlloc }),
		mem("thp_collapse_alloc", func(s *v2.MemoryStat) uint64 { return s.ThpCollapseAlloc }),

		counter(oomTotal, oomTotalHelp, func(s m) []value { return field(s.GetMemoryEvents(), (*v2.MemoryEvents).GetOom) }),
		counter(oomKillTotal, oomKillTotalHelp, func(s m) []value { return field(s.GetMemoryEvents(), (*v2.MemoryEvents).GetOomKill) }),
		gauge(pidsLimit, pidsLimitHelp, func(s m) []value { return field(s.GetPids(), (*v2.PidsStat).GetLimit) }),
		gauge(pidsCurrent, pidsCurrentHelp, func(s m) []value { return field(s.GetPids(), (*v2.PidsStat).GetCurrent) }),

		io("container_io_rbytes_bytes", "IO bytes read", func(e *v2.IOEntry) uint64 { return e.Rbytes }),
		io("container_io_wbytes_bytes", "IO bytes written", func(e *v2.IOEntry) uint64 { return e.Wbytes }),
		io("container_io_rios_total", "Number of read IOs", func(e *v2.IOEntry) uint64 { return e.Rios }),
		io("container_io_wios_total", "Number of write IOs", func(e *v2.IOEntry) uint64 { return e.Wios }),
	}
}

// familySet holds the descriptors of both versions' families, one per
// name, and converts statistics into metrics with them.
type familySet struct {
	v1    []spec[*v1.Metrics]
	v2    []spec[*v2.Metrics]
	descs map[string]*prometheus.Desc
	order []string // names in the order the specs give them, for Describe
}

func newFamilySet() *familySet {
	s := &familySet{v1: v1Specs(), v2: v2Specs(), descs: map[string]*prometheus.Desc{}}
	add := func(name, help string, labels []string) {
		if _, ok := s.descs[name]; ok {
			return // a family both versions have
		}
		s.descs[name] = prometheus.NewDesc(name, help, append(append([]string(nil), taskLabels...), labels...), nil)
		s.order = append(s.order, name)
	}
	for _, sp := range s.v1 {
		add(sp.name, sp.help, sp.labels)
	}
	for _, sp := range s.v2 {
		add(sp.name, sp.help, sp.labels)
	}
	return s
}

func (s *familySet) describe(ch chan<- *prometheus.Desc) {
	for _, name := range s.order {
		ch <- s.descs[name]
	}
}

// The message names shims give their statistics, as type URLs or
// (behind a "type.googleapis.com/"-like prefix) inside them.
var (
	v1Name = string(proto.MessageName(&v1.Metrics{}))
	v2Name = string(proto.MessageName(&v2.Metrics{}))
)

// decode unmarshals a shim's statistics: a *v1.Metrics or a *v2.Metrics.
// Other types are NotImplemented, bytes that do not decode InvalidArgument.
func decode(a typeurl.Any) (proto.Message, error) {
	url := a.GetTypeUrl()
	var msg proto.Message
	switch url[strings.LastIndex(url, "/")+1:] {
	case v1Name:
		msg = &v1.Metrics{}
	case v2Name:
		msg = &v2.Metrics{}
	default:
		return nil, fmt.Errorf("statistics of type %q: only cgroup v1 and v2 metrics are understood: %w", url, errdefs.ErrNotImplemented)
	}
	if err := proto.Unmarshal(a.GetValue(), msg); err != nil {
		return nil, fmt.Errorf("statistics of type %q: %v: %w", url, err, errdefs.ErrInvalidArgument)
	}
	return msg, nil
}

// convert turns a task's statistics into its metrics. With an error it
// may still return the metrics that could be made.
func (s *familySet) convert(id, namespace string, a typeurl.Any) ([]prometheus.Metric, error) {
	msg, err := decode(a)
	if err != nil {
		return nil, err
	}
	switch st := msg.(type) {
	case *v1.Metrics:
		return samples(s, s.v1, id, namespace, st)
	default:
		return samples(s, s.v2, id, namespace, st.(*v2.Metrics))
	}
}

func samples[M any](s *familySet, specs []spec[M], id, namespace string, stats M) ([]prometheus.Metric, error) {
	var (
		out      []prometheus.Metric
		firstErr error
	)
	for _, sp := range specs {
		for _, v := range sp.values(stats) {
			m, err := prometheus.NewConstMetric(s.descs[sp.name], sp.vt, v.v, append([]string{id, namespace}, v.labels...)...)
			if err != nil {
				// A label value that is not UTF-8 (a device name or a
				// page size from a broken shim) loses its sample only.
				if firstErr == nil {
					firstErr = fmt.Errorf("metric %s of task %q: %v: %w", sp.name, id, err, errdefs.ErrInvalidArgument)
				}
				continue
			}
			out = append(out, m)
		}
	}
	return out, firstErr
}
