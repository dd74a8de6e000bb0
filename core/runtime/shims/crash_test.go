package shims

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/core/events"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/core/runtime"
	"github.com/hullrt/hull/internal/hulltest"
)

// setRecordState rewrites a bundle's shim record as a hulld that died at
// another step would have left it.
func setRecordState(t *testing.T, bundleDir, state string) {
	t.Helper()
	p := filepath.Join(bundleDir, recordFile)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var rec shimRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	rec.State = state
	if data, err = json.Marshal(rec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// deleteBehindManager deletes task id in its shim, as a Delete whose
// hulld died before it removed the bundle.
func (f *fixture) deleteBehindManager(ctx context.Context, id string) {
	f.t.Helper()
	conn, err := dialShim(ctx, bootstrap{Version: 2, Address: "unix://" + fakeSocket("ns1", f.cfg.Address, id)}, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	defer conn.client.Close()
	var resp taskv2.DeleteResponse
	if err := conn.call(ctx, "ns1", "Delete", &taskv2.DeleteRequest{ID: id}, &resp); err != nil {
		f.t.Fatal(err)
	}
}

// runToExit starts task, kills it and waits for its exit.
func (f *fixture) runToExit(ctx context.Context, task runtime.Task) {
	f.t.Helper()
	if _, err := task.Start(ctx, ""); err != nil {
		f.t.Fatal(err)
	}
	if err := task.Kill(ctx, "", 9, false); err != nil {
		f.t.Fatal(err)
	}
	if _, err := task.Wait(ctx, ""); err != nil {
		f.t.Fatal(err)
	}
}

func assertGone(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s: %v; want it removed", p, err)
		}
	}
}

// TestRestartRemovesHalfCreatedTask is a hulld that died after it started
// a task's shim and before the shim created the task (the record still
// says "starting"), with another process still working on the bundle (a
// runc create in flight): the restarted manager lists no task, and the
// shim, that process, its socket and the bundle are gone, so the id can
// be used again.
func TestRestartRemovesHalfCreatedTask(t *testing.T) {
	f := newFixture(t)
	m1, close1 := f.manager(f.cfg)
	ctx := namespaces.WithNamespace(t.Context(), "ns1")
	_, shim := f.create(ctx, m1, "half", nil)
	close1()
	b := f.bundle("ns1", "half")
	setRecordState(t, b, recordStarting)
	// Stands for runc create: its argument is the bundle.
	worker := exec.Command("perl", "-e", "sleep 1000", b)
	worker.Dir = "/"
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	workerDone := make(chan error, 1)
	go func() { workerDone <- worker.Wait() }()
	t.Cleanup(func() { worker.Process.Kill() })
	// Start returns once the exec is past its point of no return, which
	// is before the kernel records the new arguments: until then the
	// process shows an empty command line. A runc create in flight has
	// long been past that.
	hulltest.Eventually(t, 10*time.Second, "perl to show its arguments", func() error {
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", worker.Process.Pid))
		if err != nil || !strings.Contains(string(cmd), b) {
			return fmt.Errorf("cmdline %q, %v", cmd, err)
		}
		return nil
	})

	m2, _ := f.manager(f.cfg)
	if _, err := m2.Get(ctx, "half"); !errdefs.IsNotFound(err) {
		t.Errorf("Get(half) after restart: %v; want NotFound", err)
	}
	if !shim.exited(10 * time.Second) {
		t.Error("the half-created task's shim still runs")
	}
	select {
	case <-workerDone:
	case <-time.After(10 * time.Second):
		pid := worker.Process.Pid
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		t.Errorf("the process working on the bundle still runs: pid %d, cmdline %q, cwd %q, stat %q, bundle %q", pid, cmd, cwd, st, b)
	}
	assertGone(t, b, filepath.Join(f.cfg.Root, "ns1", "half"), fakeSocket("ns1", f.cfg.Address, "half"))
	// The id is free again.
	task, _ := f.create(ctx, m2, "half", nil)
	if _, err := task.Start(ctx, ""); err != nil {
		t.Fatal(err)
	}
}

// TestRestartDropsTaskItsShimDeleted is a hulld that died after the shim
// deleted a task and before the bundle went: the restarted manager does
// not list the task, publishes its deletion and removes what was left.
func TestRestartDropsTaskItsShimDeleted(t *testing.T) {
	f := newFixture(t)
	m1, close1 := f.manager(f.cfg)
	ctx := namespaces.WithNamespace(t.Context(), "ns1")
	task, shim := f.create(ctx, m1, "gone", nil)
	f.runToExit(ctx, task)
	close1()
	f.deleteBehindManager(ctx, "gone")

	m2, _ := f.manager(f.cfg)
	if _, err := m2.Get(ctx, "gone"); !errdefs.IsNotFound(err) {
		t.Errorf("Get(gone) after restart: %v; want NotFound", err)
	}
	if _, ok := f.events.find("ns1", "/tasks/delete", "gone"); !ok {
		t.Error("no /tasks/delete for the task deleted before the crash")
	}
	if !shim.exited(10 * time.Second) {
		t.Error("the shim of the deleted task still runs")
	}
	assertGone(t, f.bundle("ns1", "gone"), filepath.Join(f.cfg.Root, "ns1", "gone"))
}

// TestDeleteOfTaskTheShimLost: Delete of a task its shim no longer knows
// succeeds and removes the bundle, instead of leaving a task no call can
// remove.
func TestDeleteOfTaskTheShimLost(t *testing.T) {
	f := newFixture(t)
	m, _ := f.manager(f.cfg)
	ctx := namespaces.WithNamespace(t.Context(), "ns1")
	task, shim := f.create(ctx, m, "lost", nil)
	f.runToExit(ctx, task)
	f.deleteBehindManager(ctx, "lost")
	if _, err := m.Delete(ctx, "lost"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := m.Get(ctx, "lost"); !errdefs.IsNotFound(err) {
		t.Errorf("Get after Delete: %v; want NotFound", err)
	}
	if !shim.exited(10 * time.Second) {
		t.Error("the shim still runs")
	}
	assertGone(t, f.bundle("ns1", "lost"))
}

// busSubscriber hands the manager envelopes the test sends.
type busSubscriber struct{ ch chan *events.Envelope }

func (b busSubscriber) Subscribe(ctx context.Context, filters ...string) (<-chan *events.Envelope, <-chan error) {
	return b.ch, make(chan error)
}

// TestContainerDeleteRemovesItsTask: when a client deletes a container
// whose task still runs (it failed to delete the task), the task, its
// shim and bundle go at once, not at the next reconcile.
func TestContainerDeleteRemovesItsTask(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	records := map[string]bool{"c1": true, "kept": true}
	bus := busSubscriber{ch: make(chan *events.Envelope, 1)}
	cfg := f.cfg
	cfg.Containers = bus
	cfg.ContainerExists = func(ctx context.Context, id string) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return records[id], nil
	}
	m, _ := f.manager(cfg)
	ctx := namespaces.WithNamespace(t.Context(), "ns1")
	task, shim := f.create(ctx, m, "c1", nil)
	if _, err := task.Start(ctx, ""); err != nil {
		t.Fatal(err)
	}
	kept, _ := f.create(ctx, m, "kept", nil)
	if _, err := kept.Start(ctx, ""); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	delete(records, "c1")
	mu.Unlock()
	ev, err := typeurl.MarshalAny(&eventtypes.ContainerDelete{ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	bus.ch <- &events.Envelope{Namespace: "ns1", Topic: "/containers/delete", Event: ev}

	hulltest.Eventually(t, 10*time.Second, "the deleted container's task to go", func() error {
		if _, err := m.Get(ctx, "c1"); !errdefs.IsNotFound(err) {
			return fmt.Errorf("Get(c1): %v", err)
		}
		return nil
	})
	if !shim.exited(10 * time.Second) {
		t.Error("the deleted container's shim still runs")
	}
	// The task is forgotten first, its bundle removed after the shim went.
	hulltest.Eventually(t, 10*time.Second, "the bundle to go", func() error {
		if _, err := os.Stat(f.bundle("ns1", "c1")); !os.IsNotExist(err) {
			return fmt.Errorf("bundle: %v", err)
		}
		return nil
	})
	if _, err := m.Get(ctx, "kept"); err != nil {
		t.Errorf("Get(kept): %v", err)
	}
}

// TestRestartSweepsRuncState: a runc container directory of hulld's runc
// root that no task owns (a create killed before runc wrote its state) is
// removed at start.
func TestRestartSweepsRuncState(t *testing.T) {
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc is not installed")
	}
	f := newFixture(t)
	cfg := f.cfg
	cfg.RuncRoot = filepath.Join(t.TempDir(), "runc")
	stray := filepath.Join(cfg.RuncRoot, "ns1", "stray")
	if err := os.MkdirAll(stray, 0o700); err != nil {
		t.Fatal(err)
	}
	f.manager(cfg)
	assertGone(t, stray)
}

// TestCleanupFailureLoggedOnce: what the reconciler cannot clean is
// logged once with the reason, not at every pass.
func TestCleanupFailureLoggedOnce(t *testing.T) {
	f := newFixture(t)
	var logs bytes.Buffer
	var mu sync.Mutex
	cfg := f.cfg
	cfg.Log = slog.New(slog.NewTextHandler(&lockedWriter{mu: &mu, w: &logs}, nil))
	cfg.RuncRoot = filepath.Join(t.TempDir(), "runc")
	stray := filepath.Join(cfg.RuncRoot, "ns1", "stray")
	if err := os.MkdirAll(stray, 0o700); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(stray, old, old)
	t.Setenv("PATH", t.TempDir()) // no runc to delete it with
	m, _ := f.manager(cfg)
	m.Reconcile(t.Context())
	m.Reconcile(t.Context())
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if n := strings.Count(out, "could not clean up runc container ns1/stray"); n != 1 {
		t.Errorf("the failure was logged %d times; want once:\n%s", n, out)
	}
	if !strings.Contains(out, "runc is not on PATH") {
		t.Errorf("the log does not say why:\n%s", out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestReconcileCancelledByClose: a pass waiting on a shim that does not
// answer ends as soon as its context is cancelled (as Close does), and
// takes the cancellation for no sign of a dead shim: the task and its
// shim are left alone.
func TestReconcileCancelledByClose(t *testing.T) {
	f := newFixture(t)
	m, _ := f.manager(f.cfg)
	ctx := namespaces.WithNamespace(t.Context(), "ns1")
	task, shim := f.create(ctx, m, "c1", nil)
	if _, err := task.Start(ctx, ""); err != nil {
		t.Fatal(err)
	}
	shim.kill(unix.SIGSTOP)
	shim.stopped(t)
	rctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { m.Reconcile(rctx); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(shimCallTimeout / 2):
		t.Fatal("a cancelled reconcile pass still waits on the stopped shim")
	}
	if _, err := m.Get(ctx, "c1"); err != nil {
		t.Errorf("Get after a cancelled pass: %v; the task must stay", err)
	}
	if shim.exited(0) {
		t.Error("a cancelled pass killed the shim")
	}
	shim.kill(unix.SIGCONT)
}
