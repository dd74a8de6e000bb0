// Package healthcheck serves gRPC's standard health service. It reports
// NOT_SERVING until the daemon says every plugin it needs is up and every
// listener serves (SetServing), and NOT_SERVING again from the moment the
// daemon begins to stop (Shutdown), so that a probe never reads a
// half-started or stopping hulld as healthy.
package healthcheck

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/hullrt/hull/plugin"
)

// Service is the health plugin's instance.
type Service struct{ srv *health.Server }

// New returns a health service reporting NOT_SERVING.
func New() *Service {
	s := &Service{srv: health.NewServer()}
	// gRPC's server starts out SERVING for "": hulld is not, yet.
	s.srv.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	return s
}

// RegisterGRPC serves grpc.health.v1.Health on g.
func (s *Service) RegisterGRPC(g *grpc.Server) { healthpb.RegisterHealthServer(g, s.srv) }

// SetServing reports hulld as a whole ("", the name health probes ask
// about) as serving or not. After Shutdown it changes nothing.
func (s *Service) SetServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.srv.SetServingStatus("", st)
}

// Shutdown reports NOT_SERVING for good, to probes and to open Watch
// streams, which learn of it before the server stops.
func (s *Service) Shutdown() { s.srv.Shutdown() }

// Register adds the health service to r.
func Register(r *plugin.Registry) {
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "healthcheck",
		Init: func(ic *plugin.InitContext) (any, error) { return New(), nil },
	})
}
