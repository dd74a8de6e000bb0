package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/status"

	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/core/runtime"
	"github.com/hullrt/hull/core/taskmetrics"
	"github.com/hullrt/hull/plugin"
)

// apiMetrics counts API calls by method and code, and (with
// metrics.grpc_histogram) records their latency. A nil *apiMetrics records
// nothing, so the interceptors need no second path when metrics are off.
type apiMetrics struct {
	calls   *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

func newAPIMetrics(reg *prometheus.Registry, histogram bool) *apiMetrics {
	m := &apiMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "hull", Name: "grpc_calls_total", Help: "gRPC API calls handled, by method and status code.",
		}, []string{"method", "code"}),
	}
	reg.MustRegister(m.calls)
	if histogram {
		m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "hull", Name: "grpc_call_seconds", Help: "gRPC API call latency by method.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"method"})
		reg.MustRegister(m.latency)
	}
	return m
}

func (m *apiMetrics) observe(method string, start time.Time, err error) {
	if m == nil {
		return
	}
	m.calls.WithLabelValues(method, status.Code(err).String()).Inc()
	if m.latency != nil {
		m.latency.WithLabelValues(method).Observe(time.Since(start).Seconds())
	}
}

// serveMetrics serves Prometheus metrics at /v1/metrics on metrics.address
// (as containerd does): Go and process metrics, the API's hull_grpc_*, and
// every running task's cgroup metrics under containerd's container_* names,
// read from the shims at scrape time. It returns the API metrics and a stop
// func; with no address it returns nil metrics.
func (d *Daemon) serveMetrics() (*apiMetrics, func(), error) {
	c := d.cfg.Metrics
	if c.Address == "" {
		return nil, func() {}, nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(taskmetrics.NewCollector(d.runningTasks(), taskmetrics.Options{Log: d.log.With("component", "task-metrics")}))
	m := newAPIMetrics(reg, c.GRPCHistogram)
	lis, err := net.Listen("tcp", c.Address)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics.address %s: %w", c.Address, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux}
	go srv.Serve(lis)
	d.log.Info("metrics listening", "address", lis.Addr().String())
	return m, func() { srv.Close() }, nil
}

// runningTasks lists the tasks of every namespace for the task metrics,
// looking the runtime and the namespaces up in the plugin set at each
// scrape: a daemon whose runtime failed to load still serves its other
// metrics, and says why the task ones are missing in its log.
func (d *Daemon) runningTasks() taskmetrics.Lister {
	return taskmetrics.ListerFunc(func(ctx context.Context) ([]runtime.Task, error) {
		inst, err := d.plugins.GetByID(plugin.RuntimePluginV2, "task")
		if err != nil {
			return nil, err
		}
		rt, ok := inst.(runtime.Runtime)
		if !ok {
			return nil, fmt.Errorf("runtime plugin is a %T, not a runtime", inst)
		}
		inst, err = d.plugins.GetSingle(plugin.MetadataPlugin)
		if err != nil {
			return nil, err
		}
		db, ok := inst.(interface{ Namespaces() namespaces.Store })
		if !ok {
			return nil, fmt.Errorf("metadata plugin is a %T, which keeps no namespaces", inst)
		}
		return taskmetrics.AcrossNamespaces(db.Namespaces().List, rt).Tasks(ctx)
	})
}
