package daemon

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/config"
	"github.com/hullrt/hull/plugin"
)

func TestDefaultsPassCheck(t *testing.T) {
	// Every registered plugin's defaults are values hulld starts with.
	if err := config.Default().Check(PluginSections(Registry())); err != nil {
		t.Fatal(err)
	}
}

func TestFatalFailures(t *testing.T) {
	reg := func(typ plugin.Type, id string, requires ...plugin.Type) *plugin.Registration {
		return &plugin.Registration{Type: typ, ID: id, Requires: requires, Init: func(*plugin.InitContext) (any, error) { return nil, nil }}
	}
	content := reg(plugin.ContentPlugin, "content")
	meta := reg(plugin.MetadataPlugin, "bolt", plugin.ContentPlugin, plugin.SnapshotPlugin)
	overlay := reg(plugin.SnapshotPlugin, "overlayfs")
	svc := reg(plugin.ServicePlugin, "containers-service", plugin.MetadataPlugin)
	grpcSvc := reg(plugin.GRPCPlugin, "containers", plugin.ServicePlugin)
	intro := reg(plugin.GRPCPlugin, "introspection", "*")
	n := newNeeds([]*plugin.Registration{content, meta, overlay, svc, grpcSvc, intro})
	cause := fmt.Errorf("open meta.db: timeout: %w", errdefs.ErrUnavailable)
	for _, c := range []struct {
		p        *plugin.Plugin
		required map[string]bool
		want     string // "" for not fatal
	}{
		{&plugin.Plugin{Registration: meta}, nil, ""},
		// Needed by the services: fatal, with its own error.
		{&plugin.Plugin{Registration: meta, Err: cause}, nil, "plugin io.containerd.metadata.v1.bolt failed to start (needed by io.containerd.service.v1.containers-service): open meta.db: timeout"},
		// A snapshotter that skips itself is no failure.
		{&plugin.Plugin{Registration: overlay, Err: fmt.Errorf("no overlay: %w", plugin.ErrSkip)}, nil, ""},
		{&plugin.Plugin{Registration: overlay, Err: cause}, nil, "plugin io.containerd.snapshotter.v1.overlayfs failed to start (needed by io.containerd.metadata.v1.bolt)"},
		// Nobody needs a gRPC service ("*" makes nothing essential)...
		{&plugin.Plugin{Registration: grpcSvc, Err: cause}, nil, ""},
		// ...unless it is required.
		{&plugin.Plugin{Registration: grpcSvc, Err: cause}, map[string]bool{"io.containerd.grpc.v1.containers": true}, "required plugin io.containerd.grpc.v1.containers failed to start: open meta.db"},
	} {
		err := n.fatal(c.p, c.required)
		if c.want == "" {
			if err != nil {
				t.Errorf("%s (%v): fatal: %v", c.p.Registration.URI(), c.p.Err, err)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || !errors.Is(err, errdefs.ErrUnavailable) {
			t.Errorf("%s: fatal = %v, want %s... wrapping the cause", c.p.Registration.URI(), err, c.want)
		}
	}
	if got := listPlugins([]string{"a", "b", "c", "d", "e"}); got != "a, b, c and 2 more" {
		t.Errorf("listPlugins = %q", got)
	}
}
