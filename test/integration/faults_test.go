package integration

// Faults of issue 11 beyond crash points: a runc slow on create when
// hulld dies, a container deleted under its running task, a shim killed,
// runc missing or failing, an exec into a stopped task.

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// scriptedRunc writes a "runc" into a new directory that runs script
// (sh) before it runs the real runc with the same arguments.
func scriptedRunc(t *testing.T, script string) (dir string) {
	t.Helper()
	real, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc is not installed")
	}
	dir = t.TempDir()
	body := "#!/bin/sh\n" + script + "\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "runc"), []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newTask makes container id running args with a task made through
// creator; the returned channel reports the task's exit.
func (r *chaosRig) newTask(c *client.Client, ctx context.Context, id string, creator cio.Creator, args ...string) (*client.Task, <-chan client.ExitStatus) {
	r.t.Helper()
	ct, err := r.newContainer(ctx, c, id, args...)
	if err != nil {
		r.t.Fatal(err)
	}
	task, err := ct.NewTask(ctx, creator)
	if err != nil {
		r.t.Fatal(err)
	}
	return task, mustWait(r.t, ctx, id, task)
}

// exitedTask imports the image and runs `true` as container "brief",
// returning once its task has exited (and is not yet deleted).
func (r *chaosRig) exitedTask() (*client.Client, context.Context, *client.Task) {
	r.t.Helper()
	r.importImage()
	c, ctx := r.client()
	task, exited := r.newTask(c, ctx, "brief", cio.NullIO, "true")
	if err := task.Start(ctx); err != nil {
		r.t.Fatal(err)
	}
	waitExit(r.t, "brief", exited)
	return c, ctx, task
}

// TestFaultHulldDiesWhileRuncCreates is the ghost task of issue 11: with a
// runc slow on create, `ctr run -d` under hull's shim, hulld killed while
// runc creates, and a restart, hulld lists no task, the id can be run
// again, and after the container is removed nothing of it is left.
func TestFaultHulldDiesWhileRuncCreates(t *testing.T) {
	flags := t.TempDir()
	slow, inCreate := filepath.Join(flags, "slow"), filepath.Join(flags, "in-create")
	wrapper := scriptedRunc(t, `for a in "$@"; do [ "$a" = create ] && [ -e `+slow+` ] && { touch `+inCreate+`; sleep 60; }; done`)
	r := newChaosRig(t, "slow-runc")
	env := "PATH=" + wrapper + ":" + os.Getenv("PATH")
	r.start(env)
	r.importImage()
	if err := os.WriteFile(slow, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	run := exec.Command("ctr", "--address", r.d.Address, "-n", r.ns, "run", "-d", "--runtime", "io.containerd.hull.v2", r.ref, "g1", "sleep", "60")
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- run.Wait() }()
	hulltest.Eventually(t, 30*time.Second, "runc create to begin", func() error {
		_, err := os.Stat(inCreate)
		return err
	})
	r.d.Kill()
	if err := <-runDone; err == nil {
		t.Fatal("ctr run succeeded though hulld died during the create")
	}
	os.Remove(slow)

	r.start(env)
	c, ctx := r.client()
	r.checkTasksMatchMachine(c, ctx)
	if tasks, _ := c.Tasks(ctx, ""); len(tasks) != 0 {
		t.Fatalf("hulld lists %+v after the restart; want no task", tasks)
	}
	// The id is usable: start it as ctr does, then remove it.
	r.d.Ctr(t, nil, "-n", r.ns, "tasks", "start", "-d", "g1")
	r.checkTasksMatchMachine(c, ctx)
	r.d.Ctr(t, nil, "-n", r.ns, "tasks", "kill", "-s", "SIGKILL", "g1")
	hulltest.Eventually(t, 20*time.Second, "g1 to stop", func() error {
		_, err := r.d.CtrErr(nil, "-n", r.ns, "tasks", "rm", "g1")
		return err
	})
	r.d.Ctr(t, nil, "-n", r.ns, "containers", "rm", "g1")
	r.deleteAll(c, ctx)
	r.checkClean(c, ctx)
}

