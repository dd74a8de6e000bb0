package introspection

import (
	"errors"
	"github.com/hullrt/hull/internal/servicetest"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	api "github.com/containerd/containerd/api/services/introspection/v1"
	"github.com/containerd/errdefs"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/plugins/services"
)

// pluginSet holds three plugins as hulld would have them after init: two
// running with exports and capabilities, one failed.
func pluginSet() *plugin.Set {
	set := &plugin.Set{}
	set.Add(&plugin.Plugin{
		Registration: &plugin.Registration{Type: plugin.SnapshotPlugin, ID: "overlayfs"},
		Meta:         plugin.Meta{Exports: map[string]string{"root": "/var/lib/hull/overlay", "config.effective": "/etc/x"}, Capabilities: []string{"remap-ids", "rebase"}},
	})
	set.Add(&plugin.Plugin{
		Registration: &plugin.Registration{Type: plugin.SnapshotPlugin, ID: "native", Requires: []plugin.Type{plugin.MetadataPlugin, plugin.EventPlugin}},
		Meta:         plugin.Meta{Exports: map[string]string{"root": "/var/lib/hull/native"}},
	})
	set.Add(&plugin.Plugin{
		Registration: &plugin.Registration{Type: plugin.GRPCPlugin, ID: "broken"},
		Err:          errors.New("cannot bind /run/x"),
	})
	return set
}

func ids(ps []*api.Plugin) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.ID)
	}
	return out
}

func TestPluginsFilters(t *testing.T) {
	l := NewLocal(pluginSet(), "u-1")
	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{"", []string{"overlayfs", "native", "broken"}},
		{"type==" + string(plugin.SnapshotPlugin), []string{"overlayfs", "native"}},
		{"id==native", []string{"native"}},
		{"type==" + string(plugin.GRPCPlugin) + ",id==broken", []string{"broken"}},
		{"capabilities", []string{"overlayfs"}},
		{"capabilities~=rebase", []string{"overlayfs"}},
		{"exports", []string{"overlayfs", "native"}},
		{`exports.root=="/var/lib/hull/native"`, []string{"native"}},
		{`exports.config.effective=="/etc/x"`, []string{"overlayfs"}},
		{"unknown==x", nil},
	} {
		var filters []string
		if tc.filter != "" {
			filters = []string{tc.filter}
		}
		resp, err := l.Plugins(t.Context(), &api.PluginsRequest{Filters: filters})
		if err != nil {
			t.Fatalf("%q: %v", tc.filter, err)
		}
		if got := ids(resp.Plugins); !slices.Equal(got, tc.want) {
			t.Errorf("%q: %v, want %v", tc.filter, got, tc.want)
		}
	}
	// Several filters: any may match.
	resp, err := l.Plugins(t.Context(), &api.PluginsRequest{Filters: []string{"id==native", "id==broken"}})
	if err != nil || !slices.Equal(ids(resp.Plugins), []string{"native", "broken"}) {
		t.Errorf("two filters: %v, %v", resp, err)
	}
	_, err = l.Plugins(t.Context(), &api.PluginsRequest{Filters: []string{"id~=["}})
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad filter: %v, want InvalidArgument", err)
	}
}

