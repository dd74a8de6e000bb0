package taskmetrics

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/core/runtime"
)

// fakeTask is a task whose Stats answers with stats.
type fakeTask struct {
	runtime.Task // nil: only the methods below are called
	id, ns       string
	stats        func(ctx context.Context) (typeurl.Any, error)
}

func (t *fakeTask) ID() string        { return t.id }
func (t *fakeTask) Namespace() string { return t.ns }
func (t *fakeTask) Stats(ctx context.Context) (typeurl.Any, error) {
	if ns, _ := namespaces.Namespace(ctx); ns != t.ns {
		return nil, fmt.Errorf("Stats of %s/%s called in namespace %q", t.ns, t.id, ns)
	}
	return t.stats(ctx)
}

func statsOf(t *testing.T, m proto.Message) func(context.Context) (typeurl.Any, error) {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return func(context.Context) (typeurl.Any, error) { return a, nil }
}

func listing(tasks ...runtime.Task) Lister {
	return ListerFunc(func(context.Context) ([]runtime.Task, error) { return tasks, nil })
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// gather registers c and returns every sample as `name{label="value",...}`
// (labels sorted) to its value, and each family's type by name.
func gather(t *testing.T, c prometheus.Collector) (map[string]float64, map[string]string) {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	values, types := map[string]float64{}, map[string]string{}
	for _, mf := range mfs {
		types[mf.GetName()] = mf.GetType().String()
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(ls)
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			values[mf.GetName()+"{"+strings.Join(ls, ",")+"}"] = v
		}
	}
	return values, types
}

