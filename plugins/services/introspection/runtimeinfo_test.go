package introspection

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	api "github.com/containerd/containerd/api/services/introspection/v1"
	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/hullrt/hull/internal/servicetest"
	"github.com/hullrt/hull/plugin"
)

// fakeShimEnv makes the test binary act as a shim's -info (see TestMain):
// "echo" prints a RuntimeInfo whose options are the Any read on stdin,
// "garbage" prints text, "fail" exits 2 with a message on stderr, "empty"
// prints nothing.
const fakeShimEnv = "HULL_TEST_FAKE_SHIM_INFO"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeShimEnv); mode != "" && len(os.Args) == 2 && os.Args[1] == "-info" {
		os.Exit(fakeShimInfo(mode))
	}
	os.Exit(m.Run())
}

func fakeShimInfo(mode string) int {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		return 3
	}
	switch mode {
	case "garbage":
		fmt.Print("usage: containerd-shim-x-v2 [flags]\n")
	case "fail":
		fmt.Fprint(os.Stderr, "flag provided but not defined: -info")
		return 2
	case "empty":
	case "echo":
		info := &apitypes.RuntimeInfo{Name: "io.containerd.fake.v2", Version: &apitypes.RuntimeVersion{Version: "1.2.3"}}
		if len(in) > 0 {
			var opts anypb.Any
			if err := proto.Unmarshal(in, &opts); err != nil {
				return 4
			}
			info.Options = &opts
		}
		out, _ := proto.Marshal(info)
		os.Stdout.Write(out)
	}
	return 0
}

// fakeShim returns the test binary under a shim's file name in a new
// directory, which it puts first on PATH, running as mode.
func fakeShim(t *testing.T, mode string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "containerd-shim-fake-v2")
	if err := os.Symlink(self, p); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv(fakeShimEnv, mode)
	return p
}

// infoPlugins is a set with a runtime plugin (whose instance is rt), a
// failed plugin, one without extra information and one that has some.
func infoPlugins(rt any) *plugin.Set {
	set := pluginSet()
	set.Add(&plugin.Plugin{Registration: &plugin.Registration{Type: plugin.RuntimePluginV2, ID: "task"}, Instance: rt,
		Meta: plugin.Meta{Exports: map[string]string{"state": "/run/x"}}})
	set.Add(&plugin.Plugin{Registration: &plugin.Registration{Type: plugin.InternalPlugin, ID: "talker"}, Instance: talker{}})
	return set
}

// talker answers PluginInfo with its request's type.
type talker struct{}

func (talker) PluginInfo(_ context.Context, req any) (any, error) {
	return &apitypes.RuntimeVersion{Version: fmt.Sprintf("%T", req)}, nil
}

// resolver is a runtime instance with its own name resolution.
type resolver struct{ path string }

func (r resolver) ResolveBinary(name string) (string, error) {
	if name != "io.containerd.configured.v2" {
		return "", fmt.Errorf("runtime %q: %w", name, errdefs.ErrNotFound)
	}
	return r.path, nil
}

func runtimeRequest(t *testing.T, path string, opts any) *anypb.Any {
	t.Helper()
	rr := &apitypes.RuntimeRequest{RuntimePath: path}
	if opts != nil {
		var err error
		if rr.Options, err = typeurl.MarshalAnyToProto(opts); err != nil {
			t.Fatal(err)
		}
	}
	a, err := typeurl.MarshalAnyToProto(rr)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func runtimeInfoOf(t *testing.T, resp *api.PluginInfoResponse) *apitypes.RuntimeInfo {
	t.Helper()
	var info apitypes.RuntimeInfo
	if err := typeurl.UnmarshalTo(resp.GetExtra(), &info); err != nil {
		t.Fatalf("extra %v: %v", resp.GetExtra(), err)
	}
	return &info
}

func TestPluginInfoWithoutOptions(t *testing.T) {
	l := NewLocal(infoPlugins(struct{}{}), "u")
	resp, err := l.PluginInfo(t.Context(), &api.PluginInfoRequest{Type: string(plugin.RuntimePluginV2), ID: "task"})
	if err != nil {
		t.Fatal(err)
	}
	if p := resp.Plugin; p.Type != string(plugin.RuntimePluginV2) || p.ID != "task" || p.Exports["state"] != "/run/x" || resp.Extra != nil {
		t.Errorf("runtime plugin: %v", resp)
	}
	// A plugin that failed is described, with its error, as long as
	// nothing is asked of it.
	resp, err = l.PluginInfo(t.Context(), &api.PluginInfoRequest{Type: string(plugin.GRPCPlugin), ID: "broken"})
	if err != nil || resp.Plugin.InitErr.GetMessage() != "cannot bind /run/x" {
		t.Errorf("failed plugin: %v, %v", resp, err)
	}
	for _, tc := range [][2]string{{string(plugin.GRPCPlugin), "nosuch"}, {"io.containerd.nosuch.v1", "task"}, {"", ""}} {
		_, err := l.PluginInfo(t.Context(), &api.PluginInfoRequest{Type: tc[0], ID: tc[1]})
		if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), tc[0]+"."+tc[1]) {
			t.Errorf("%s.%s: %v, want NotFound naming it", tc[0], tc[1], err)
		}
	}
}

