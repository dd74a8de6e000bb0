// Package taskmetrics turns the cgroup statistics of running tasks into
// Prometheus metrics, under the names and labels containerd's task metrics
// use (container_cpu_total_nanoseconds, container_memory_usage_usage_bytes,
// container_pids_current, container_memory_oom_total, ... labelled
// container_id and namespace), so that dashboards and alerts written for
// containerd's /v1/metrics read hulld's unchanged.
//
// A Collector measures at scrape time: each Collect lists the tasks of every
// namespace and asks each task's shim for its statistics (Task.Stats, as
// containerd 2.x does), so nothing runs between scrapes and a task that is
// gone is simply absent from the next scrape. The shim calls run in
// parallel, a bounded number at a time, each with its own deadline and all
// within one deadline for the whole scrape, so that a stuck shim costs the
// scrape one timeout and never hangs it. A task whose statistics cannot be
// read (it has exited, its shim is gone or too slow) yields no series.
//
// Shims encode statistics as containerd's cgroups types: a cgroup v1
// io.containerd.cgroups.v1.Metrics on hosts whose controllers are v1 ones
// (legacy and hybrid hosts), a cgroup v2 io.containerd.cgroups.v2.Metrics on
// unified hosts. Both are understood; which metric names appear therefore
// depends on the host, as with containerd.
package taskmetrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/core/runtime"
)

// Lister lists the tasks to measure, across every namespace.
type Lister interface {
	Tasks(ctx context.Context) ([]runtime.Task, error)
}

// ListerFunc adapts a function to Lister.
type ListerFunc func(ctx context.Context) ([]runtime.Task, error)

// Tasks calls f.
func (f ListerFunc) Tasks(ctx context.Context) ([]runtime.Task, error) { return f(ctx) }

// AcrossNamespaces lists the tasks of rt in every namespace that names
// returns; a runtime's Tasks only sees the namespace in its context.
func AcrossNamespaces(names func(ctx context.Context) ([]string, error), rt runtime.Runtime) Lister {
	return ListerFunc(func(ctx context.Context) ([]runtime.Task, error) {
		nss, err := names(ctx)
		if err != nil {
			return nil, fmt.Errorf("list namespaces: %w", err)
		}
		var out []runtime.Task
		for _, ns := range nss {
			ts, err := rt.Tasks(namespaces.WithNamespace(ctx, ns))
			if err != nil {
				return nil, fmt.Errorf("list the tasks of namespace %q: %w", ns, err)
			}
			out = append(out, ts...)
		}
		return out, nil
	})
}

// Options bound a Collector's work per scrape. Zero values take the
// defaults.
type Options struct {
	// Parallel is how many shims are asked at once (default 8): enough
	// to hide each call's latency with a hundred tasks, few enough not
	// to wake every shim of the machine at the same instant.
	Parallel int
	// TaskTimeout bounds one shim's answer (default 2s, containerd's).
	TaskTimeout time.Duration
	// ScrapeTimeout bounds the whole collection (default 8s, inside
	// Prometheus's default 10s scrape timeout); tasks not asked by then
	// are left out of the scrape.
	ScrapeTimeout time.Duration
	// Log receives why a task yielded no series; slog.Default if nil.
	Log *slog.Logger
}

// Collector is a prometheus.Collector of the tasks a Lister lists.
type Collector struct {
	tasks  Lister
	opts   Options
	set    *familySet
	failed *prometheus.Desc
}

// NewCollector returns a collector of the tasks that tasks lists.
func NewCollector(tasks Lister, opts Options) *Collector {
	if opts.Parallel <= 0 {
		opts.Parallel = 8
	}
	if opts.TaskTimeout <= 0 {
		opts.TaskTimeout = 2 * time.Second
	}
	if opts.ScrapeTimeout <= 0 {
		opts.ScrapeTimeout = 8 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Collector{
		tasks: tasks, opts: opts, set: newFamilySet(),
		failed: prometheus.NewDesc("hull_task_metrics_failures",
			"Tasks whose statistics could not be read in this scrape (their shim failed or was too slow), by reason; exited tasks are not counted.",
			[]string{"reason"}, nil),
	}
}

// Describe sends the descriptors of every metric the collector may emit.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	c.set.describe(ch)
	ch <- c.failed
}

// Collect measures every listed task and sends its metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.ScrapeTimeout)
	defer cancel()
	tasks, err := c.tasks.Tasks(ctx)
	if err != nil {
		c.opts.Log.Warn("task metrics: list tasks", "error", err)
		return
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures = map[string]int{"error": 0, "timeout": 0}
		sem      = make(chan struct{}, c.opts.Parallel)
	)
	for _, t := range tasks {
		acquired := false
		select {
		case sem <- struct{}{}:
			acquired = true
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			// The scrape's time is up: the rest are not asked. (A slot
			// may have come free as the time ran out, and select picks
			// either way: the deadline is checked apart.)
			if acquired {
				<-sem
			}
			mu.Lock()
			failures["timeout"]++
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if reason := c.collectTask(ctx, t, ch); reason != "" {
				mu.Lock()
				failures[reason]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for reason, n := range failures {
		ch <- prometheus.MustNewConstMetric(c.failed, prometheus.GaugeValue, float64(n), reason)
	}
}

// collectTask sends one task's metrics; it returns why it sent none ("" if
// it did, or if the task has exited and so has nothing to measure).
func (c *Collector) collectTask(ctx context.Context, t runtime.Task, ch chan<- prometheus.Metric) string {
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(ctx, t.Namespace()), c.opts.TaskTimeout)
	defer cancel()
	stats, err := t.Stats(ctx)
	if err == nil && stats == nil {
		err = fmt.Errorf("the shim returned no statistics: %w", errdefs.ErrNotFound)
	}
	if err != nil {
		log := c.opts.Log.With("namespace", t.Namespace(), "id", t.ID())
		switch {
		case errdefs.IsNotFound(err):
			// Exited, or deleted since the listing: nothing to say.
			log.Debug("task metrics: no statistics", "error", err)
			return ""
		case errors.Is(err, context.DeadlineExceeded) || errdefs.IsDeadlineExceeded(err) || ctx.Err() != nil:
			log.Warn("task metrics: the shim did not answer in time", "timeout", c.opts.TaskTimeout, "error", err)
			return "timeout"
		default:
			log.Warn("task metrics: read statistics", "error", err)
			return "error"
		}
	}
	ms, err := c.set.convert(t.ID(), t.Namespace(), stats)
	for _, m := range ms {
		ch <- m
	}
	if err != nil {
		c.opts.Log.Warn("task metrics: decode statistics", "namespace", t.Namespace(), "id", t.ID(), "error", err)
		return "error"
	}
	return ""
}
