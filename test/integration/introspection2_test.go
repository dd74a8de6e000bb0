package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	introspectionapi "github.com/containerd/containerd/api/services/introspection/v1"
	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/hullrt/hull/internal/hulltest"
)

// ctr24 runs containerd v2.4.2's ctr against address and returns its
// stdout, and its error with stderr in it. (It warns on stderr, about
// cgroup v1 for one.)
func ctr24(t *testing.T, address string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(hulltest.Containerd2Bin(t, "ctr"), append([]string{"--address", address, "--timeout", "60s"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("%v: %s", err, stderr.String())
	}
	return string(out), err
}

// inspectRuntime runs `ctr plugins inspect-runtime` of containerd v2.4.2
// with args against address and decodes its JSON.
func inspectRuntime(t *testing.T, address string, args ...string) map[string]any {
	t.Helper()
	out, err := ctr24(t, address, append([]string{"plugins", "inspect-runtime"}, args...)...)
	if err != nil {
		t.Fatalf("ctr plugins inspect-runtime %v against %s: %v\n%s", args, address, err, out)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("inspect-runtime printed %q: %v", out, err)
	}
	return info
}

// mountOptions is Features.mountOptions of an inspect-runtime answer.
func mountOptions(info map[string]any) []string {
	f, _ := info["Features"].(map[string]any)
	opts, _ := f["mountOptions"].([]any)
	var out []string
	for _, o := range opts {
		s, _ := o.(string)
		out = append(out, s)
	}
	return out
}

// TestIntrospectionInspectRuntime runs containerd v2.4.2's `ctr plugins
// inspect-runtime` against hulld and against containerd v2.4.2, both
// finding containerd v2.4.2's runc shim on PATH: the answers are the same
// (name, version, the options given, runc's features with "rro" among the
// mount options when runc has it); hull's own shim answers too, by name
// and by path, and the error cases name what is wrong.
func TestIntrospectionInspectRuntime(t *testing.T) {
	hulltest.RequireTools(t, "runc")
	// hulld finds hull's shim next to itself.
	hulltest.Build(t, "containerd-shim-hull-v2", "github.com/hullrt/hull/cmd/containerd-shim-hull-v2")
	shim2 := hulltest.Containerd2Bin(t, "containerd-shim-runc-v2")
	d := hulltest.Start(t, hulltest.Options{Env: []string{"PATH=" + filepath.Dir(shim2) + string(os.PathListSeparator) + os.Getenv("PATH")}})
	ctrd := hulltest.StartContainerdWith(t, "", hulltest.ContainerdOptions{Binary: hulltest.Containerd2Bin(t, "containerd"), PathDirs: []string{filepath.Dir(shim2)}})

	features, err := exec.Command("runc", "features").Output()
	if err != nil {
		t.Fatalf("runc features: %v", err)
	}
	runcHasRRO := strings.Contains(string(features), `"rro"`)

	for _, args := range [][]string{
		{"--runtime", "io.containerd.runc.v2"},
		{"--runtime", "io.containerd.runc.v2", "--runc-binary", "/usr/sbin/runc", "--runc-root", "/nonexistent/root"},
		{"--runtime", shim2},
	} {
		hull := inspectRuntime(t, d.Address, args...)
		want := inspectRuntime(t, ctrd.Address, args...)
		h, _ := json.Marshal(hull)
		w, _ := json.Marshal(want)
		if string(h) != string(w) {
			t.Errorf("%v: hulld answers\n%s\ncontainerd v2.4.2 answers\n%s", args, h, w)
		}
		if hull["Name"] != "io.containerd.runc.v2" {
			t.Errorf("%v: name %v", args, hull["Name"])
		}
		if has := strings.Contains(strings.Join(mountOptions(hull), ","), "rro"); has != runcHasRRO {
			t.Errorf("%v: rro among the mount options: %v, runc features says %v (%v)", args, has, runcHasRRO, mountOptions(hull))
		}
	}
	// The options reached the shim, which echoes them.
	opts, _ := inspectRuntime(t, d.Address, "--runc-binary", "/usr/sbin/runc")["Options"].(map[string]any)
	if opts["binary_name"] != "/usr/sbin/runc" {
		t.Errorf("options echoed: %v", opts)
	}

	hull := inspectRuntime(t, d.Address, "--runtime", "io.containerd.hull.v2")
	if hull["Name"] != "io.containerd.hull.v2" || (runcHasRRO && !strings.Contains(strings.Join(mountOptions(hull), ","), "rro")) {
		t.Errorf("hull's shim: %v", hull)
	}

	for _, tc := range []struct{ runtime, want string }{
		{"io.containerd.nosuch.v2", "containerd-shim-nosuch-v2"},
		{"/nonexistent/containerd-shim-x-v2", "/nonexistent/containerd-shim-x-v2"},
		{"bin/containerd-shim-runc-v2", "bin/containerd-shim-runc-v2"},
		// Debian's 1.6 shim has no -info.
		{"/usr/bin/containerd-shim-runc-v2", "/usr/bin/containerd-shim-runc-v2 -info"},
	} {
		_, err := ctr24(t, d.Address, "plugins", "inspect-runtime", "--runtime", tc.runtime)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("runtime %s: %v; want a failure naming %q", tc.runtime, err, tc.want)
		}
	}
}

// TestIntrospectionPluginInfoCodes asks hulld and containerd v2.4.2 the
// same PluginInfo questions over gRPC and compares the codes; and hulld
// answers FailedPrecondition for options to a plugin that did not load.
func TestIntrospectionPluginInfoCodes(t *testing.T) {
	// A proxy plugin of a type hull cannot proxy fails alone: nothing
	// needs it, so hulld serves beside it.
	d := hulltest.Start(t, hulltest.Options{Config: "version = 3\n\n[proxy_plugins.sb]\n  type = \"sandbox\"\n  address = \"/nonexistent.sock\"\n"})
	ctrd := hulltest.StartContainerdWith(t, "", hulltest.ContainerdOptions{Binary: hulltest.Containerd2Bin(t, "containerd")})
	rr, err := typeurl.MarshalAnyToProto(&apitypes.RuntimeRequest{RuntimePath: "io.containerd.runc.v2"})
	if err != nil {
		t.Fatal(err)
	}
	ask := func(address string, req *introspectionapi.PluginInfoRequest) (*introspectionapi.PluginInfoResponse, error) {
		conn, err := grpc.NewClient("unix://"+address, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return introspectionapi.NewIntrospectionClient(conn).PluginInfo(context.Background(), req)
	}
	for _, tc := range []struct {
		req  *introspectionapi.PluginInfoRequest
		code codes.Code
	}{
		{&introspectionapi.PluginInfoRequest{Type: "io.containerd.runtime.v2", ID: "nosuch"}, codes.NotFound},
		{&introspectionapi.PluginInfoRequest{Type: "io.containerd.snapshotter.v1", ID: "overlayfs", Options: rr}, codes.Unimplemented},
		{&introspectionapi.PluginInfoRequest{Type: "io.containerd.snapshotter.v1", ID: "overlayfs"}, codes.OK},
	} {
		for name, address := range map[string]string{"hulld": d.Address, "containerd": ctrd.Address} {
			resp, err := ask(address, tc.req)
			if status.Code(err) != tc.code {
				t.Errorf("%s: %s.%s (options %v): %v, want %s", name, tc.req.Type, tc.req.ID, tc.req.Options != nil, err, tc.code)
			}
			if err == nil && (resp.Plugin.GetID() != tc.req.ID || resp.Plugin.GetType() != tc.req.Type) {
				t.Errorf("%s: %s.%s: plugin %v", name, tc.req.Type, tc.req.ID, resp.Plugin)
			}
		}
	}
	// The proxy plugin failed: described, with its error, but nothing can
	// be asked of it.
	resp, err := ask(d.Address, &introspectionapi.PluginInfoRequest{Type: "io.containerd.proxy.sandbox", ID: "sb"})
	initErr := resp.GetPlugin().GetInitErr().GetMessage()
	if err != nil || initErr == "" {
		t.Fatalf("failed plugin: %v, %v", resp, err)
	}
	_, err = ask(d.Address, &introspectionapi.PluginInfoRequest{Type: "io.containerd.proxy.sandbox", ID: "sb", Options: rr})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), initErr) {
		t.Errorf("options for a failed plugin: %v, want FailedPrecondition with its error %q", err, initErr)
	}
}
