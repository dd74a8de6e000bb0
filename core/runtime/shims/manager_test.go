package shims

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/core/runtime"
)

// TestLifecycle drives one task through the manager as the tasks service
// does, with a shim that prints a bare address (task API v2, as Debian's
// 1.6 runc shim) and one that prints version 3 JSON.
func TestLifecycle(t *testing.T) {
	for name, ann := range map[string]map[string]string{
		"v2 bare address": nil,
		"v3 json":         {fakeBootstrap: "v3"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			m, _ := f.manager(f.cfg)
			ctx := namespaces.WithNamespace(t.Context(), "ns1")
			other := namespaces.WithNamespace(t.Context(), "ns2")

			task, shim := f.create(ctx, m, "c1", ann)
			if task.ID() != "c1" || task.Namespace() != "ns1" || task.RuntimeName() != fakeRuntime || task.Pid() == 0 {
				t.Fatalf("task: id %q ns %q runtime %q pid %d", task.ID(), task.Namespace(), task.RuntimeName(), task.Pid())
			}
			pid := task.Pid()
			b := f.bundle("ns1", "c1")
			if data, err := os.ReadFile(filepath.Join(b, "config.json")); err != nil || string(data) != string(spec(ann)) {
				t.Errorf("bundle config.json: %q, %v", data, err)
			}
			rec, err := (&bundle{Path: b}).readRecord()
			wantVersion := 2
			if ann[fakeBootstrap] == "v3" {
				wantVersion = 3
			}
			if err != nil || rec.Binary != f.shimBin || rec.Runtime != fakeRuntime || rec.Version != wantVersion {
				t.Errorf("shim record %+v, %v; want binary %s, version %d", rec, err, f.shimBin, wantVersion)
			}

			if got, err := m.Get(ctx, "c1"); err != nil || got.Pid() != pid {
				t.Errorf("Get: %v, %v", got, err)
			}
			if tasks, err := m.Tasks(ctx); err != nil || len(tasks) != 1 || tasks[0].ID() != "c1" {
				t.Errorf("Tasks(ns1) = %v, %v; want [c1]", tasks, err)
			}
			if tasks, err := m.Tasks(other); err != nil || len(tasks) != 0 {
				t.Errorf("Tasks(ns2) = %v, %v; want none", tasks, err)
			}
			if _, err := m.Get(other, "c1"); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), `"c1"`) || !strings.Contains(err.Error(), `"ns2"`) {
				t.Errorf("Get from ns2: %v; want NotFound naming c1 and ns2", err)
			}
			if _, err := m.Create(ctx, "c1", runtime.CreateOpts{Runtime: fakeRuntime, Spec: spec(ann)}); !errdefs.IsAlreadyExists(err) {
				t.Errorf("second Create: %v; want AlreadyExists", err)
			}
			if pids := m.ShimPIDs(ctx); pids["ns1/c1"] != uint32(shim.pid) {
				t.Errorf("ShimPIDs = %v; want ns1/c1: %d", pids, shim.pid)
			}

			assertState(t, ctx, task, runtime.StatusCreated, 0)
			if got, err := task.Start(ctx, ""); err != nil || got != pid {
				t.Fatalf("Start = %d, %v; want %d", got, err, pid)
			}
			assertState(t, ctx, task, runtime.StatusRunning, 0)
			if procs, err := task.Pids(ctx); err != nil || len(procs) != 1 || procs[0].Pid != pid {
				t.Errorf("Pids = %v, %v", procs, err)
			}
			if _, err := m.Delete(ctx, "c1"); !errdefs.IsFailedPrecondition(err) {
				t.Errorf("Delete of a running task: %v; want the shim's FailedPrecondition", err)
			}

			// Wait blocks until the process exits.
			waited := make(chan runtime.Exit, 1)
			go func() {
				exit, err := task.Wait(ctx, "")
				if err != nil {
					t.Errorf("Wait: %v", err)
				}
				waited <- exit
			}()
			if err := task.Kill(ctx, "", 9, false); err != nil {
				t.Fatal(err)
			}
			if exit := <-waited; exit.Status != 137 || exit.ExitedAt.IsZero() {
				t.Errorf("Wait = %+v; want status 137 and a time", exit)
			}
			assertState(t, ctx, task, runtime.StatusStopped, 137)

			exit, err := m.Delete(ctx, "c1")
			if err != nil || exit.Pid != pid || exit.Status != 137 {
				t.Fatalf("Delete = %+v, %v; want pid %d status 137", exit, err, pid)
			}
			if _, err := m.Get(ctx, "c1"); !errdefs.IsNotFound(err) {
				t.Errorf("Get after Delete: %v; want NotFound", err)
			}
			for _, dir := range []string{b, filepath.Join(f.cfg.Root, "ns1", "c1")} {
				if _, err := os.Stat(dir); !os.IsNotExist(err) {
					t.Errorf("%s after Delete: %v; want it gone", dir, err)
				}
			}
			if !shim.exited(10 * time.Second) {
				t.Error("the shim did not exit after Delete")
			}
			// Exits of live shims are theirs to publish, not the manager's.
			if evs := f.events.all(); len(evs) != 0 {
				t.Errorf("manager published %v", evs)
			}

			// The id is free again.
			task, _ = f.create(ctx, m, "c1", ann)
			if err := task.Kill(ctx, "", 15, false); err != nil {
				t.Fatal(err)
			}
			if exit, err := m.Delete(ctx, "c1"); err != nil || exit.Status != 143 {
				t.Errorf("Delete of the second c1 = %+v, %v", exit, err)
			}
		})
	}
}

