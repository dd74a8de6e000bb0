package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/client/cio"
	"github.com/hullrt/hull/client/oci"
	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/internal/hulltest"
)

// TestTaskEvents: a task's life reaches subscribers as containerd's task
// events, in order, through the shim's ttrpc events back to hulld,
// including an OOM kill.
func TestTaskEvents(t *testing.T) {
	taskRuntimes(t)
	d := startForTasks(t, hulltest.Options{})
	ref := "example.test/busybox:events"
	importWithCtr(t, d, "ev", ref, busyboxImage(t))
	c, ctx := newClient(t, d, "ev")
	img, err := c.GetImage(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Only once the daemon delivers to the subscription: /tasks/create
	// comes right after.
	evs, errs := hulltest.SubscribeReady(t, sctx, c.EventService(), `topic~="^/tasks/"`)

	ct, task := newTask(t, ctx, c, img, "evt", oci.WithProcessArgs("sleep", "600"))
	defer ct.Delete(ctx, client.WithSnapshotCleanup)
	exitc := mustWait(t, ctx, "task evt", task)
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := task.Exec(ctx, "ex1", &specs.Process{Args: []string{"true"}, Cwd: "/", Env: []string{"PATH=/bin"}}, cio.NullIO)
	if err != nil {
		t.Fatal(err)
	}
	pexit := mustWait(t, ctx, "exec ex1", p)
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	<-pexit
	if _, err := p.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if err := task.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := task.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exitc
	if _, err := task.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exec-started", "/tasks/exit",
		"/tasks/paused", "/tasks/resumed", "/tasks/exit", "/tasks/delete"}
	var got []string
	timeout := time.After(10 * time.Second)
	for len(got) < len(want) {
		select {
		case ev := <-evs:
			got = append(got, ev.Topic)
		case err := <-errs:
			t.Fatalf("subscription: %v (got %v)", err, got)
		case <-timeout:
			t.Fatalf("events %v, want %v", got, want)
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("events %v, want %v", got, want)
	}

	// An OOM kill: a container limited to 16 MiB that allocates without end.
	oom, otask := newTask(t, ctx, c, img, "oom", oci.WithMemoryLimit(16<<20), oci.WithProcessArgs("sh", "-c", "x=0123456789; while true; do x=$x$x; done"))
	defer oom.Delete(ctx, client.WithSnapshotCleanup)
	oexit := mustWait(t, ctx, "task oom", otask)
	if err := otask.Start(ctx); err != nil {
		t.Fatal(err)
	}
	sawOOM := false
	timeout = time.After(30 * time.Second)
	for !sawOOM {
		select {
		case ev := <-evs:
			sawOOM = ev.Topic == "/tasks/oom"
		case <-timeout:
			t.Fatal("no /tasks/oom event from a container over its memory limit")
		}
	}
	if st := <-oexit; st.Code != 137 {
		t.Fatalf("OOM-killed task exited %d, want 137", st.Code)
	}
	if _, err := otask.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	assertNoLeaks(t, d)
}

// TestTaskCreateBadInput: task creation from broken container records
// fails with the right code and names what is wrong; nothing is left.
func TestTaskCreateBadInput(t *testing.T) {
	taskRuntimes(t)
	d := startForTasks(t, hulltest.Options{})
	ref := "example.test/busybox:tbad"
	importWithCtr(t, d, "tbad", ref, busyboxImage(t))
	c, ctx := newClient(t, d, "tbad")
	img, err := c.GetImage(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	conn := dial(t, d)
	ctrs := containersapi.NewContainersClient(conn)
	tasks := tasksapi.NewTasksClient(conn)
	nctx := nsCtx("tbad")

	create := func(id string, spec *specs.Spec, snapshotter, key string) {
		t.Helper()
		a, err := typeurl.MarshalAnyToProto(spec)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ctrs.Create(nctx, &containersapi.CreateContainerRequest{Container: &containersapi.Container{
			ID: id, Image: ref, Runtime: &containersapi.Container_Runtime{Name: client.DefaultRuntime},
			Spec: a, Snapshotter: snapshotter, SnapshotKey: key,
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	good := func() *specs.Spec {
		s, err := oci.GenerateSpec(ctx, c, &containers.Container{ID: "x"}, oci.WithProcessArgs("true"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	_, err = tasks.Create(nctx, &tasksapi.CreateTaskRequest{ContainerID: "nosuch"})
	wantCode(t, "task of a missing container", err, codes.NotFound, "nosuch")

	// The snapshot named by the record does not exist.
	create("nosnap", good(), "overlayfs", "missing-key")
	_, err = tasks.Create(nctx, &tasksapi.CreateTaskRequest{ContainerID: "nosnap"})
	wantCode(t, "task whose snapshot is missing", err, codes.NotFound, "missing-key")

	lctx, release, err := c.WithLease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Invalid specs name the field.
	for field, mutate := range map[string]func(*specs.Spec){
		"process.args": func(s *specs.Spec) { s.Process.Args = nil },
		"process.cwd":  func(s *specs.Spec) { s.Process.Cwd = "relative" },
		"root.path":    func(s *specs.Spec) { s.Root = nil },
		"process":      func(s *specs.Spec) { s.Process = nil },
	} {
		id := "spec-" + strings.ReplaceAll(field, ".", "-")
		s := good()
		mutate(s)
		key := id
		// The lease keeps the garbage collector, which earlier removals
		// wake, off the snapshot until the container record holds it.
		if _, err := c.SnapshotService("overlayfs").Prepare(lctx, key, mustChainID(t, ctx, img)); err != nil {
			t.Fatal(err)
		}
		create(id, s, "overlayfs", key)
		_, err := tasks.Create(nctx, &tasksapi.CreateTaskRequest{ContainerID: id})
		wantCode(t, "spec without "+field, err, codes.InvalidArgument, field)
		ctrs.Delete(nctx, &containersapi.DeleteContainerRequest{ID: id})
		c.SnapshotService("overlayfs").Remove(ctx, key)
	}
	if err := release(ctx); err != nil {
		t.Fatal(err)
	}

	// Checkpoints are not supported yet, and say so.
	ct, task := newTask(t, ctx, c, img, "ckpt", oci.WithProcessArgs("sleep", "600"))
	_, err = tasks.Checkpoint(nctx, &tasksapi.CheckpointTaskRequest{ContainerID: "ckpt"})
	wantCode(t, "checkpoint", err, codes.Unimplemented, "CRIU")
	// A second task for the same container is refused.
	_, err = tasks.Create(nctx, &tasksapi.CreateTaskRequest{ContainerID: "ckpt"})
	wantCode(t, "second task", err, codes.AlreadyExists, "ckpt")
	task.Delete(ctx, client.WithProcessKill)
	ct.Delete(ctx, client.WithSnapshotCleanup)
	ctrs.Delete(nctx, &containersapi.DeleteContainerRequest{ID: "nosnap"})
	assertNoLeaks(t, d)
}

// newTask creates container id from img, running the image's command as
// opts change it, and its task with no stdio; the caller starts, waits for
// and removes them.
func newTask(t *testing.T, ctx context.Context, c *client.Client, img *client.Image, id string, opts ...oci.SpecOpts) (*client.Container, *client.Task) {
	t.Helper()
	ct, err := c.NewContainer(ctx, id, client.WithImage(img), client.WithNewSnapshot(id, img),
		client.WithNewSpec(append([]oci.SpecOpts{oci.WithImageConfig(img)}, opts...)...))
	if err != nil {
		t.Fatal(err)
	}
	task, err := ct.NewTask(ctx, cio.NullIO)
	if err != nil {
		t.Fatal(err)
	}
	return ct, task
}

func mustChainID(t *testing.T, ctx context.Context, img *client.Image) string {
	t.Helper()
	id, err := img.ChainID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}

// TestReconcileRemovesOrphans: the reconciler kills and removes a task
// whose container record is gone, and one whose shim stopped answering,
// and logs both.
func TestReconcileRemovesOrphans(t *testing.T) {
	taskRuntimes(t)
	d := startForTasks(t, hulltest.Options{Config: `version = 3
[plugins."io.containerd.runtime.v2.task"]
  reconcile_interval = "300ms"
`})
	ref := "example.test/busybox:orphan"
	importWithCtr(t, d, "orph", ref, busyboxImage(t))
	c, ctx := newClient(t, d, "orph")
	img, err := c.GetImage(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"norecord", "frozen"} {
		_, task := newTask(t, ctx, c, img, id, oci.WithProcessArgs("sleep", "600"))
		if err := task.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The record goes behind the task's back (the API allows it).
	conn := dial(t, d)
	if _, err := containersapi.NewContainersClient(conn).Delete(nsCtx("orph"), &containersapi.DeleteContainerRequest{ID: "norecord"}); err != nil {
		t.Fatal(err)
	}
	// The other task's shim stops answering.
	before := hulltest.ShimPIDs(d.Address)
	if len(before) != 2 {
		var cmds []string
		for _, pid := range before {
			cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			cmds = append(cmds, fmt.Sprintf("%d: %s", pid, bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
		}
		t.Fatalf("want 2 shims, found %d:\n%s", len(before), strings.Join(cmds, "\n"))
	}
	var frozen int
	for _, pid := range before {
		if cmdlineHas(pid, "frozen") {
			frozen = pid
		}
	}
	if frozen == 0 {
		t.Fatal("shim of task frozen not found")
	}
	if err := syscall.Kill(frozen, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(frozen, syscall.SIGCONT)

	hulltest.Eventually(t, 30*time.Second, "the reconciler to remove task norecord and stop task frozen", func() error {
		ts, err := c.Tasks(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		states := map[string]string{}
		for _, ts := range ts {
			states[ts.ContainerID] = string(ts.Status.Status)
		}
		if _, ok := states["norecord"]; ok || states["frozen"] != "stopped" {
			return fmt.Errorf("tasks %v", states)
		}
		return nil
	})
	log := d.Log()
	for _, want := range []string{"task has no container record", "shim does not answer"} {
		if !strings.Contains(log, want) {
			t.Errorf("hulld did not log %q", want)
		}
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", frozen)); err == nil && !strings.Contains(string(st), ") Z ") {
		t.Errorf("the shim that stopped answering (pid %d) was not killed: %s", frozen, st)
	}
	if task, err := loadTask(ctx, c, "frozen"); err == nil {
		task.Delete(ctx)
	}
	c.SnapshotService("overlayfs").Remove(ctx, "norecord")
	if ct, err := c.LoadContainer(ctx, "frozen"); err == nil {
		ct.Delete(ctx, client.WithSnapshotCleanup)
	}
	assertNoLeaks(t, d)
}

func loadTask(ctx context.Context, c *client.Client, id string) (*client.Task, error) {
	ct, err := c.LoadContainer(ctx, id)
	if err != nil {
		return nil, err
	}
	return ct.Task(ctx, nil)
}

func cmdlineHas(pid int, arg string) bool {
	for _, a := range procArgs(pid) {
		if a == arg {
			return true
		}
	}
	return false
}
