package healthcheck

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/hullrt/hull/internal/servicetest"
	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/plugins/services"
)

func check(t *testing.T, c healthpb.HealthClient) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	resp, err := c.Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Status
}

func TestServingFollowsTheDaemon(t *testing.T) {
	// The plugin alone does not make hulld healthy: NOT_SERVING until the
	// daemon says it serves, and again once it stops, for good. An
	// unknown service is NotFound, as gRPC's health API says.
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
	svc := p.Instance.(*Service)
	c := healthpb.NewHealthClient(servicetest.Serve(t, p.Instance.(services.GRPCService)))
	if st := check(t, c); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("status after init %v, want NOT_SERVING", st)
	}
	watch, err := c.Watch(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	next := func() healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		type result struct {
			r   *healthpb.HealthCheckResponse
			err error
		}
		ch := make(chan result, 1)
		go func() { r, err := watch.Recv(); ch <- result{r, err} }()
		select {
		case res := <-ch:
			if res.err != nil {
				t.Fatal(res.err)
			}
			return res.r.Status
		case <-time.After(10 * time.Second):
			t.Fatal("no health update within 10s")
		}
		return 0
	}
	if st := next(); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("first watched status %v, want NOT_SERVING", st)
	}
	svc.SetServing(true)
	if st := next(); st != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("watched status after SetServing(true) %v", st)
	}
	if st := check(t, c); st != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("status %v, want SERVING", st)
	}
	svc.Shutdown()
	if st := next(); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("watched status after Shutdown %v", st)
	}
	svc.SetServing(true)
	if st := check(t, c); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("status after Shutdown and SetServing(true) %v, want NOT_SERVING", st)
	}
	_, err = c.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "no.such.Service"})
	servicetest.WantCode(t, err, codes.NotFound, "unknown service")
}
