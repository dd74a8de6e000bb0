// Package healthcheck serves gRPC's standard health service, which
// reports SERVING once hulld's plugins are up.
package healthcheck

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/hullrt/hull/plugin"
)

type healthService struct{ *health.Server }

func (h healthService) RegisterGRPC(g *grpc.Server) { healthpb.RegisterHealthServer(g, h.Server) }

// Register adds the health service to r.
func Register(r *plugin.Registry) {
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "healthcheck",
		Init: func(ic *plugin.InitContext) (any, error) { return healthService{health.NewServer()}, nil },
	})
}