// TestFaultContainerDeletedUnderItsTask: a client that deletes a
// container whose task still runs (a failed exec, a crash of its own)
// leaves no shim, rootfs mount or process: the task goes with it.
func TestFaultContainerDeletedUnderItsTask(t *testing.T) {
	r := newChaosRig(t, "orphan")
	r.start()
	r.importImage()
	c, ctx := r.client()
	task, _ := r.newTask(c, ctx, "orphan", cio.NullIO, "sleep", "300")
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// The store's delete, as a client that does not check for a task.
	if err := c.ContainerService().Delete(ctx, "orphan"); err != nil {
		t.Fatal(err)
	}
	hulltest.Eventually(t, 20*time.Second, "the task of the deleted container to go", func() error {
		tasks, err := c.Tasks(ctx, "")
		if err != nil {
			return err
		}
		if len(tasks) > 0 || len(hulltest.ShimPIDs(r.address())) > 0 {
			return errdefs.ErrFailedPrecondition
		}
		return nil
	})
	// The deleted container no longer holds its rootfs snapshot, so the
	// collector may have taken it already: either way it must go.
	if err := c.SnapshotService("").Remove(ctx, "orphan-rootfs"); err != nil && !errdefs.IsNotFound(err) {
		t.Fatal(err)
	}
	r.deleteAll(c, ctx)
	r.checkClean(c, ctx)
}

// TestFaultShimKilled: a shim killed with SIGKILL leaves its task
// reported exited; deleting it cleans everything up.
func TestFaultShimKilled(t *testing.T) {
	r := newChaosRig(t, "shimkill")
	r.start()
	r.importImage()
	c, ctx := r.client()
	task, exited := r.newTask(c, ctx, "victim", cio.NullIO, "sleep", "300")
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	shims := hulltest.ShimPIDs(r.address())
	if len(shims) != 1 {
		t.Fatalf("shims %v; want one", shims)
	}
	p, _ := os.FindProcess(shims[0])
	p.Kill()
	select {
	case st := <-exited:
		if st.Code != 137 && st.Err == nil {
			t.Errorf("exit of the task whose shim was killed: %+v; want 137", st)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the task of a killed shim is not reported exited")
	}
	if st, err := task.Status(ctx); err != nil || st.Status != client.Stopped {
		t.Errorf("status: %+v, %v; want stopped", st, err)
	}
	r.deleteAll(c, ctx)
	r.checkClean(c, ctx)
}

// TestFaultRuncMissingOrFailing: a runc binary that is not there, or that
// fails its create, fails the task's create with an error that says so,
// and leaves nothing behind.
func TestFaultRuncMissingOrFailing(t *testing.T) {
	// Fails as runc does: the reason goes to its --log file, as JSON.
	failing := scriptedRunc(t, `prev=; log=; for a in "$@"; do [ "$prev" = --log ] && log=$a; prev=$a; done
for a in "$@"; do [ "$a" = create ] && { echo '{"level":"error","msg":"runc create refused by the test"}' >> "$log"; exit 1; }; done`)
	r := newChaosRig(t, "badrunc")
	r.start()
	r.importImage()
	c, ctx := r.client()
	img, err := c.GetImage(ctx, r.ref)
	if err != nil {
		t.Fatal(err)
	}
	for name, bin := range map[string]string{"missing": "/nonexistent/runc", "failing": filepath.Join(failing, "runc")} {
		ct, err := c.NewContainer(ctx, name, client.WithImage(img), client.WithNewSnapshot(name+"-rootfs", img),
			client.WithRuntime(client.DefaultRuntime, &runcoptions.Options{BinaryName: bin}),
			client.WithNewSpec(oci.WithImageConfigArgs(img, []string{"true"})))
		if err != nil {
			t.Fatal(err)
		}
		_, err = ct.NewTask(ctx, cio.NullIO)
		if err == nil {
			t.Fatalf("%s runc: the create succeeded", name)
		}
		want := map[string]string{"missing": "/nonexistent/runc", "failing": "runc create refused by the test"}[name]
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s runc: %v; want the error to say %q", name, err, want)
		}
		r.checkTasksMatchMachine(c, ctx)
	}
	r.deleteAll(c, ctx)
	r.checkClean(c, ctx)
}

