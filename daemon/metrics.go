package daemon

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/status"
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
// (as containerd does) and returns the API metrics and a stop func; with no
// address it returns nil metrics.
func (d *Daemon) serveMetrics() (*apiMetrics, func(), error) {
	c := d.cfg.Metrics
	if c.Address == "" {
		return nil, func() {}, nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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