func TestPluginFields(t *testing.T) {
	resp, err := NewLocal(pluginSet(), "u-1").Plugins(t.Context(), &api.PluginsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	o, n, b := resp.Plugins[0], resp.Plugins[1], resp.Plugins[2]
	if o.Type != string(plugin.SnapshotPlugin) || o.Exports["root"] != "/var/lib/hull/overlay" || !slices.Equal(o.Capabilities, []string{"remap-ids", "rebase"}) || o.InitErr != nil {
		t.Errorf("overlayfs: %v", o)
	}
	if !slices.Equal(n.Requires, []string{string(plugin.MetadataPlugin), string(plugin.EventPlugin)}) {
		t.Errorf("native requires %v", n.Requires)
	}
	// A failed plugin carries its init error.
	if b.InitErr == nil || b.InitErr.Message != "cannot bind /run/x" || codes.Code(b.InitErr.Code) != codes.Unknown {
		t.Errorf("broken's init error: %v", b.InitErr)
	}
}

func TestServer(t *testing.T) {
	resp, err := NewLocal(&plugin.Set{}, "u-42").Server(t.Context(), &emptypb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.UUID != "u-42" || resp.Pid != uint64(os.Getpid()) {
		t.Errorf("server %v, want uuid u-42 and pid %d", resp, os.Getpid())
	}
	// The pid namespace is identified by its inode.
	fi, err := os.Stat("/proc/self/ns/pid")
	if err != nil {
		t.Fatal(err)
	}
	if ino := fi.Sys().(*syscall.Stat_t).Ino; resp.Pidns != ino {
		t.Errorf("pidns %d, want %d", resp.Pidns, ino)
	}
}

func TestLoadUUID(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "io.containerd.grpc.v1.introspection")
	calls := 0
	gen := func() string { calls++; return uuid.NewString() }
	first, err := loadUUID(dir, gen)
	if err != nil {
		t.Fatal(err)
	}
	second, err := loadUUID(dir, gen)
	if err != nil {
		t.Fatal(err)
	}
	if first != second || calls != 1 {
		t.Errorf("uuids %q then %q after %d generations, want one kept", first, second, calls)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "uuid")); err != nil || string(b) != first {
		t.Errorf("uuid file holds %q, %v", b, err)
	}
	// Written by hand with a newline: the UUID is read trimmed.
	if err := os.WriteFile(filepath.Join(dir, "uuid"), []byte(" hand-made\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := loadUUID(dir, gen); got != "hand-made" || calls != 1 {
		t.Errorf("hand-written uuid read as %q", got)
	}
	// An empty file is no UUID: a new one is made.
	if err := os.WriteFile(filepath.Join(dir, "uuid"), []byte("\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := loadUUID(dir, gen); got == "" || got == first || calls != 2 {
		t.Errorf("empty uuid file gave %q after %d generations", got, calls)
	}
	// A directory that cannot be made is an error.
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadUUID(filepath.Join(blocker, "sub"), gen); err == nil {
		t.Error("loadUUID under a file succeeded")
	}
}

// newClient builds both introspection plugins through their registrations,
// with root under dir, serves the gRPC one and returns a client and the
// set.
func newClient(t *testing.T, root string, props map[string]string) (api.IntrospectionClient, *plugin.Set) {
	t.Helper()
	set := pluginSet()
	reg := &plugin.Registry{}
	Register(reg)
	var svc services.GRPCService
	for _, r := range reg.Graph(nil) {
		p := set.Init(r, &plugin.InitContext{Context: t.Context(), Root: filepath.Join(root, r.URI()), Properties: props})
		if p.Err != nil {
			t.Fatal(p.Err)
		}
		if s, ok := p.Instance.(services.GRPCService); ok {
			svc = s
		}
	}
	return api.NewIntrospectionClient(servicetest.Serve(t, svc)), set
}

func TestServiceOverGRPC(t *testing.T) {
	root := t.TempDir()
	props := map[string]string{"root": "/var/lib/hull", "state": "/run/hull", "config.effective": "/run/hull/config.toml", "other": "x"}
	c, _ := newClient(t, root, props)
	ctx := servicetest.ClientCtx(t, "ns1")

	srv, err := c.Server(ctx, &emptypb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	// The UUID is kept where the gRPC plugin kept it before the service
	// layer, and survives a restart.
	b, err := os.ReadFile(filepath.Join(root, "io.containerd.grpc.v1.introspection", "uuid"))
	if err != nil || string(b) != srv.UUID {
		t.Errorf("uuid %q, file holds %q (%v)", srv.UUID, b, err)
	}
	c2, _ := newClient(t, root, nil)
	if srv2, err := c2.Server(ctx, &emptypb.Empty{}); err != nil || srv2.UUID != srv.UUID {
		t.Errorf("after a restart: %v, %v; want uuid %s", srv2, err, srv.UUID)
	}

	resp, err := c.Plugins(ctx, &api.PluginsRequest{Filters: []string{"id==introspection"}})
	if err != nil || len(resp.Plugins) != 1 {
		t.Fatalf("plugins: %v, %v", resp, err)
	}
	// The gRPC plugin exports where hulld keeps its state, and only that.
	ex := resp.Plugins[0].Exports
	if ex["root"] != "/var/lib/hull" || ex["state"] != "/run/hull" || ex["config.effective"] != "/run/hull/config.toml" || ex["other"] != "" {
		t.Errorf("exports %v", ex)
	}
	if resp.Plugins[0].Type != string(plugin.GRPCPlugin) || !slices.Equal(resp.Plugins[0].Requires, []string{string(plugin.ServicePlugin)}) {
		t.Errorf("plugin %v", resp.Plugins[0])
	}
	resp, err = c.Plugins(ctx, &api.PluginsRequest{Filters: []string{"id==broken"}})
	if err != nil || len(resp.Plugins) != 1 || resp.Plugins[0].InitErr.GetMessage() != "cannot bind /run/x" {
		t.Errorf("broken over gRPC: %v, %v", resp, err)
	}

	_, err = c.Plugins(ctx, &api.PluginsRequest{Filters: []string{"id~=["}})
	servicetest.WantCode(t, err, codes.InvalidArgument, "id~=[")
	info, err := c.PluginInfo(ctx, &api.PluginInfoRequest{Type: "io.containerd.snapshotter.v1", ID: "overlayfs"})
	if err != nil || info.Plugin.ID != "overlayfs" || !slices.Equal(info.Plugin.Capabilities, []string{"remap-ids", "rebase"}) {
		t.Errorf("plugin info of overlayfs: %v, %v", info, err)
	}
}

func TestServicePluginUUIDError(t *testing.T) {
	// A root whose parent is a file: the UUID cannot be kept, and the
	// service plugin does not start.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	reg := &plugin.Registry{}
	Register(reg)
	set := &plugin.Set{}
	for _, r := range reg.Graph(nil) {
		p := set.Init(r, &plugin.InitContext{Context: t.Context(), Root: filepath.Join(file, r.URI())})
		if p.Err == nil {
			t.Errorf("%s started without a place for its UUID", r.URI())
		}
	}
}