// TestFaultExecInStoppedTask: an exec into a task whose process exited is
// FailedPrecondition, not Unknown.
func TestFaultExecInStoppedTask(t *testing.T) {
	r := newChaosRig(t, "execstop")
	r.start()
	c, ctx, task := r.exitedTask()
	p, err := task.Exec(ctx, "late", &specs.Process{Args: []string{"true"}, Cwd: "/", Env: []string{"PATH=/bin"}}, cio.NullIO)
	if err == nil {
		err = p.Start(ctx)
	}
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "brief") {
		t.Errorf("exec into a stopped task: %v; want FailedPrecondition naming the container", err)
	}
	r.deleteAll(c, ctx)
	r.checkClean(c, ctx)
}

// TestFaultDeleteOfATaskAlreadyGone: a client whose task was deleted
// behind its back (by another client, or by a delete whose answer was lost
// when hulld died) gets NotFound from its own delete, and its FIFOs go
// anyway instead of staying for ever.
func TestFaultDeleteOfATaskAlreadyGone(t *testing.T) {
	r := newChaosRig(t, "gone")
	r.start()
	r.importImage()
	c, ctx := r.client()
	task, _ := r.newTask(c, ctx, "gone", cio.NewCreator(cio.WithStreams(nil, io.Discard, io.Discard), cio.WithFIFODir(r.fifoDir())), "sleep", "300")
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	other, octx := r.client()
	ot, err := other.LoadContainer(octx, "gone")
	if err != nil {
		t.Fatal(err)
	}
	otask, err := ot.Task(octx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := otask.Delete(octx, client.WithProcessKill); err != nil {
		t.Fatal(err)
	}
	if _, err := task.Delete(ctx, client.WithProcessKill); !errdefs.IsNotFound(err) {
		t.Fatalf("delete of a task deleted by another client: %v; want NotFound", err)
	}
	if left := dirNames(r.fifoDir()); len(left) > 0 {
		t.Errorf("FIFOs left: %v", left)
	}
	r.deleteAll(c, ctx)
	r.checkClean(c, ctx)
}

// TestFaultDeleteWaitsForAKillAll: runc kill --all freezes the container
// while it signals (cgroup v1), and runc refuses to delete a frozen
// container ("not stopped: paused"). When the init ends by itself while a
// kill --all is under way, its exit is handled and the delete asked for at
// once (the CRI's RemoveContainer of a container that had just ended did
// this): the shim deletes only once the kill is over. The scripted runc
// holds its kill --all for a second and refuses deletes meanwhile, as the
// real one does while the container is frozen.
func TestFaultDeleteWaitsForAKillAll(t *testing.T) {
	flags := t.TempDir()
	killing := filepath.Join(flags, "killing")
	wrapper := scriptedRunc(t, `prev=; log=; kill=; all=; for a in "$@"; do [ "$prev" = --log ] && log=$a; prev=$a; [ "$a" = kill ] && kill=1; [ "$a" = --all ] && all=1; done
[ -n "$kill" ] && [ -n "$all" ] && { touch `+killing+`; sleep 1; rm -f `+killing+`; }
for a in "$@"; do [ "$a" = delete ] && [ -e `+killing+` ] && { echo '{"level":"error","msg":"cannot delete container that is not stopped: paused"}' >> "$log"; exit 1; }; done`)
	r := newChaosRig(t, "killall")
	r.start("PATH=" + wrapper + ":" + os.Getenv("PATH"))
	c, ctx, task := r.exitedTask()
	killed := make(chan error, 1)
	go func() { killed <- task.Kill(ctx, syscall.SIGKILL, client.WithKillAll) }()
	hulltest.Eventually(t, 10*time.Second, "runc kill --all under way", func() error {
		_, err := os.Stat(killing)
		return err
	})
	if _, err := task.Delete(ctx); err != nil {
		t.Fatalf("delete while a kill --all was under way: %v", err)
	}
	if _, err := os.Stat(killing); err == nil {
		t.Fatal("the delete returned while the kill --all was still under way")
	}
	// The kill of a container that had exited may fail (runc finds it
	// stopped); it must have ended.
	select {
	case <-killed:
	case <-time.After(10 * time.Second):
		t.Fatal("the kill did not return")
	}
	r.deleteAll(c, ctx)
	r.checkClean(c, ctx)
}