func assertState(t *testing.T, ctx context.Context, task runtime.Task, want runtime.Status, wantExit uint32) {
	t.Helper()
	st, err := task.State(ctx, "")
	if err != nil || st.Status != want || st.ExitStatus != wantExit || st.Pid != task.Pid() || st.ID != task.ID() {
		t.Errorf("State = %+v, %v; want %s with exit status %d, pid %d", st, err, want, wantExit, task.Pid())
	}
}

// TestCreateErrors checks that a Create that cannot work says why, with the
// right class, and leaves no bundle behind.
func TestCreateErrors(t *testing.T) {
	f := newFixture(t)
	m, _ := f.manager(f.cfg)
	ctx := namespaces.WithNamespace(t.Context(), "ns1")
	missing := filepath.Join(f.binDir, "containerd-shim-gone-v2")
	m.cfg.Runtimes["io.containerd.gone.v2"] = RuntimeConfig{Binary: missing}

	for _, tc := range []struct {
		name  string
		ctx   context.Context
		opts  runtime.CreateOpts
		is    func(error) bool
		names []string // the error must contain each
	}{
		{"no namespace", t.Context(), runtime.CreateOpts{Spec: spec(nil)}, errdefs.IsFailedPrecondition, []string{"namespace"}},
		{"invalid spec", ctx, runtime.CreateOpts{Spec: []byte(`{"process":{"args":["sh"],"cwd":"/"}}`)}, errdefs.IsInvalidArgument, []string{"root.path", `"c"`}},
		{"bad runtime name", ctx, runtime.CreateOpts{Runtime: "fake", Spec: spec(nil)}, errdefs.IsInvalidArgument, []string{`"fake"`, "<domain>.<name>.<version>"}},
		{"configured binary missing", ctx, runtime.CreateOpts{Runtime: "io.containerd.gone.v2", Spec: spec(nil)}, errdefs.IsNotFound, []string{missing}},
		{"binary not on PATH", ctx, runtime.CreateOpts{Runtime: "io.containerd.nosuch.v1", Spec: spec(nil)}, errdefs.IsNotFound, []string{"containerd-shim-nosuch-v1"}},
		{"relative runtime path", ctx, runtime.CreateOpts{RuntimePath: "containerd-shim-fake-v2", Spec: spec(nil)}, errdefs.IsInvalidArgument, []string{`"containerd-shim-fake-v2"`}},
		{"runtime path missing", ctx, runtime.CreateOpts{RuntimePath: missing, Spec: spec(nil)}, errdefs.IsNotFound, []string{missing}},
		{"start fails", ctx, runtime.CreateOpts{Spec: spec(map[string]string{fakeStartError: "no cgroup for you"})}, errdefs.IsUnavailable, []string{"no cgroup for you", f.shimBin}},
		{"shim refuses Create", ctx, runtime.CreateOpts{Spec: spec(map[string]string{fakeCreateError: "bad rootfs"})}, errdefs.IsInvalidArgument, []string{"bad rootfs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Create(tc.ctx, "c", tc.opts)
			if err == nil || !tc.is(err) {
				t.Fatalf("Create: %v", err)
			}
			for _, s := range tc.names {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Create: %v; want it to name %s", err, s)
				}
			}
			if _, err := os.Stat(f.bundle("ns1", "c")); !os.IsNotExist(err) {
				t.Errorf("bundle after failed Create: %v; want it gone", err)
			}
			if _, err := m.Get(ctx, "c"); !errdefs.IsNotFound(err) {
				t.Errorf("Get after failed Create: %v; want NotFound", err)
			}
		})
	}
	// The shim that refused Create was asked to shut down, and cleaned up
	// after with delete, which removes its socket.
	if !f.fakeShimByPidFile("ns1", "c").exited(10 * time.Second) {
		t.Error("the shim that refused Create still runs")
	}
	if _, err := os.Stat(fakeSocket("ns1", f.cfg.Address, "c")); !os.IsNotExist(err) {
		t.Errorf("socket of the shim that refused Create: %v; want delete to have removed it", err)
	}
}