func expect(t *testing.T, values map[string]float64, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		got, ok := values[k]
		if !ok {
			var keys []string
			for k := range values {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			t.Errorf("no sample %s; have:\n%s", k, strings.Join(keys, "\n"))
			continue
		}
		if got != v {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
}

func TestCollectV1(t *testing.T) {
	stats := &v1.Metrics{
		CPU: &v1.CPUStat{
			Usage:      &v1.CPUUsage{Total: 3e9, Kernel: 1e9, User: 2e9, PerCPU: []uint64{1e9, 2e9}},
			Throttling: &v1.Throttle{Periods: 7, ThrottledPeriods: 2, ThrottledTime: 5000},
		},
		Memory: &v1.MemoryStat{
			Cache: 4096, RSS: 1 << 20, TotalRSS: 2 << 20, PgFault: 99,
			Usage: &v1.MemoryEntry{Usage: 3 << 20, Limit: 64 << 20, Max: 5 << 20, Failcnt: 12},
			Swap:  &v1.MemoryEntry{Usage: 3 << 20, Limit: 128 << 20},
		},
		MemoryOomControl: &v1.MemoryOomControl{OomKill: 2},
		Pids:             &v1.PidsStat{Current: 3, Limit: 100},
		Blkio: &v1.BlkIOStat{IoServiceBytesRecursive: []*v1.BlkIOEntry{
			{Op: "Read", Device: "sda", Major: 8, Minor: 0, Value: 8192},
			{Op: "Write", Device: "sda", Major: 8, Minor: 0, Value: 4096},
		}},
		Hugetlb: []*v1.HugetlbStat{{Pagesize: "2MB", Usage: 2 << 20, Max: 4 << 20, Failcnt: 1}},
	}
	c := NewCollector(listing(&fakeTask{id: "web", ns: "prod", stats: statsOf(t, stats)}), Options{Log: quiet()})
	values, types := gather(t, c)
	l := `{container_id="web",namespace="prod"}`
	expect(t, values, map[string]float64{
		"container_cpu_total_nanoseconds" + l:                                        3e9,
		"container_cpu_kernel_nanoseconds" + l:                                       1e9,
		"container_cpu_user_nanoseconds" + l:                                         2e9,
		`container_per_cpu_nanoseconds{container_id="web",cpu="1",namespace="prod"}`: 2e9,
		"container_cpu_throttled_periods_total" + l:                                  2,
		"container_cpu_throttled_time_nanoseconds" + l:                               5000,
		"container_memory_cache_bytes" + l:                                           4096,
		"container_memory_rss_bytes" + l:                                             1 << 20,
		"container_memory_total_rss_bytes" + l:                                       2 << 20,
		"container_memory_pgfault_bytes" + l:                                         99,
		"container_memory_usage_usage_bytes" + l:                                     3 << 20,
		"container_memory_usage_limit_bytes" + l:                                     64 << 20,
		"container_memory_usage_max_bytes" + l:                                       5 << 20,
		"container_memory_usage_failcnt_total" + l:                                   12,
		"container_memory_swap_limit_bytes" + l:                                      128 << 20,
		"container_memory_oom_total" + l:                                             2,
		"container_memory_oom_kill_total" + l:                                        2,
		"container_pids_current" + l:                                                 3,
		"container_pids_limit" + l:                                                   100,
		`container_blkio_io_service_bytes_recursive_bytes{container_id="web",device="sda",major="8",minor="0",namespace="prod",op="Read"}`: 8192,
		`container_hugetlb_usage_bytes{container_id="web",namespace="prod",page="2MB"}`:                                                    2 << 20,
		`hull_task_metrics_failures{reason="error"}`:                                                                                       0,
		`hull_task_metrics_failures{reason="timeout"}`:                                                                                     0,
	})
	// Sections the statistics lack give no series, rather than zeros
	// that would read as measured.
	for k := range values {
		if strings.HasPrefix(k, "container_memory_kernel_") || strings.HasPrefix(k, "container_cpu_usage_usec") {
			t.Errorf("sample %s from statistics that lack it", k)
		}
	}
	if types["container_memory_oom_total"] != "COUNTER" || types["container_memory_usage_usage_bytes"] != "GAUGE" {
		t.Errorf("types: oom %s, usage %s", types["container_memory_oom_total"], types["container_memory_usage_usage_bytes"])
	}
}

func TestCollectV2(t *testing.T) {
	stats := &v2.Metrics{
		CPU:          &v2.CPUStat{UsageUsec: 1500, UserUsec: 1000, SystemUsec: 500, NrPeriods: 4, NrThrottled: 1, ThrottledUsec: 20},
		Memory:       &v2.MemoryStat{Usage: 8 << 20, UsageLimit: 16 << 20, SwapUsage: 0, SwapLimit: 32 << 20, Anon: 6 << 20, File: 1 << 20, Pgfault: 40},
		MemoryEvents: &v2.MemoryEvents{Oom: 3, OomKill: 2, Max: 9},
		Pids:         &v2.PidsStat{Current: 2, Limit: 50},
		Io:           &v2.IOStat{Usage: []*v2.IOEntry{{Major: 259, Minor: 1, Rbytes: 100, Wbytes: 200, Rios: 3, Wios: 4}}},
	}
	c := NewCollector(listing(&fakeTask{id: "db", ns: "default", stats: statsOf(t, stats)}), Options{Log: quiet()})
	values, types := gather(t, c)
	l := `{container_id="db",namespace="default"}`
	dev := `{container_id="db",major="259",minor="1",namespace="default"}`
	expect(t, values, map[string]float64{
		"container_cpu_usage_usec_microseconds" + l:  1500,
		"container_cpu_user_usec_microseconds" + l:   1000,
		"container_cpu_system_usec_microseconds" + l: 500,
		"container_cpu_nr_throttled_total" + l:       1,
		"container_memory_usage_bytes" + l:           8 << 20,
		"container_memory_usage_limit_bytes" + l:     16 << 20,
		"container_memory_swap_usage_bytes" + l:      0,
		"container_memory_swap_limit_bytes" + l:      32 << 20,
		"container_memory_anon_bytes" + l:            6 << 20,
		"container_memory_pgfault_bytes" + l:         40,
		"container_memory_oom_total" + l:             3,
		"container_memory_oom_kill_total" + l:        2,
		"container_pids_current" + l:                 2,
		"container_pids_limit" + l:                   50,
		"container_io_rbytes_bytes" + dev:            100,
		"container_io_wbytes_bytes" + dev:            200,
		"container_io_rios_total" + dev:              3,
		"container_io_wios_total" + dev:              4,
	})
	if _, ok := values["container_cpu_total_nanoseconds"+l]; ok {
		t.Error("v2 statistics gave a v1 family")
	}
	if types["container_memory_oom_kill_total"] != "COUNTER" {
		t.Errorf("oom kill type %s", types["container_memory_oom_kill_total"])
	}
}

// TestFamiliesAgree checks that a name both versions use means the same
// in both (labels and type): a registry would refuse the scrape otherwise.
func TestFamiliesAgree(t *testing.T) {
	type shape struct {
		labels string
		vt     prometheus.ValueType
	}
	seen := map[string]shape{}
	check := func(name string, labels []string, vt prometheus.ValueType) {
		s := shape{strings.Join(labels, ","), vt}
		if prev, ok := seen[name]; ok && prev != s {
			t.Errorf("family %s: %+v and %+v", name, prev, s)
		}
		seen[name] = s
		if !strings.HasPrefix(name, "container_") {
			t.Errorf("family %s is not under container_, as containerd's are", name)
		}
	}
	for _, s := range v1Specs() {
		check(s.name, s.labels, s.vt)
	}
	for _, s := range v2Specs() {
		check(s.name, s.labels, s.vt)
	}
	// Both versions' families at once in one registry.
	v1s, v2s := statsOf(t, &v1.Metrics{Memory: &v1.MemoryStat{Usage: &v1.MemoryEntry{Limit: 1}}, Pids: &v1.PidsStat{Current: 1}}),
		statsOf(t, &v2.Metrics{Memory: &v2.MemoryStat{UsageLimit: 2}, Pids: &v2.PidsStat{Current: 2}})
	c := NewCollector(listing(&fakeTask{id: "a", ns: "x", stats: v1s}, &fakeTask{id: "b", ns: "x", stats: v2s}), Options{Log: quiet()})
	values, _ := gather(t, c)
	expect(t, values, map[string]float64{
		`container_memory_usage_limit_bytes{container_id="a",namespace="x"}`: 1,
		`container_memory_usage_limit_bytes{container_id="b",namespace="x"}`: 2,
	})
}

// TestCollectBounded: a shim that never answers costs the scrape one task
// timeout, not a hang; tasks that have exited are left out silently;
// other failures are counted.
func TestCollectBounded(t *testing.T) {
	var asked atomic.Int32
	hang := func(ctx context.Context) (typeurl.Any, error) {
		asked.Add(1)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	good := statsOf(t, &v1.Metrics{Pids: &v1.PidsStat{Current: 1}})
	tasks := []runtime.Task{
		&fakeTask{id: "stuck1", ns: "a", stats: hang},
		&fakeTask{id: "stuck2", ns: "a", stats: hang},
		&fakeTask{id: "exited", ns: "a", stats: func(context.Context) (typeurl.Any, error) {
			return nil, fmt.Errorf("container exited: %w", errdefs.ErrNotFound)
		}},
		&fakeTask{id: "broken", ns: "a", stats: func(context.Context) (typeurl.Any, error) {
			return &anypb.Any{TypeUrl: v1Name, Value: []byte{0xff, 0xff}}, nil
		}},
		&fakeTask{id: "windows", ns: "a", stats: func(context.Context) (typeurl.Any, error) {
			return &anypb.Any{TypeUrl: "io.containerd.windows.Stats"}, nil
		}},
		&fakeTask{id: "ok", ns: "b", stats: good},
	}
	c := NewCollector(listing(tasks...), Options{Parallel: 4, TaskTimeout: 200 * time.Millisecond, Log: quiet()})
	start := time.Now()
	values, _ := gather(t, c)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("scrape took %v with a task timeout of 200ms", d)
	}
	expect(t, values, map[string]float64{
		`container_pids_current{container_id="ok",namespace="b"}`: 1,
		`hull_task_metrics_failures{reason="timeout"}`:            2,
		`hull_task_metrics_failures{reason="error"}`:              2,
	})
	for k := range values {
		if strings.Contains(k, `"exited"`) || strings.Contains(k, `"stuck`) {
			t.Errorf("sample %s of a task without statistics", k)
		}
	}

	// The scrape's own deadline stops asking: with one shim at a time and
	// each stuck for longer than the scrape, only the first is asked.
	asked.Store(0)
	c = NewCollector(listing(tasks[0], tasks[1], tasks[5]), Options{Parallel: 1, TaskTimeout: time.Minute, ScrapeTimeout: 300 * time.Millisecond, Log: quiet()})
	start = time.Now()
	values, _ = gather(t, c)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("scrape took %v with a scrape timeout of 300ms", d)
	}
	if n := asked.Load(); n != 1 {
		t.Errorf("%d stuck shims asked, want 1", n)
	}
	expect(t, values, map[string]float64{`hull_task_metrics_failures{reason="timeout"}`: 3})
}

// fakeRuntime lists tasks by the namespace in the context.
type fakeRuntime struct {
	runtime.Runtime
	byNS map[string][]runtime.Task
}

func (r *fakeRuntime) Tasks(ctx context.Context) ([]runtime.Task, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	return r.byNS[ns], nil
}

func TestAcrossNamespaces(t *testing.T) {
	a, b := &fakeTask{id: "x", ns: "one"}, &fakeTask{id: "y", ns: "two"}
	rt := &fakeRuntime{byNS: map[string][]runtime.Task{"one": {a}, "two": {b}}}
	l := AcrossNamespaces(func(context.Context) ([]string, error) { return []string{"one", "two", "empty"}, nil }, rt)
	got, err := l.Tasks(context.Background())
	if err != nil || len(got) != 2 || got[0] != runtime.Task(a) || got[1] != runtime.Task(b) {
		t.Fatalf("tasks %v %v", got, err)
	}
	l = AcrossNamespaces(func(context.Context) ([]string, error) { return nil, errdefs.ErrUnavailable }, rt)
	if _, err := l.Tasks(context.Background()); !errdefs.IsUnavailable(err) {
		t.Fatalf("listing with a failing namespace store: %v", err)
	}
}

func TestDecode(t *testing.T) {
	v1any, _ := anypb.New(&v1.Metrics{Pids: &v1.PidsStat{Current: 4}})
	// Shims that register their types with typeurl send the bare name.
	bare := &anypb.Any{TypeUrl: v1Name, Value: v1any.Value}
	for _, a := range []typeurl.Any{v1any, bare} {
		m, err := decode(a)
		if err != nil {
			t.Fatalf("%s: %v", a.GetTypeUrl(), err)
		}
		if p := m.(*v1.Metrics).GetPids().GetCurrent(); p != 4 {
			t.Fatalf("%s: pids %d", a.GetTypeUrl(), p)
		}
	}
	if _, err := decode(&anypb.Any{TypeUrl: "x.y.Z"}); !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "x.y.Z") {
		t.Fatalf("unknown type: %v", err)
	}
	if _, err := decode(&anypb.Any{TypeUrl: v2Name, Value: []byte{0x0a}}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("truncated v2 statistics: %v", err)
	}
}