func TestPluginInfoOptions(t *testing.T) {
	l := NewLocal(infoPlugins(struct{}{}), "u")
	opts := runtimeRequest(t, "io.containerd.runc.v2", nil)
	ask := func(typ plugin.Type, id string, o *anypb.Any) (*api.PluginInfoResponse, error) {
		return l.PluginInfo(t.Context(), &api.PluginInfoRequest{Type: string(typ), ID: id, Options: o})
	}
	if _, err := ask(plugin.GRPCPlugin, "broken", opts); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "cannot bind /run/x") {
		t.Errorf("options for a failed plugin: %v, want FailedPrecondition with its error", err)
	}
	if _, err := ask(plugin.SnapshotPlugin, "overlayfs", opts); !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "io.containerd.snapshotter.v1.overlayfs") {
		t.Errorf("options for a plugin without extra info: %v, want NotImplemented", err)
	}
	resp, err := ask(plugin.InternalPlugin, "talker", opts)
	if err != nil {
		t.Fatal(err)
	}
	var v apitypes.RuntimeVersion
	if err := typeurl.UnmarshalTo(resp.Extra, &v); err != nil || v.Version != "*types.RuntimeRequest" || resp.Plugin.ID != "talker" {
		t.Errorf("a provider got %q (%v); response %v", v.Version, err, resp)
	}
	// Options of a type nobody registered cannot be unpacked.
	if _, err := ask(plugin.InternalPlugin, "talker", &anypb.Any{TypeUrl: "example.com/NoSuch", Value: []byte{1}}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "example.com/NoSuch") {
		t.Errorf("unknown options type: %v, want InvalidArgument naming it", err)
	}
	// The runtime answers RuntimeRequests only.
	other, _ := typeurl.MarshalAnyToProto(&apitypes.RuntimeVersion{Version: "x"})
	if _, err := ask(plugin.RuntimePluginV2, "task", other); !errdefs.IsNotImplemented(err) {
		t.Errorf("runtime asked with a RuntimeVersion: %v, want NotImplemented", err)
	}
}

func TestRuntimeInfoRunsShim(t *testing.T) {
	shim := fakeShim(t, "echo")
	l := NewLocal(infoPlugins(struct{}{}), "u")
	runcOpts := &options.Options{BinaryName: "/usr/bin/crun", SystemdCgroup: true}
	for _, rt := range []string{"io.containerd.fake.v2", shim} {
		resp, err := l.PluginInfo(t.Context(), &api.PluginInfoRequest{Type: string(plugin.RuntimePluginV2), ID: "task", Options: runtimeRequest(t, rt, runcOpts)})
		if err != nil {
			t.Fatalf("%s: %v", rt, err)
		}
		info := runtimeInfoOf(t, resp)
		if info.Name != "io.containerd.fake.v2" || info.Version.GetVersion() != "1.2.3" || resp.Plugin.ID != "task" {
			t.Errorf("%s: info %v", rt, info)
		}
		// The shim got the options as an Any, type URL included.
		var got options.Options
		if err := typeurl.UnmarshalTo(info.Options, &got); err != nil || got.BinaryName != "/usr/bin/crun" || !got.SystemdCgroup {
			t.Errorf("%s: the shim read options %v (%v)", rt, &got, err)
		}
	}
	// Without options the shim reads an empty stdin.
	resp, err := l.PluginInfo(t.Context(), &api.PluginInfoRequest{Type: string(plugin.RuntimePluginV2), ID: "task", Options: runtimeRequest(t, "io.containerd.fake.v2", nil)})
	if err != nil || runtimeInfoOf(t, resp).Options != nil {
		t.Errorf("without options: %v, %v", resp, err)
	}
}

func TestRuntimeInfoUsesTheRuntimesResolution(t *testing.T) {
	shim := fakeShim(t, "echo")
	l := NewLocal(infoPlugins(resolver{path: shim}), "u")
	ask := func(rt string) error {
		_, err := l.PluginInfo(t.Context(), &api.PluginInfoRequest{Type: string(plugin.RuntimePluginV2), ID: "task", Options: runtimeRequest(t, rt, nil)})
		return err
	}
	if err := ask("io.containerd.configured.v2"); err != nil {
		t.Errorf("a name the runtime knows: %v", err)
	}
	// With a resolver, PATH is the runtime's business, not ours.
	if err := ask("io.containerd.fake.v2"); !errdefs.IsNotFound(err) {
		t.Errorf("a name the runtime does not know: %v, want its NotFound", err)
	}
	// A path does not need resolving.
	if err := ask(shim); err != nil {
		t.Errorf("a path: %v", err)
	}
}

