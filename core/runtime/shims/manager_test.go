package shims

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/core/runtime"
)

// TestLifecycle drives one task through the manager as the tasks service
// does, with a shim that prints a bare address (task API v2, as Debian's
// 1.6 runc shim) and one that prints version 3 JSON.
func TestLifecycle(t *testing.T) {
	for name, ann := range map[string]map[string]string{
		"v2 bare address":                 nil,
		"v3 json":                         {fakeBootstrap: "v3"},
		"v3 protobuf (containerd 2.3+)":   {fakeBootstrap: "proto"},
		"options only (containerd 1.6)":   {fakeBootstrap: "legacy"},
		"says v3, serves v2 (downgraded)": {fakeBootstrap: "v3-on-v2"},
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
			if m := ann[fakeBootstrap]; m == "v3" || m == "proto" {
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
			// The bundle is out of the way at once (a restart would
			// find no task); the rest goes as the shim exits.
			if _, err := os.Stat(b); !os.IsNotExist(err) {
				t.Errorf("%s after Delete: %v; want it gone", b, err)
			}
			if !shim.exited(10 * time.Second) {
				t.Error("the shim did not exit after Delete")
			}
			if err := waitDrained(m, "ns1", "c1", 10*time.Second); err != nil {
				t.Error(err)
			}
			for _, dir := range []string{trashName(b), filepath.Join(f.cfg.Root, "ns1", "c1")} {
				if _, err := os.Stat(dir); !os.IsNotExist(err) {
					t.Errorf("%s after the drain: %v; want it gone", dir, err)
				}
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

// TestReattach restarts the manager over the same directories: live shims
// are found again with their tasks, a task that exited meanwhile has its
// exit published, and a task whose shim died is cleaned up with the
// shim's delete command and its exit published.
func TestReattach(t *testing.T) {
	f := newFixture(t)
	m1, close1 := f.manager(f.cfg)
	ctx := namespaces.WithNamespace(t.Context(), "ns1")
	live, liveShim := f.create(ctx, m1, "live", nil)
	if _, err := live.Start(ctx, ""); err != nil {
		t.Fatal(err)
	}
	_, deadShim := f.create(ctx, m1, "dead", nil)
	exited, _ := f.create(ctx, m1, "exited", nil)
	if _, err := exited.Start(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if err := exited.Kill(ctx, "", 15, false); err != nil {
		t.Fatal(err)
	}
	// Leftovers of a create that died before its shim started, and a
	// work directory whose bundle is gone.
	half := f.bundle("ns1", "half")
	stale := filepath.Join(f.cfg.Root, "ns1", "stale")
	// And the bundle of a deleted task whose drain a stop cut short,
	// with its work directory.
	trash := trashName(f.bundle("ns1", "drained"))
	trashWork := filepath.Join(f.cfg.Root, "ns1", "drained")
	if err := os.MkdirAll(trash, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(trash, recordFile), []byte(`{"runtime":"io.containerd.runc.v2","state":"created"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{half, stale, trashWork} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}

	close1()
	deadShim.kill(unix.SIGKILL)
	if !deadShim.exited(10 * time.Second) {
		t.Fatal("shim survived SIGKILL")
	}
	if evs := f.events.all(); len(evs) != 0 {
		t.Fatalf("a closed manager published %v", evs)
	}

	m2, _ := f.manager(f.cfg)
	got, err := m2.Get(ctx, "live")
	if err != nil || got.Pid() != live.Pid() {
		t.Fatalf("Get(live) after restart: %v, %v; want pid %d", got, err, live.Pid())
	}
	assertState(t, ctx, got, runtime.StatusRunning, 0)
	if pids := m2.ShimPIDs(ctx); pids["ns1/live"] != uint32(liveShim.pid) {
		t.Errorf("ShimPIDs = %v; want ns1/live: %d", pids, liveShim.pid)
	}

	if _, err := m2.Get(ctx, "dead"); !errdefs.IsNotFound(err) {
		t.Errorf("Get(dead): %v; want NotFound", err)
	}
	for _, topic := range []string{"/tasks/exit", "/tasks/delete"} {
		if e, ok := f.events.find("ns1", topic, "dead"); !ok || exitStatus(e.ev) != fakeDeleteStatus {
			t.Errorf("%s of the dead shim's task: %+v; want status %d from its delete command", topic, e, fakeDeleteStatus)
		}
	}

	if e, ok := f.events.find("ns1", "/tasks/exit", "exited"); !ok || exitStatus(e.ev) != 143 {
		t.Errorf("exit of the task that ended meanwhile: %+v; want status 143", e)
	}
	if _, err := m2.Get(ctx, "exited"); err != nil {
		t.Errorf("Get(exited): %v; the task stays until deleted", err)
	}
	if _, ok := f.events.find("ns1", "/tasks/exit", "live"); ok {
		t.Error("an exit was published for the live task")
	}

	for _, dir := range []string{f.bundle("ns1", "dead"), half, stale, trash, trashWork} {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s after restart: %v; want it removed", dir, err)
		}
	}
	for _, id := range []string{"drained", trashPrefix + "drained"} {
		if _, err := m2.Get(ctx, id); !errdefs.IsNotFound(err) {
			t.Errorf("Get(%s) after restart: %v; want NotFound (it was deleted)", id, err)
		}
	}
	for _, e := range f.events.all() {
		if strings.Contains(fmt.Sprint(e.ev), "drained") {
			t.Errorf("event for the deleted task: %+v", e)
		}
	}

	// The reattached task is fully usable.
	if err := got.Kill(ctx, "", 9, false); err != nil {
		t.Fatal(err)
	}
	if exit, err := got.Wait(ctx, ""); err != nil || exit.Status != 137 {
		t.Errorf("Wait = %+v, %v", exit, err)
	}
	if _, err := m2.Delete(ctx, "live"); err != nil {
		t.Fatal(err)
	}
	if !liveShim.exited(10 * time.Second) {
		t.Error("the reattached shim did not exit after Delete")
	}
}

// TestCloseKeepsShims checks that Close stops the reconciler and leaves
// the shims and their tasks running, without taking that for a crash.
func TestCloseKeepsShims(t *testing.T) {
	f := newFixture(t)
	cfg := f.cfg
	cfg.ReconcileInterval = 5 * time.Millisecond
	var calls atomic.Int32
	reconciled := make(chan struct{}, 1)
	cfg.ContainerExists = func(ctx context.Context, id string) (bool, error) {
		calls.Add(1)
		select {
		case reconciled <- struct{}{}:
		default:
		}
		return true, nil
	}
	m, closeM := f.manager(cfg)
	ctx := namespaces.WithNamespace(t.Context(), "ns1")
	task, shim := f.create(ctx, m, "c1", nil)
	if _, err := task.Start(ctx, ""); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reconciled:
	case <-time.After(10 * time.Second):
		t.Fatal("the reconciler never ran")
	}

	closeM()
	n := calls.Load()
	if shim.exited(0) {
		t.Fatal("Close stopped the shim")
	}
	m2, _ := f.manager(f.cfg)
	got, err := m2.Get(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	assertState(t, ctx, got, runtime.StatusRunning, 0)
	if evs := f.events.all(); len(evs) != 0 {
		t.Errorf("published %v", evs)
	}
	if calls.Load() != n {
		t.Errorf("the reconciler ran after Close")
	}
}

// TestReconcile checks what the reconciler removes: tasks whose container
// record is gone, and bundles no task owns once they are old enough not to
// be a create in progress.
func TestReconcile(t *testing.T) {
	f := newFixture(t)
	cfg := f.cfg
	cfg.ContainerExists = func(ctx context.Context, id string) (bool, error) {
		if ns, _ := namespaces.Namespace(ctx); ns != "ns1" {
			t.Errorf("ContainerExists(%s) in namespace %q", id, ns)
		}
		return id != "orphan", nil
	}
	m, _ := f.manager(cfg)
	ctx := namespaces.WithNamespace(t.Context(), "ns1")
	kept, _ := f.create(ctx, m, "kept", nil)
	orphan, orphanShim := f.create(ctx, m, "orphan", nil)
	for _, task := range []runtime.Task{kept, orphan} {
		if _, err := task.Start(ctx, ""); err != nil {
			t.Fatal(err)
		}
	}
	stray := bundlePaths(cfg.State, cfg.Root, "ns1", "stray")
	if err := stray.create(spec(nil)); err != nil {
		t.Fatal(err)
	}
	if err := stray.writeRecord(shimRecord{Runtime: fakeRuntime, Binary: f.shimBin, Address: "unix://" + fakeSocket("ns1", cfg.Address, "stray"), Version: 2}); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Minute)
	if err := os.Chtimes(stray.Path, old, old); err != nil {
		t.Fatal(err)
	}
	fresh := f.bundle("ns1", "fresh")
	if err := os.Mkdir(fresh, 0o700); err != nil {
		t.Fatal(err)
	}

	m.Reconcile(t.Context())

	if _, err := m.Get(ctx, "orphan"); !errdefs.IsNotFound(err) {
		t.Errorf("Get(orphan) after Reconcile: %v; want NotFound", err)
	}
	if !orphanShim.exited(10 * time.Second) {
		t.Error("the orphan task's shim still runs")
	}
	assertState(t, ctx, kept, runtime.StatusRunning, 0)
	for dir, want := range map[string]bool{f.bundle("ns1", "orphan"): false, stray.Path: false, stray.Work: false, fresh: true, f.bundle("ns1", "kept"): true} {
		if _, err := os.Stat(dir); (err == nil) != want {
			t.Errorf("%s after Reconcile: %v; want it there: %v", dir, err, want)
		}
	}
}

// TestReconcileUnresponsiveShim stops a shim: the reconciler's check times
// out, and the manager kills the shim and cleans up after it.
func TestReconcileUnresponsiveShim(t *testing.T) {
	f := newFixture(t)
	m, _ := f.manager(f.cfg)
	ctx := namespaces.WithNamespace(t.Context(), "ns1")
	task, shim := f.create(ctx, m, "c1", nil)
	if _, err := task.Start(ctx, ""); err != nil {
		t.Fatal(err)
	}
	shim.kill(unix.SIGSTOP)
	shim.stopped(t)
	rctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	m.Reconcile(rctx)

	if !shim.exited(10 * time.Second) {
		t.Fatal("the manager did not kill the shim that stopped answering")
	}
	if e := f.events.wait(t, "ns1", "/tasks/exit", "c1"); exitStatus(e.ev) != fakeDeleteStatus {
		t.Errorf("exit event %+v", e.ev)
	}
	assertState(t, ctx, task, runtime.StatusStopped, fakeDeleteStatus)
	if _, err := os.Stat(f.bundle("ns1", "c1")); !os.IsNotExist(err) {
		t.Errorf("bundle: %v; want it removed", err)
	}
}

// TestReconcileShimLostTask makes a shim forget its task behind the
// manager's back: the reconciler finds it missing and cleans up.
func TestReconcileShimLostTask(t *testing.T) {
	f := newFixture(t)
	m, _ := f.manager(f.cfg)
	ctx := namespaces.WithNamespace(t.Context(), "ns1")
	task, shim := f.create(ctx, m, "c1", nil)
	if err := task.Kill(ctx, "", 9, false); err != nil {
		t.Fatal(err)
	}
	conn, err := dialShim(ctx, bootstrap{Version: 2, Address: "unix://" + fakeSocket("ns1", f.cfg.Address, "c1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var resp taskv2.DeleteResponse
	err = conn.call(ctx, "ns1", "Delete", &taskv2.DeleteRequest{ID: "c1"}, &resp)
	conn.client.Close()
	if err != nil {
		t.Fatal(err)
	}

	m.Reconcile(t.Context())
	if e := f.events.wait(t, "ns1", "/tasks/exit", "c1"); exitStatus(e.ev) != fakeDeleteStatus {
		t.Errorf("exit event %+v", e.ev)
	}
	if !shim.exited(10 * time.Second) {
		t.Error("the shim that lost its task still runs")
	}
	assertState(t, ctx, task, runtime.StatusStopped, fakeDeleteStatus)
}

// TestHullShim covers the runtime whose shim hulld launches itself
// (shim/launch) instead of running its start command: the fake serves the
// listener it is given, as hull's shim does.
func TestHullShim(t *testing.T) {
	f := newFixture(t)
	hullBin := filepath.Join(f.binDir, hullShim)
	if err := os.Symlink(f.shimBin, hullBin); err != nil {
		t.Fatal(err)
	}
	cfg := f.cfg
	cfg.Runtimes = map[string]RuntimeConfig{"io.containerd.hull.v2": {Binary: hullBin}}
	cfg.DefaultRuntime = ""
	cfg.RuncRoot = filepath.Join(cfg.State, "runc")
	m, _ := f.manager(cfg)
	ctx := namespaces.WithNamespace(t.Context(), "ns1")
	task, err := m.Create(ctx, "h1", runtime.CreateOpts{Spec: spec(nil)})
	if err != nil {
		t.Fatal(err)
	}
	shim := f.shimOf(cfg.State, "ns1", "h1")
	if task.RuntimeName() != "io.containerd.hull.v2" {
		t.Errorf("runtime %q; want the default, io.containerd.hull.v2", task.RuntimeName())
	}
	if ppid := parentOf(shim.pid); ppid != os.Getpid() {
		t.Errorf("hull's shim has parent %d; want hulld (%d), which launched it", ppid, os.Getpid())
	}
	rec, err := (&bundle{Path: f.bundle("ns1", "h1")}).readRecord()
	if err != nil || rec.Version != 3 || rec.Binary != hullBin {
		t.Errorf("record %+v, %v", rec, err)
	}
	// hull's shim gets a runc root under hulld's state.
	data, err := os.ReadFile(filepath.Join(f.bundle("ns1", "h1"), "options.pb"))
	var wrapped anypb.Any
	var opts runcoptions.Options
	if err != nil || proto.Unmarshal(data, &wrapped) != nil || proto.Unmarshal(wrapped.Value, &opts) != nil || opts.Root != cfg.RuncRoot {
		t.Errorf("options.pb: %v, runc root %q; want %q", err, opts.Root, cfg.RuncRoot)
	}

	if _, err := task.Start(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if err := task.Kill(ctx, "", 9, true); err != nil {
		t.Fatal(err)
	}
	if exit, err := m.Delete(ctx, "h1"); err != nil || exit.Status != 137 {
		t.Errorf("Delete = %+v, %v", exit, err)
	}
	if !shim.exited(10 * time.Second) {
		t.Error("hull's shim did not exit after Delete")
	}
}

// TestRecreateAfterDelete creates a task again as soon as the previous
// task of its id is deleted. hull's shim socket is named by the id, and a
// socket that answers belongs to a running group shim that is reused; so
// Delete must not return before the old shim stopped answering.
func TestRecreateAfterDelete(t *testing.T) {
	f := newFixture(t)
	hullBin := filepath.Join(f.binDir, hullShim)
	if err := os.Symlink(f.shimBin, hullBin); err != nil {
		t.Fatal(err)
	}
	cfg := f.cfg
	cfg.Runtimes = map[string]RuntimeConfig{"io.containerd.hull.v2": {Binary: hullBin}}
	m, _ := f.manager(cfg)
	ctx := namespaces.WithNamespace(t.Context(), "ns1")
	for i := range 10 {
		task, err := m.Create(ctx, "c1", runtime.CreateOpts{Runtime: "io.containerd.hull.v2", Spec: spec(nil)})
		if err != nil {
			t.Fatalf("Create #%d: %v", i, err)
		}
		f.shimOf(cfg.State, "ns1", "c1")
		if err := task.Kill(ctx, "", 9, false); err != nil {
			t.Fatalf("Kill #%d: %v", i, err)
		}
		if _, err := m.Delete(ctx, "c1"); err != nil {
			t.Fatalf("Delete #%d: %v", i, err)
		}
	}
}

// TestUnimplementedMethods checks that the calls the fake does not serve
// reach it and come back as NotImplemented, the class of ttrpc's
// Unimplemented, rather than as an unclassified error.
func TestUnimplementedMethods(t *testing.T) {
	f := newFixture(t)
	m, _ := f.manager(f.cfg)
	ctx := namespaces.WithNamespace(t.Context(), "ns1")
	task, _ := f.create(ctx, m, "c1", nil)
	process, err := typeurl.MarshalAnyToProto(&specs.Process{Args: []string{"true"}, Cwd: "/"})
	if err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func() error{
		"Exec":      func() error { return task.Exec(ctx, "e1", runtime.IO{}, process) },
		"ResizePty": func() error { return task.ResizePty(ctx, "", 80, 24) },
		"CloseIO":   func() error { return task.CloseIO(ctx, "", true) },
		"Pause":     func() error { return task.Pause(ctx) },
		"Resume":    func() error { return task.Resume(ctx) },
		"Update":    func() error { return task.Update(ctx, nil, map[string]string{"a": "b"}) },
		"Stats":     func() error { _, err := task.Stats(ctx); return err },
	} {
		if err := call(); !errdefs.IsNotImplemented(err) {
			t.Errorf("%s: %v; want NotImplemented", name, err)
		}
	}
	if _, err := task.DeleteProcess(ctx, "e1"); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), `"e1"`) {
		t.Errorf("DeleteProcess: %v; want the shim's NotFound naming e1", err)
	}
	if _, err := task.DeleteProcess(ctx, ""); !errdefs.IsInvalidArgument(err) {
		t.Errorf("DeleteProcess without exec id: %v; want InvalidArgument", err)
	}
}

// TestRuntimeOptions checks that the runc and hull shims get a runc root
// under hulld's state unless the caller chose one, and that other
// runtimes' options pass through untouched.
func TestRuntimeOptions(t *testing.T) {
	m := &Manager{cfg: Config{RuncRoot: "/state/runc"}}
	root := func(a *anypb.Any) string {
		t.Helper()
		var o runcoptions.Options
		if a == nil || proto.Unmarshal(a.Value, &o) != nil {
			t.Fatalf("options %v are not runc options", a)
		}
		return o.Root
	}
	for _, rt := range []string{"io.containerd.runc.v2", "io.containerd.hull.v2"} {
		a, err := m.runtimeOptions(rt, nil)
		if err != nil || root(a) != "/state/runc" || a.TypeUrl != "containerd.runc.v1.Options" {
			t.Errorf("%s without options: %v, %v", rt, a, err)
		}
	}
	if a, err := m.runtimeOptions(fakeRuntime, nil); a != nil || err != nil {
		t.Errorf("other runtime without options: %v, %v; want none", a, err)
	}
	given, err := anypb.New(&runcoptions.Options{BinaryName: "crun"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := m.runtimeOptions("io.containerd.runc.v2", given)
	if err != nil || root(a) != "/state/runc" {
		t.Errorf("runc options without root: %v, %v; want the root filled in", a, err)
	}
	var o runcoptions.Options
	if proto.Unmarshal(a.Value, &o); o.BinaryName != "crun" {
		t.Errorf("the caller's binary name was lost: %v", &o)
	}
	chosen, err := anypb.New(&runcoptions.Options{Root: "/mine"})
	if err != nil {
		t.Fatal(err)
	}
	if a, err := m.runtimeOptions("io.containerd.runc.v2", chosen); err != nil || root(a) != "/mine" {
		t.Errorf("runc options with a root: %v, %v; want it kept", a, err)
	}
	other := &anypb.Any{TypeUrl: "example.com/Other", Value: []byte{1, 2}}
	if a, err := m.runtimeOptions(fakeRuntime, other); err != nil || a.TypeUrl != other.TypeUrl || string(a.Value) != string(other.Value) {
		t.Errorf("other options: %v, %v; want them as given", a, err)
	}
	bad := &anypb.Any{TypeUrl: given.TypeUrl, Value: []byte{0xff}}
	if _, err := m.runtimeOptions("io.containerd.runc.v2", bad); !errdefs.IsInvalidArgument(err) {
		t.Errorf("undecodable runc options: %v; want InvalidArgument", err)
	}
}

// TestGroupLogs: two tasks of one group share a shim, which logs to the
// FIFO of the bundle it was started in; the manager keeps reading that
// one only, and the shim serves both tasks.
func TestGroupLogs(t *testing.T) {
	f := newFixture(t)
	m, _ := f.manager(f.cfg)
	ctx := namespaces.WithNamespace(t.Context(), "ns1")
	ann := map[string]string{fakeGroup: "pod1"}
	first, _ := f.create(ctx, m, "sandbox", ann)
	second, err := m.Create(ctx, "app", runtime.CreateOpts{Runtime: fakeRuntime, Spec: spec(ann)})
	if err != nil {
		t.Fatal(err)
	}
	if pids := m.ShimPIDs(ctx); pids["ns1/sandbox"] == 0 || pids["ns1/app"] != pids["ns1/sandbox"] {
		t.Fatalf("ShimPIDs = %v; want one shim for both tasks", pids)
	}
	m.mu.Lock()
	_, firstLog := m.logs[key("ns1", "sandbox")]
	_, secondLog := m.logs[key("ns1", "app")]
	m.mu.Unlock()
	if !firstLog || secondLog {
		t.Errorf("log FIFOs read: sandbox %v, app %v; want the first task's only", firstLog, secondLog)
	}
	for _, task := range []runtime.Task{second, first} {
		assertState(t, ctx, task, runtime.StatusCreated, 0)
		if err := task.Kill(ctx, "", 9, false); err != nil {
			t.Fatal(err)
		}
		if _, err := task.Wait(ctx, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Delete(ctx, task.ID()); err != nil {
			t.Errorf("Delete %s: %v", task.ID(), err)
		}
	}
}

// waitDrained waits up to timeout for the drain of deleted task ns/id to
// end.
func waitDrained(m *Manager, ns, id string, timeout time.Duration) error {
	m.mu.Lock()
	ch := m.draining[key(ns, id)]
	m.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("the drain of %s/%s did not end within %s", ns, id, timeout)
	}
}
