package integration

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/client/cio"
	"github.com/hullrt/hull/client/oci"
	"github.com/hullrt/hull/internal/hulltest"
)

// lockedBuffer collects a process's output from the cio copy goroutine.
type lockedBuffer = hulltest.SyncBuffer

// eofSignal is a reader that closes done when it reaches its end.
type eofSignal struct {
	r    io.Reader
	done chan struct{}
	once sync.Once
}

func (e *eofSignal) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		e.once.Do(func() { close(e.done) })
	}
	return n, err
}

// TestClientTasksContainerd runs the task lifecycle through the client
// library against Debian's containerd and its runc shim: the yardstick the
// client must work with.
func TestClientTasksContainerd(t *testing.T) {
	hulltest.RequireCtr(t)
	ctrd := hulltest.StartContainerd(t, "")
	// runc's state goes under the test's directory, not runc's default
	// /run/containerd/runc: the runtime options travel with the container.
	taskLifecycle(t, ctrd.Address, ctrd, "io.containerd.runc.v2", &runcoptions.Options{Root: filepath.Join(t.TempDir(), "runc")})
}

// TestClientTasksHull runs the same against hulld, under Debian's runc
// shim and hull's own.
func TestClientTasksHull(t *testing.T) {
	hulltest.RequireCtr(t)
	// hulld looks for shims next to its own binary.
	hulltest.Build(t, "containerd-shim-hull-v2", "github.com/hullrt/hull/cmd/containerd-shim-hull-v2")
	for _, runtime := range []string{"io.containerd.runc.v2", client.DefaultRuntime} {
		t.Run(runtime, func(t *testing.T) {
			d := hulltest.Start(t, hulltest.Options{})
			c, ctx := newClient(t, d, "probe")
			ps, err := c.Plugins(ctx, "type==io.containerd.grpc.v1,id==tasks")
			if err != nil {
				t.Fatal(err)
			}
			if len(ps) == 0 || ps[0].InitErr != "" {
				t.Fatalf("hulld does not serve the tasks API: introspection lists %+v", ps)
			}
			taskLifecycle(t, d.Address, d, runtime, nil)
		})
	}
}

// waiter is a client task or process.
type waiter interface {
	Wait(ctx context.Context) (<-chan client.ExitStatus, error)
}

// mustWait subscribes to p's exit, failing the test if the daemon refuses:
// an ignored error would leave a nil channel that blocks for ever.
func mustWait(t *testing.T, ctx context.Context, what string, p waiter) <-chan client.ExitStatus {
	t.Helper()
	ch, err := p.Wait(ctx)
	if err != nil {
		t.Fatalf("%s: wait: %v", what, err)
	}
	return ch
}

// waitExit waits for a process's exit status, failing the test after a
// while rather than hanging.
func waitExit(t *testing.T, what string, ch <-chan client.ExitStatus) client.ExitStatus {
	t.Helper()
	select {
	case st := <-ch:
		if st.Err != nil {
			t.Fatalf("%s: wait: %v", what, st.Err)
		}
		return st
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not exit within 30s", what)
	}
	return client.ExitStatus{}
}