// FuzzConvert feeds arbitrary bytes as either version's statistics: the
// conversion never panics, and what it makes is gatherable.
func FuzzConvert(f *testing.F) {
	for _, m := range []proto.Message{
		&v1.Metrics{CPU: &v1.CPUStat{Usage: &v1.CPUUsage{PerCPU: []uint64{1, 2}}}, Blkio: &v1.BlkIOStat{IoServicedRecursive: []*v1.BlkIOEntry{{Op: "Read", Device: "sda"}}}},
		&v1.Metrics{Hugetlb: []*v1.HugetlbStat{{Pagesize: "\xff"}}},
		&v2.Metrics{Io: &v2.IOStat{Usage: []*v2.IOEntry{{Major: 1}}}, MemoryEvents: &v2.MemoryEvents{Oom: 1}},
	} {
		b, _ := proto.Marshal(m)
		f.Add(b, strings.HasSuffix(string(proto.MessageName(m)), "v2.Metrics"))
	}
	set := newFamilySet()
	f.Fuzz(func(t *testing.T, data []byte, isV2 bool) {
		url := v1Name
		if isV2 {
			url = v2Name
		}
		ms, err := set.convert("id", "ns", &anypb.Any{TypeUrl: url, Value: data})
		if err != nil && !errdefs.IsInvalidArgument(err) {
			t.Fatalf("error of another class: %v", err)
		}
		for _, m := range ms {
			if m == nil {
				t.Fatal("nil metric")
			}
		}
	})
}
