package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/client/cio"
	"github.com/hullrt/hull/client/oci"
	"github.com/hullrt/hull/core/restart"
	"github.com/hullrt/hull/internal/hulltest"
)

// restartInterval is the monitor's interval in these tests: short, so
// that a test waits a few hundred milliseconds per restart, not 10 s.
const restartInterval = "200ms"

// restartFixture is a hulld whose restart monitor looks every
// restartInterval, with the busybox image in namespace ns.
type restartFixture struct {
	t   *testing.T
	d   *hulltest.Daemon
	c   *client.Client
	ctx context.Context
	img *client.Image
	dir string
}

const restartNS = "restartmon"

func newRestartFixture(t *testing.T) *restartFixture {
	t.Helper()
	d := hulltest.Start(t, hulltest.Options{Config: fmt.Sprintf("version = 3\n\n[plugins.\"io.containerd.monitor.container.v1.restart\"]\n  interval = %q\n", restartInterval)})
	ref := "example.test/busybox:restart"
	importWithCtr(t, d, restartNS, ref, busyboxImage(t))
	c, err := client.New(d.Address, client.WithDefaultNamespace(restartNS), client.WithDefaultRuntime("io.containerd.runc.v2"), client.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(client.WithNamespace(context.Background(), restartNS), 3*time.Minute)
	t.Cleanup(cancel)
	t.Cleanup(func() {
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", restartNS))
		dirs = append(dirs, filepath.Join("/sys/fs/cgroup", restartNS))
		for _, d := range dirs {
			os.Remove(d)
		}
	})
	// Before hulld stops (cleanups run last first): the monitor must not
	// start what is being removed, so the labels go first.
	t.Cleanup(func() {
		cctx := client.WithNamespace(context.Background(), restartNS)
		cs, _ := c.Containers(cctx)
		for _, ct := range cs {
			ct.SetLabels(cctx, map[string]string{restart.StatusLabel: ""})
		}
		for _, ct := range cs {
			if task, err := ct.Task(cctx, nil); err == nil {
				task.Delete(cctx, client.WithProcessKill)
			}
			ct.Delete(cctx, client.WithSnapshotCleanup)
		}
	})
	img, err := c.GetImage(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	return &restartFixture{t: t, d: d, c: c, ctx: ctx, img: img, dir: t.TempDir()}
}

// run creates container id running args, starts its task with no stdio,
// and then gives it labels: with the status label from the start, the
// monitor could start a task before the test does.
func (f *restartFixture) run(id string, labels map[string]string, args ...string) *client.Container {
	f.t.Helper()
	ct, err := f.c.NewContainer(f.ctx, id,
		client.WithImage(f.img),
		client.WithNewSnapshot(id+"-rootfs", f.img),
		client.WithNewSpec(oci.WithImageConfig(f.img), oci.WithProcessArgs(args...)),
	)
	if err != nil {
		f.t.Fatal(err)
	}
	task, err := ct.NewTask(f.ctx, cio.NullIO)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := task.Start(f.ctx); err != nil {
		f.t.Fatal(err)
	}
	if _, err := ct.SetLabels(f.ctx, labels); err != nil {
		f.t.Fatal(err)
	}
	return ct
}

// state is a container's task status and pid, and its restart count.
type restartState struct {
	status client.ProcessStatus
	exit   uint32
	pid    uint32
	count  string
}

// state reads ct's restart state. A task being replaced by the monitor
// can be gone between two calls (its shim exits): such errors are
// returned, for Eventually to try again.
func (f *restartFixture) state(ct *client.Container) (restartState, error) {
	labels, err := ct.Labels(f.ctx)
	if err != nil {
		return restartState{}, err
	}
	st := restartState{count: labels[restart.CountLabel]}
	task, err := ct.Task(f.ctx, nil)
	if errdefs.IsNotFound(err) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	s, err := task.Status(f.ctx)
	if errdefs.IsNotFound(err) {
		return restartState{count: st.count}, nil
	}
	if err != nil {
		return st, err
	}
	st.status, st.exit, st.pid = s.Status, s.ExitStatus, task.Pid()
	return st, nil
}

// settled is ct's state, which the test expects to hold still.
func (f *restartFixture) settled(ct *client.Container) restartState {
	f.t.Helper()
	st, err := f.state(ct)
	if err != nil {
		f.t.Fatalf("%s: %v", ct.ID(), err)
	}
	return st
}

// await waits until ct's state satisfies ok.
func (f *restartFixture) await(ct *client.Container, what string, ok func(restartState) bool) {
	f.t.Helper()
	hulltest.Eventually(f.t, 90*time.Second, ct.ID()+" "+what, func() error {
		st, err := f.state(ct)
		if err != nil {
			return err
		}
		if !ok(st) {
			return fmt.Errorf("%+v", st)
		}
		return nil
	})
}

func (f *restartFixture) kill(ct *client.Container) {
	f.t.Helper()
	task, err := ct.Task(f.ctx, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := task.Kill(f.ctx, syscall.SIGKILL); err != nil {
		f.t.Fatal(err)
	}
}

// ticker is a container that exits at once under policy always, so the
// monitor restarts it every pass: its count is the monitor's clock, which
// lets a test see that the monitor looked again and still left something
// alone, without sleeping.
func (f *restartFixture) ticker() func(passes int) {
	log := filepath.Join(f.dir, "tick.log")
	ct := f.run("ticker", map[string]string{
		restart.StatusLabel: restart.Running, restart.PolicyLabel: restart.Always,
		restart.LogURILabel: "file://" + log,
	}, "sh", "-c", "echo tick")
	return func(passes int) {
		f.t.Helper()
		start, _ := strconv.Atoi(f.settled(ct).count)
		f.await(ct, fmt.Sprintf("restarted %d more times", passes), func(st restartState) bool {
			n, _ := strconv.Atoi(st.count)
			return n >= start+passes
		})
	}
}

// TestRestartMonitor drives the restart monitor through the labels of
// containerd's restart package, with Debian's runc shim: policy always
// restarts a killed task, on-failure:2 stops after two restarts,
// unless-stopped respects explicitly-stopped, status stopped stops a
// task, loguri takes the new task's output, and an unknown policy is
// reported once and left alone.
func TestRestartMonitor(t *testing.T) {
	hulltest.RequireCtr(t)
	f := newRestartFixture(t)
	tick := f.ticker()

	always := f.run("always", map[string]string{restart.StatusLabel: restart.Running, restart.PolicyLabel: restart.Always}, "sleep", "1000")
	onFailure := f.run("onfailure", map[string]string{restart.StatusLabel: restart.Running, restart.PolicyLabel: "on-failure:2"}, "sh", "-c", "exit 3")
	unless := f.run("unless", map[string]string{restart.StatusLabel: restart.Running, restart.PolicyLabel: restart.UnlessStopped, restart.ExplicitlyStoppedLabel: "true"}, "sleep", "1000")
	typo := f.run("typo", map[string]string{restart.StatusLabel: restart.Running, restart.PolicyLabel: "sometimes"}, "sleep", "1000")
	stopper := f.run("stopper", map[string]string{restart.StatusLabel: restart.Stopped}, "sleep", "1000")

	first := f.settled(always)
	if first.status != client.Running || first.count != "" {
		t.Fatalf("always before the kill: %+v", first)
	}
	f.kill(always)
	f.kill(unless)
	f.kill(typo)

	f.await(always, "running again", func(st restartState) bool {
		return st.status == client.Running && st.pid != first.pid && st.count == "1"
	})
	f.await(onFailure, "given up after 2 restarts", func(st restartState) bool {
		return st.status == client.Stopped && st.count == "2" && st.exit == 3
	})
	f.await(stopper, "without its task", func(st restartState) bool { return st.status == "" })
	tick(3)
	if st := f.settled(onFailure); st.status != client.Stopped || st.count != "2" {
		t.Errorf("on-failure:2 after more passes: %+v", st)
	}
	if st := f.settled(unless); st.status != client.Stopped || st.count != "" {
		t.Errorf("unless-stopped, explicitly stopped: %+v; want left stopped", st)
	}
	if st := f.settled(typo); st.status != client.Stopped || st.count != "" {
		t.Errorf("unknown policy: %+v; want left stopped", st)
	}
	if st := f.settled(always); st.status != client.Running || st.count != "1" {
		t.Errorf("always, running: %+v; want left running", st)
	}
	// Reported once, naming the value, however many passes saw it.
	if n := strings.Count(f.d.Log(), `restart policy \"sometimes\"`); n != 1 {
		t.Errorf("the unknown policy is logged %d times, want once:\n%s", n, f.d.Log())
	}
	// The ticker's new tasks wrote to the loguri file.
	if b, err := os.ReadFile(filepath.Join(f.dir, "tick.log")); err != nil || strings.Count(string(b), "tick\n") < 3 {
		t.Errorf("tick.log: %q, %v", b, err)
	}

	// Labels changed later are followed.
	if _, err := unless.SetLabels(f.ctx, map[string]string{restart.ExplicitlyStoppedLabel: "false"}); err != nil {
		t.Fatal(err)
	}
	if _, err := typo.SetLabels(f.ctx, map[string]string{restart.PolicyLabel: "always"}); err != nil {
		t.Fatal(err)
	}
	for _, ct := range []*client.Container{unless, typo} {
		f.await(ct, "running again", func(st restartState) bool { return st.status == client.Running && st.count == "1" })
	}
}

// TestRestartMonitorConfig: the interval is checked at start-up, and the
// monitor is listed with containerd's capabilities.
func TestRestartMonitorConfig(t *testing.T) {
	hulltest.RequireCtr(t)
	// A bad interval stops hulld at start, naming the key and the value.
	bad := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(bad, []byte("version = 3\n\n[plugins.\"io.containerd.monitor.container.v1.restart\"]\n  interval = \"often\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(hulltest.Binary(t), "--config", bad, "--root", t.TempDir(), "--state", t.TempDir(), "--address", filepath.Join(t.TempDir(), "h.sock")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "interval") || !strings.Contains(string(out), `"often"`) {
		t.Errorf("hulld with interval = \"often\": %v, want an exit naming interval and \"often\"\n%s", err, out)
	}
	d2 := hulltest.Start(t, hulltest.Options{})
	c, ctx := newClient(t, d2, "default")
	ps, err := c.Plugins(ctx, "type==io.containerd.monitor.container.v1,id==restart")
	if err != nil || len(ps) != 1 || ps[0].InitErr != "" || strings.Join(ps[0].Capabilities, ",") != "no,always,on-failure,unless-stopped" {
		t.Errorf("restart plugin: %+v, %v", ps, err)
	}
}