func taskLifecycle(t *testing.T, address string, d ctrRunner, runtime string, runtimeOpts any) {
	const ns = "clienttasks" // not "tasks": a cgroup v1 hierarchy has a file of that name
	ref := "example.test/busybox:tasks"
	importWithCtr(t, d, ns, ref, busyboxImage(t))
	c, err := client.New(address, client.WithDefaultNamespace(ns), client.WithDefaultRuntime(runtime), client.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(client.WithNamespace(context.Background(), ns), 2*time.Minute)
	defer cancel()
	fifoDir := filepath.Join(t.TempDir(), "fifo")
	// runc removes each container's cgroup but not the namespace's parent
	// (cgroup path /<namespace>/<id>); rmdir only succeeds once it is
	// empty, so a concurrent run keeps its own.
	t.Cleanup(func() {
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", ns))
		for _, d := range dirs {
			os.Remove(d)
		}
	})
	// Shims outlive their daemon: a failed run must still kill its
	// processes, before the daemon stops (cleanups run last first).
	t.Cleanup(func() {
		cctx := client.WithNamespace(context.Background(), ns)
		cs, _ := c.Containers(cctx)
		for _, ct := range cs {
			if task, err := ct.Task(cctx, nil); err == nil {
				task.Delete(cctx, client.WithProcessKill)
			}
		}
	})

	img, err := c.GetImage(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if unpacked, err := img.IsUnpacked(ctx, ""); err != nil || !unpacked {
		t.Fatalf("image imported by ctr is not unpacked: %v %v", unpacked, err)
	}

	// A task that prints and exits.
	hello, err := c.NewContainer(ctx, "hello",
		client.WithImage(img),
		client.WithRuntime(runtime, runtimeOpts),
		client.WithNewSnapshot("hello-rootfs", img),
		client.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("sh", "-c", "echo hi; echo oops >&2; exit 3")),
	)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr lockedBuffer
	task, err := hello.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, &stdout, &stderr), cio.WithFIFODir(fifoDir)))
	if err != nil {
		t.Fatal(err)
	}
	if task.Pid() == 0 {
		t.Fatal("created task has no pid")
	}
	if st, err := task.Status(ctx); err != nil || st.Status != client.Created {
		t.Fatalf("status after create: %+v %v", st, err)
	}
	exited := mustWait(t, ctx, "task", task)
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if st := waitExit(t, "hello", exited); st.Code != 3 || st.ExitedAt.IsZero() {
		t.Fatalf("exit %+v, want code 3 with a time", st)
	}
	if st, err := task.Status(ctx); err != nil || st.Status != client.Stopped || st.ExitStatus != 3 {
		t.Fatalf("status after exit: %+v %v", st, err)
	}
	if err := hello.Delete(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("delete of a container with a task: %v", err)
	}
	st, err := task.Delete(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Code != 3 {
		t.Fatalf("delete reported exit %d", st.Code)
	}
	if stdout.String() != "hi\n" || stderr.String() != "oops\n" {
		t.Fatalf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
	if _, err := hello.Task(ctx, nil); !errdefs.IsNotFound(err) {
		t.Fatalf("task of a container whose task was deleted: %v", err)
	}
	info, err := hello.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Snapshotter == "" || info.SnapshotKey != "hello-rootfs" || info.Image != ref || info.Runtime.Name != runtime {
		t.Fatalf("container record %+v", info)
	}
	if runtimeOpts != nil && info.Runtime.Options.GetTypeUrl() != "containerd.runc.v1.Options" {
		t.Fatalf("runtime options %v", info.Runtime.Options)
	}
	if err := hello.Delete(ctx, client.WithSnapshotCleanup); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SnapshotService(info.Snapshotter).Stat(ctx, "hello-rootfs"); !errdefs.IsNotFound(err) {
		t.Fatalf("snapshot left after WithSnapshotCleanup: %v", err)
	}

	// A long-running task: exec, pids, metrics, pause, update, kill.
	sleeper, err := c.NewContainer(ctx, "sleeper",
		client.WithRuntime(runtime, runtimeOpts),
		client.WithNewSnapshot("sleeper-rootfs", img),
		client.WithNewSpec(oci.WithImageConfigArgs(img, []string{"sleep", "300"})),
		client.WithContainerLabels(map[string]string{"role": "sleeper"}),
	)
	if err != nil {
		t.Fatal(err)
	}
	task, err = sleeper.NewTask(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	exited = mustWait(t, ctx, "task", task)
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := task.Status(ctx); err != nil || st.Status != client.Running {
		t.Fatalf("status after start: %+v %v", st, err)
	}
	pids, err := task.Pids(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) != 1 || pids[0].Pid != task.Pid() {
		t.Fatalf("pids %+v, want the init process %d", pids, task.Pid())
	}
	m, err := task.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "sleeper" || m.Data == nil {
		t.Fatalf("metrics %v", m)
	}
	listed, err := c.Tasks(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].ContainerID != "sleeper" || listed[0].Pid != task.Pid() || listed[0].Status.Status != client.Running {
		t.Fatalf("tasks %+v", listed)
	}
	loaded, err := c.LoadContainer(ctx, "sleeper")
	if err != nil {
		t.Fatal(err)
	}
	if lt, err := loaded.Task(ctx, nil); err != nil || lt.Pid() != task.Pid() {
		t.Fatalf("loaded task: %v %v", lt, err)
	}

	// Exec with stdin, stdout and stderr.
	var execOut, execErr lockedBuffer
	pspec := &specs.Process{Args: []string{"sh", "-c", "cat; echo to-stderr >&2"}, Cwd: "/", Env: []string{"PATH=/bin"}}
	stdin := &eofSignal{r: strings.NewReader("from stdin\n"), done: make(chan struct{})}
	proc, err := task.Exec(ctx, "exec-1", pspec, cio.NewCreator(cio.WithStreams(stdin, &execOut, &execErr), cio.WithFIFODir(fifoDir)))
	if err != nil {
		t.Fatal(err)
	}
	pexited := mustWait(t, ctx, "exec exec-1", proc)
	if err := proc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if proc.Pid() == 0 {
		t.Fatal("started exec has no pid")
	}
	// The shim holds stdin open until told: once our input is in the
	// FIFO, CloseIO lets cat see EOF.
	select {
	case <-stdin.done:
	case <-time.After(10 * time.Second):
		t.Fatal("stdin was not consumed")
	}
	if err := proc.CloseIO(ctx, client.WithStdinCloser); err != nil {
		t.Fatal(err)
	}
	if st := waitExit(t, "exec", pexited); st.Code != 0 {
		t.Fatalf("exec exit %+v", st)
	}
	if _, err := proc.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if execOut.String() != "from stdin\n" || execErr.String() != "to-stderr\n" {
		t.Fatalf("exec stdout %q stderr %q", execOut.String(), execErr.String())
	}
	if _, err := task.Exec(ctx, "", pspec, nil); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("exec without an id: %v", err)
	}

	// A second exec that runs until killed, seen by Pids.
	proc, err = task.Exec(ctx, "exec-2", &specs.Process{Args: []string{"/bin/sleep", "300"}, Cwd: "/"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pexited = mustWait(t, ctx, "exec exec-2", proc)
	if err := proc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if pids, err := task.Pids(ctx); err != nil || len(pids) != 2 {
		t.Fatalf("pids with an exec running: %+v %v", pids, err)
	}
	if _, err := proc.Delete(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("delete of a running exec: %v", err)
	}
	if err := task.Kill(ctx, syscall.SIGKILL, client.WithKillExecID("exec-2")); err != nil {
		t.Fatal(err)
	}
	if st := waitExit(t, "exec-2", pexited); st.Code != 128+9 {
		t.Fatalf("killed exec exit %+v", st)
	}
	if _, err := proc.Delete(ctx); err != nil {
		t.Fatal(err)
	}

	if err := task.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := task.Status(ctx); err != nil || st.Status != client.Paused {
		t.Fatalf("status after pause: %+v %v", st, err)
	}
	if err := task.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	limit := int64(64 << 20)
	if err := task.Update(ctx, client.WithResources(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}})); err != nil {
		t.Fatal(err)
	}
	if _, err := task.Delete(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("delete of a running task: %v", err)
	}
	// busybox sleep as pid 1 ignores SIGTERM; SIGKILL it is.
	if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if st := waitExit(t, "sleeper", exited); st.Code != 128+9 {
		t.Fatalf("killed task exit %+v", st)
	}
	if _, err := task.Delete(ctx); err != nil {
		t.Fatal(err)
	}

	// WithProcessKill deletes a running task in one go.
	task, err = sleeper.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, &lockedBuffer{}, nil), cio.WithFIFODir(fifoDir)))
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := task.Delete(ctx, client.WithProcessKill); err != nil {
		t.Fatal(err)
	}
	if err := sleeper.Delete(ctx, client.WithSnapshotCleanup); err != nil {
		t.Fatal(err)
	}
	if cs, err := c.Containers(ctx); err != nil || len(cs) != 0 {
		t.Fatalf("containers left: %v %v", cs, err)
	}
	left, _ := os.ReadDir(fifoDir)
	if len(left) != 0 {
		t.Fatalf("fifo dirs left: %v", left)
	}
}
