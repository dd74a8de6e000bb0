package healthcheck

import (
	"github.com/hullrt/hull/internal/servicetest"
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/plugins/services"
)

func TestServing(t *testing.T) {
	// Once the plugin runs, the health service reports the server as
	// serving; an unknown service is NotFound, as gRPC's health API says.
	reg := &plugin.Registry{}
	Register(reg)
	regs := reg.Graph(nil)
	if len(regs) != 1 || regs[0].Type != plugin.GRPCPlugin || regs[0].ID != "healthcheck" {
		t.Fatalf("registrations %v", regs)
	}
	p := (&plugin.Set{}).Init(regs[0], &plugin.InitContext{Context: t.Context()})
	if p.Err != nil {
		t.Fatal(p.Err)
	}
	c := healthpb.NewHealthClient(servicetest.Serve(t, p.Instance.(services.GRPCService)))
	resp, err := c.Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("status %v, want SERVING", resp.Status)
	}
	_, err = c.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "no.such.Service"})
	servicetest.WantCode(t, err, codes.NotFound, "unknown service")
}
