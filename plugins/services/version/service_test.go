package version

import (
	"github.com/hullrt/hull/internal/servicetest"
	"testing"

	api "github.com/containerd/containerd/api/services/version/v1"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/internal/version"
	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/plugins/services"
)

func TestVersion(t *testing.T) {
	// The registered plugin serves hulld's version and revision; they are
	// set here so that the test sees them travel, not the defaults.
	oldV, oldR := version.Version, version.Revision
	version.Version, version.Revision = "v9.8.7", "abc123"
	t.Cleanup(func() { version.Version, version.Revision = oldV, oldR })

	reg := &plugin.Registry{}
	Register(reg)
	regs := reg.Graph(nil)
	if len(regs) != 1 || regs[0].Type != plugin.GRPCPlugin || regs[0].ID != "version" {
		t.Fatalf("registrations %v", regs)
	}
	p := (&plugin.Set{}).Init(regs[0], &plugin.InitContext{Context: t.Context()})
	if p.Err != nil {
		t.Fatal(p.Err)
	}
	c := api.NewVersionClient(servicetest.Serve(t, p.Instance.(services.GRPCService)))
	resp, err := c.Version(t.Context(), &emptypb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Version != "v9.8.7" || resp.Revision != "abc123" {
		t.Errorf("version %q revision %q", resp.Version, resp.Revision)
	}
}