func TestRuntimeInfoErrors(t *testing.T) {
	l := NewLocal(infoPlugins(struct{}{}), "u")
	ask := func(rt string) error {
		_, err := l.PluginInfo(t.Context(), &api.PluginInfoRequest{Type: string(plugin.RuntimePluginV2), ID: "task", Options: runtimeRequest(t, rt, nil)})
		return err
	}
	for _, rt := range []string{"", "bin/containerd-shim-runc-v2", "runc", "io.containerd..v2"} {
		if err := ask(rt); !errdefs.IsInvalidArgument(err) {
			t.Errorf("runtime %q: %v, want InvalidArgument", rt, err)
		}
	}
	for _, rt := range []string{"/nonexistent/containerd-shim-x-v2", "io.containerd.nosuchshim.v2"} {
		if err := ask(rt); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), strings.TrimPrefix(rt, "io.containerd.")[:8]) {
			t.Errorf("runtime %q: %v, want NotFound naming it", rt, err)
		}
	}
	for mode, want := range map[string]string{"garbage": "usage: containerd-shim", "fail": "flag provided but not defined", "empty": "printed nothing"} {
		shim := fakeShim(t, mode)
		err := ask(shim)
		if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), shim) {
			t.Errorf("shim that does %s: %v, want FailedPrecondition naming the shim and %q", mode, err, want)
		}
	}
}

func TestPluginInfoOverGRPC(t *testing.T) {
	shim := fakeShim(t, "echo")
	c, set := newClient(t, t.TempDir(), nil)
	set.Add(&plugin.Plugin{Registration: &plugin.Registration{Type: plugin.RuntimePluginV2, ID: "task"}, Instance: struct{}{}})
	ctx := servicetest.ClientCtx(t, "ns1")
	resp, err := c.PluginInfo(ctx, &api.PluginInfoRequest{Type: string(plugin.RuntimePluginV2), ID: "task", Options: runtimeRequest(t, shim, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if info := runtimeInfoOf(t, resp); info.Name != "io.containerd.fake.v2" {
		t.Errorf("over gRPC: %v", info)
	}
	_, err = c.PluginInfo(ctx, &api.PluginInfoRequest{Type: string(plugin.RuntimePluginV2), ID: "nosuch"})
	servicetest.WantCode(t, err, codes.NotFound, "io.containerd.runtime.v2.nosuch")
	_, err = c.PluginInfo(ctx, &api.PluginInfoRequest{Type: string(plugin.GRPCPlugin), ID: "broken", Options: runtimeRequest(t, shim, nil)})
	servicetest.WantCode(t, err, codes.FailedPrecondition, "cannot bind /run/x")
	_, err = c.PluginInfo(ctx, &api.PluginInfoRequest{Type: string(plugin.SnapshotPlugin), ID: "native", Options: runtimeRequest(t, shim, nil)})
	servicetest.WantCode(t, err, codes.Unimplemented, "io.containerd.snapshotter.v1.native")
}

func FuzzParseRuntimeInfo(f *testing.F) {
	good, _ := proto.Marshal(&apitypes.RuntimeInfo{Name: "io.containerd.runc.v2", Version: &apitypes.RuntimeVersion{Version: "2.4.2"},
		Features: &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/features/Features", Value: []byte(`{"mountOptions":["rro"]}`)}})
	for _, s := range [][]byte{good, nil, []byte("usage: shim"), {0x0a, 0xff}, good[:len(good)/2]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		info, err := parseRuntimeInfo(out)
		if err != nil {
			if !errdefs.IsFailedPrecondition(err) {
				t.Fatalf("error %v is not FailedPrecondition", err)
			}
			return
		}
		if info.Name == "" {
			t.Fatal("a RuntimeInfo without a name was accepted")
		}
	})
}

func FuzzRuntimeTarget(f *testing.F) {
	for _, s := range []string{"io.containerd.runc.v2", "/usr/bin/containerd-shim-runc-v2", "", "a/b", "runc", "io..v2", "/a/../b", "x.y\x00.v2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rt string) {
		path, name, err := runtimeTarget(rt)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("%q: error %v is not InvalidArgument", rt, err)
			}
			return
		}
		switch {
		case path != "" && name != "", path == "" && name == "":
			t.Fatalf("%q: path %q and name %q", rt, path, name)
		case path != "" && !filepath.IsAbs(path):
			t.Fatalf("%q: relative path %q", rt, path)
		case name != "" && (strings.Contains(name, "/") || !strings.HasPrefix(name, "containerd-shim-")):
			t.Fatalf("%q: binary name %q", rt, name)
		}
	})
}