// TestUnknownTask checks the errors for a task that does not exist.
func TestUnknownTask(t *testing.T) {
	f := newFixture(t)
	m, _ := f.manager(f.cfg)
	ctx := namespaces.WithNamespace(t.Context(), "ns1")
	f.create(ctx, m, "known", nil)
	if _, err := m.Get(ctx, "nope"); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), `"nope"`) || !strings.Contains(err.Error(), `"ns1"`) {
		t.Errorf("Get: %v; want NotFound naming nope and ns1", err)
	}
	if _, err := m.Delete(ctx, "nope"); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Delete: %v; want NotFound naming nope", err)
	}
	if _, err := m.Get(t.Context(), "known"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Get without namespace: %v; want FailedPrecondition", err)
	}
	if _, err := m.Tasks(t.Context()); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Tasks without namespace: %v; want FailedPrecondition", err)
	}
}

// TestBinaryLookup checks the ways a shim binary is found: a runtime path,
// the derived name on PATH.
func TestBinaryLookup(t *testing.T) {
	f := newFixture(t)
	cfg := f.cfg
	cfg.Runtimes = nil
	m, _ := f.manager(cfg)
	ctx := namespaces.WithNamespace(t.Context(), "ns1")

	task, err := m.Create(ctx, "by-path", runtime.CreateOpts{Runtime: "io.containerd.other.v1", RuntimePath: f.shimBin, Spec: spec(nil)})
	if err != nil {
		t.Fatal(err)
	}
	f.shimOf(cfg.State, "ns1", "by-path")
	if task.RuntimeName() != "io.containerd.other.v1" {
		t.Errorf("runtime %q", task.RuntimeName())
	}

	t.Setenv("PATH", f.binDir)
	if _, err := m.Create(ctx, "on-path", runtime.CreateOpts{Spec: spec(nil)}); err != nil {
		t.Fatalf("Create with the default runtime's binary on PATH: %v", err)
	}
	f.shimOf(cfg.State, "ns1", "on-path")
	rec, err := (&bundle{Path: f.bundle("ns1", "on-path")}).readRecord()
	if err != nil || rec.Binary != f.shimBin || rec.Runtime != fakeRuntime {
		t.Errorf("record %+v, %v; want the default runtime's binary found on PATH", rec, err)
	}
}

// TestShimDies kills a task's shim: the manager must clean up with the
// shim's delete command, report the task stopped with the exit delete
// gave, publish that exit, and remove the bundle.
func TestShimDies(t *testing.T) {
	f := newFixture(t)
	m, _ := f.manager(f.cfg)
	ctx := namespaces.WithNamespace(t.Context(), "ns1")
	task, shim := f.create(ctx, m, "c1", nil)
	if _, err := task.Start(ctx, ""); err != nil {
		t.Fatal(err)
	}
	// A Wait in flight when the shim dies must get the exit, not the
	// connection's error.
	waited := make(chan error, 1)
	waiting := make(chan struct{})
	go func() {
		close(waiting)
		exit, err := task.Wait(ctx, "")
		if err == nil && exit.Status != fakeDeleteStatus {
			err = fmt.Errorf("exit %+v, want status %d", exit, fakeDeleteStatus)
		}
		waited <- err
	}()
	<-waiting

	shim.kill(unix.SIGKILL)
	ev := f.events.wait(t, "ns1", "/tasks/exit", "c1")
	if exit := ev.ev.(*eventtypes.TaskExit); exit.ExitStatus != fakeDeleteStatus || exit.Pid != task.Pid() || exit.ExitedAt == nil {
		t.Errorf("exit event %+v; want status %d (from the shim's delete) and pid %d", exit, fakeDeleteStatus, task.Pid())
	}
	if err := <-waited; err != nil {
		t.Errorf("Wait across the shim's death: %v", err)
	}
	assertState(t, ctx, task, runtime.StatusStopped, fakeDeleteStatus)
	if _, err := os.Stat(f.bundle("ns1", "c1")); !os.IsNotExist(err) {
		t.Errorf("bundle of the dead shim's task: %v; want it removed", err)
	}
	if _, err := task.Start(ctx, ""); !errdefs.IsNotFound(err) {
		t.Errorf("Start after the shim died: %v; want NotFound", err)
	}
	if _, err := task.State(ctx, "exec1"); !errdefs.IsNotFound(err) {
		t.Errorf("State of an exec after the shim died: %v; want NotFound", err)
	}
	if exit, err := task.Wait(ctx, ""); err != nil || exit.Status != fakeDeleteStatus {
		t.Errorf("Wait after the shim died = %+v, %v", exit, err)
	}
	if pids := m.ShimPIDs(ctx); len(pids) != 0 {
		t.Errorf("ShimPIDs = %v; want none", pids)
	}

	exit, err := m.Delete(ctx, "c1")
	if err != nil || exit.Status != fakeDeleteStatus {
		t.Errorf("Delete = %+v, %v", exit, err)
	}
	if ev := f.events.wait(t, "ns1", "/tasks/delete", "c1"); exitStatus(ev.ev) != fakeDeleteStatus {
		t.Errorf("delete event %+v", ev.ev)
	}
	if _, err := m.Get(ctx, "c1"); !errdefs.IsNotFound(err) {
		t.Errorf("Get after Delete: %v; want NotFound", err)
	}
	if n := len(f.events.all()); n != 2 {
		t.Errorf("%d events, want one exit and one delete: %v", n, f.events.all())
	}
}
