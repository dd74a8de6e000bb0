package shims

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/core/runtime"
	"github.com/hullrt/hull/shim/launch"
)

// starts is how many times the start command ran for the bundle of ns/id.
func (f *fixture) starts(ns, id string) int {
	data, _ := os.ReadFile(filepath.Join(f.bundle(ns, id), fakeStartsFile))
	return strings.Count(string(data), "start\n")
}

// TestStartSendsBootstrapParams checks what a shim of containerd 2.3+
// reads on start's stdin: the parameters containerd 2.4 writes, with the
// runtime options as their extension.
func TestStartSendsBootstrapParams(t *testing.T) {
	f := newFixture(t)
	cfg := f.cfg
	cfg.Debug = true
	cfg.DaemonVersion = "1.2.3-test"
	cfg.Runtimes = map[string]RuntimeConfig{"io.containerd.runc.v2": {Binary: f.shimBin}}
	cfg.RuncRoot = filepath.Join(cfg.State, "runc")
	m, _ := f.manager(cfg)
	ctx := namespaces.WithNamespace(t.Context(), "ns1")
	task, err := m.Create(ctx, "c1", runtime.CreateOpts{Runtime: "io.containerd.runc.v2", Spec: spec(map[string]string{fakeBootstrap: "proto"})})
	if err != nil {
		t.Fatal(err)
	}
	f.shimOf(cfg.State, "ns1", "c1")
	data, err := os.ReadFile(filepath.Join(f.bundle("ns1", "c1"), fakeStdinFile))
	if err != nil {
		t.Fatal(err)
	}
	var p bootapi.BootstrapParams
	if err := proto.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	wantDir := launch.SocketDirIn(filepath.Dir(cfg.State), shimSocketNameLen) // <hulld state>/s
	if p.InstanceID != "c1" || p.Namespace != "ns1" || p.LogLevel != bootapi.LogLevel_LOG_LEVEL_DEBUG || p.ContainerdVersion != "1.2.3-test" ||
		p.ContainerdGrpcAddress != cfg.Address || p.ContainerdTtrpcAddress != cfg.TTRPCAddress || p.ContainerdBinary != cfg.PublishBinary ||
		p.GetSocketDir() != wantDir {
		t.Errorf("parameters %v; want those of the task and the manager, socket dir %s", &p, wantDir)
	}
	if fi, err := os.Stat(wantDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("socket directory: %v, %v; want it made private", fi, err)
	}
	var o runcoptions.Options
	if len(p.Extensions) != 1 || p.Extensions[0].GetValue().GetTypeUrl() != "containerd.runc.v1.Options" ||
		p.Extensions[0].GetValue().UnmarshalTo(&o) != nil || o.Root != cfg.RuncRoot {
		t.Errorf("extensions %v; want the runc options with root %s", p.Extensions, cfg.RuncRoot)
	}
	if n := f.starts("ns1", "c1"); n != 1 {
		t.Errorf("start ran %d times; want once", n)
	}
	f.runToExit(ctx, task)
	if _, err := m.Delete(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
}

// TestStartFallsBackToOptions runs a shim of containerd 1.6, which fails
// on bootstrap parameters: its start runs again with the options alone,
// and later tasks of the binary start that way at once.
func TestStartFallsBackToOptions(t *testing.T) {
	f := newFixture(t)
	cfg := f.cfg
	cfg.RuncRoot = filepath.Join(cfg.State, "runc")
	cfg.Runtimes = map[string]RuntimeConfig{"io.containerd.runc.v2": {Binary: f.shimBin}}
	m, _ := f.manager(cfg)
	ctx := namespaces.WithNamespace(t.Context(), "ns1")
	ann := map[string]string{fakeBootstrap: "legacy"}
	for i, id := range []string{"c1", "c2"} {
		task, err := m.Create(ctx, id, runtime.CreateOpts{Runtime: "io.containerd.runc.v2", Spec: spec(ann)})
		if err != nil {
			t.Fatal(err)
		}
		f.shimOf(cfg.State, "ns1", id)
		if want := 2 - i; f.starts("ns1", id) != want {
			t.Errorf("task %s: start ran %d times; want %d", id, f.starts("ns1", id), want)
		}
		data, _ := os.ReadFile(filepath.Join(f.bundle("ns1", id), fakeStdinFile))
		var a anypb.Any
		var o runcoptions.Options
		if proto.Unmarshal(data, &a) != nil || a.UnmarshalTo(&o) != nil || o.Root != cfg.RuncRoot {
			t.Errorf("task %s: stdin %x; want the runc options alone", id, data)
		}
		f.runToExit(ctx, task)
		if _, err := m.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStartBadAnswer gives Create a shim whose start answers what hulld
// cannot use, after starting its serving process: the error names the
// shim and what it printed, and nothing is left running or on disk.
func TestStartBadAnswer(t *testing.T) {
	for _, tc := range []struct {
		mode  string
		is    func(error) bool
		names []string
	}{
		{"garbage", errdefs.IsInvalidArgument, []string{`"Segmentation fault (core dumped)\n\x00\xff"`}},
		{"proto-v4", errdefs.IsNotImplemented, []string{"version 4", `"\b\x04\x12`}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			f := newFixture(t)
			m, _ := f.manager(f.cfg)
			ctx := namespaces.WithNamespace(t.Context(), "ns1")
			_, err := m.Create(ctx, "c1", runtime.CreateOpts{Spec: spec(map[string]string{fakeBootstrap: tc.mode})})
			if err == nil || !tc.is(err) {
				t.Fatalf("Create: %v; want an error of its class", err)
			}
			for _, s := range append(tc.names, f.shimBin, `"c1"`) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Create: %v; want it to name %s", err, s)
				}
			}
			if !f.fakeShimByPidFile("ns1", "c1").exited(10 * time.Second) {
				t.Error("the serving process of the shim is still running")
			}
			if _, err := os.Stat(f.bundle("ns1", "c1")); !os.IsNotExist(err) {
				t.Errorf("bundle: %v; want it gone", err)
			}
			if _, err := os.Stat(fakeSocket("ns1", f.cfg.Address, "c1")); !os.IsNotExist(err) {
				t.Errorf("socket: %v; want it gone", err)
			}
			if _, err := m.Get(ctx, "c1"); !errdefs.IsNotFound(err) {
				t.Errorf("Get: %v; want NotFound", err)
			}
		})
	}
}
