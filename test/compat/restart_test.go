package compat

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/runtime/restart"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/testimage"
)

// startHulldWith is startHulld with options (see startHulld for why the
// thread stays locked).
func startHulldWith(t *testing.T, opts hulltest.Options) *hulltest.Daemon {
	t.Helper()
	buildHulld(t)
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	return hulltest.Start(t, opts)
}

// shim2Env puts containerd v2.4.2's runc shim first on hulld's PATH, so
// that io.containerd.runc.v2 is containerd 2.x's.
func shim2Env(t *testing.T) []string {
	return []string{"PATH=" + hulltest.Containerd2Dir + string(os.PathListSeparator) + os.Getenv("PATH")}
}

// TestRuntimeInfoWithContainerdsClient: containerd v2.4.2's
// Client.RuntimeInfo gives the same answer from hulld as from containerd
// v2.4.2, runc's features with it.
func TestRuntimeInfoWithContainerdsClient(t *testing.T) {
	hulltest.Containerd2Bin(t, "containerd-shim-runc-v2")
	d := startHulldWith(t, hulltest.Options{Env: shim2Env(t)})
	ctrd := hulltest.StartContainerdWith(t, "", hulltest.ContainerdOptions{Binary: hulltest.Containerd2Bin(t, "containerd"), PathDirs: []string{hulltest.Containerd2Dir}})
	ctx := namespaces.WithNamespace(context.Background(), "compat")
	infos := map[string]*containerd.RuntimeInfo{}
	for name, address := range map[string]string{"hulld": d.Address, "containerd": ctrd.Address} {
		c, err := containerd.New(address)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		info, err := c.RuntimeInfo(ctx, "io.containerd.runc.v2", &options.Options{BinaryName: "runc", Root: "/nonexistent/runc"})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		infos[name] = info
		if _, err := c.RuntimeInfo(ctx, "io.containerd.nosuch.v2", nil); err == nil {
			t.Errorf("%s: runtime info of a runtime that is not installed", name)
		}
	}
	h := infos["hulld"]
	if !reflect.DeepEqual(h, infos["containerd"]) {
		t.Errorf("hulld answers %+v\ncontainerd v2.4.2 answers %+v", h, infos["containerd"])
	}
	f, ok := h.Features.(*features.Features)
	if h.Name != "io.containerd.runc.v2" || !ok || !slices.Contains(f.MountOptions, "ro") {
		t.Errorf("runtime info: %+v", h)
	}
	if o, ok := h.Options.(*options.Options); !ok || o.BinaryName != "runc" {
		t.Errorf("options echoed: %#v", h.Options)
	}
}

// restartConfig sets the monitor's interval, short so that tests do
// not wait 10 s per restart.
const restartConfig = "version = 3\n\n[plugins.\"io.containerd.monitor.container.v1.restart\"]\n  interval = \"200ms\"\n"

// TestRestartPoliciesWithContainerdsClient drives hulld's restart monitor
// with containerd v2.4.2's client and its runtime/restart helpers
// (WithStatus, WithPolicy, WithLogURIString), with containerd 2.4.2's runc
// shim: the monitor starts a container that should run, starts it again
// when killed, writes its output to the log URI, gives up on-failure:2
// after two restarts and leaves an explicitly stopped unless-stopped one.
func TestRestartPoliciesWithContainerdsClient(t *testing.T) {
	hulltest.Containerd2Bin(t, "containerd-shim-runc-v2")
	d := startHulldWith(t, hulltest.Options{Config: restartConfig, Env: shim2Env(t)})
	c, err := containerd.New(d.Address, containerd.WithDefaultRuntime("io.containerd.runc.v2"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	const ns = "compatrestart"
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 3*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", ns))
		for _, dir := range append(dirs, filepath.Join("/sys/fs/cgroup", ns)) {
			os.Remove(dir)
		}
	})
	// Before hulld stops: no restart label first, so that the monitor
	// does not start what is being removed.
	t.Cleanup(func() {
		cctx := namespaces.WithNamespace(context.Background(), ns)
		cs, _ := c.Containers(cctx)
		for _, ct := range cs {
			ct.Update(cctx, containerd.UpdateContainerOpts(restart.WithNoRestarts))
		}
		for _, ct := range cs {
			if task, err := ct.Task(cctx, nil); err == nil {
				task.Delete(cctx, containerd.WithProcessKill)
			}
			ct.Delete(cctx, containerd.WithSnapshotCleanup)
		}
	})

	files, err := testimage.BusyboxFiles()
	if err != nil {
		t.Fatalf("busybox test image (make test installs busybox-static): %v", err)
	}
	var archive bytes.Buffer
	if err := testimage.WriteOCIArchive(&archive, "example.test/busybox:restart", testimage.New([]string{"/bin/sh"}, files)); err != nil {
		t.Fatal(err)
	}
	imgs, err := c.Import(ctx, &archive)
	if err != nil || len(imgs) != 1 {
		t.Fatalf("import: %v, %v", imgs, err)
	}
	img := containerd.NewImage(c, imgs[0])
	if err := img.Unpack(ctx, "overlayfs"); err != nil {
		t.Fatal(err)
	}
	newContainer := func(id string, args []string, opts ...containerd.NewContainerOpts) containerd.Container {
		t.Helper()
		ct, err := c.NewContainer(ctx, id, append([]containerd.NewContainerOpts{
			containerd.WithImage(img), containerd.WithNewSnapshot(id+"-rootfs", img),
			containerd.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs(args...)),
		}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	type state struct {
		status containerd.ProcessStatus
		exit   uint32
		pid    uint32
		count  string
	}
	stateOf := func(ct containerd.Container) (state, error) {
		labels, err := ct.Labels(ctx)
		if err != nil {
			return state{}, err
		}
		st := state{count: labels[restart.CountLabel]}
		task, err := ct.Task(ctx, nil)
		if errdefs.IsNotFound(err) {
			return st, nil
		}
		if err != nil {
			return st, err
		}
		s, err := task.Status(ctx)
		if errdefs.IsNotFound(err) {
			return st, nil
		}
		st.status, st.exit, st.pid = s.Status, s.ExitStatus, task.Pid()
		return st, err
	}
	await := func(ct containerd.Container, what string, ok func(state) bool) state {
		t.Helper()
		var last state
		hulltest.Eventually(t, 90*time.Second, ct.ID()+" "+what, func() error {
			st, err := stateOf(ct)
			if err != nil {
				return err
			}
			if last = st; !ok(st) {
				return fmt.Errorf("%+v", st)
			}
			return nil
		})
		return last
	}
	always, err := restart.NewPolicy("always")
	if err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(t.TempDir(), "always.log")

	// The monitor starts a container that should run and has no task.
	sleeper := newContainer("sleeper", []string{"sh", "-c", "echo started; exec sleep 1000"},
		restart.WithStatus(containerd.Running), restart.WithPolicy(always), restart.WithLogURIString("file://"+log))
	first := await(sleeper, "started by the monitor", func(st state) bool { return st.status == containerd.Running && st.count == "1" })
	task, err := sleeper.Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	await(sleeper, "started again after a kill", func(st state) bool {
		return st.status == containerd.Running && st.count == "2" && st.pid != first.pid
	})
	hulltest.Eventually(t, 30*time.Second, "two starts in the log", func() error {
		b, err := os.ReadFile(log)
		if n := strings.Count(string(b), "started\n"); n != 2 {
			return fmt.Errorf("%q, %v", b, err)
		}
		return nil
	})

	// on-failure:2, set once the first task runs.
	onFailure, err := restart.NewPolicy("on-failure:2")
	if err != nil {
		t.Fatal(err)
	}
	failing := newContainer("failing", []string{"sh", "-c", "exit 3"})
	ftask, err := failing.NewTask(ctx, cio.NullIO)
	if err != nil {
		t.Fatal(err)
	}
	if err := ftask.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := failing.Update(ctx, containerd.UpdateContainerOpts(restart.WithStatus(containerd.Running)), containerd.UpdateContainerOpts(restart.WithPolicy(onFailure))); err != nil {
		t.Fatal(err)
	}
	await(failing, "given up after two restarts", func(st state) bool {
		return st.status == containerd.Stopped && st.exit == 3 && st.count == "2"
	})

	// unless-stopped, explicitly stopped: left as it is.
	unlessStopped, err := restart.NewPolicy("unless-stopped")
	if err != nil {
		t.Fatal(err)
	}
	stopped := newContainer("stopped", []string{"sleep", "1000"}, restart.WithStatus(containerd.Running), restart.WithPolicy(unlessStopped),
		containerd.WithAdditionalContainerLabels(map[string]string{restart.ExplicitlyStoppedLabel: "true"}))

	// The sleeper's count is the monitor's clock: once it is restarted
	// twice more, the monitor has looked at the others again.
	for range 2 {
		before, err := stateOf(sleeper)
		if err != nil {
			t.Fatal(err)
		}
		task, err := sleeper.Task(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		await(sleeper, "started again", func(st state) bool { return st.status == containerd.Running && st.pid != before.pid })
	}
	if st, err := stateOf(failing); err != nil || st.count != "2" || st.status != containerd.Stopped {
		t.Errorf("on-failure:2 after more passes: %+v, %v", st, err)
	}
	if st, err := stateOf(stopped); err != nil || st.status != "" || st.count != "" {
		t.Errorf("unless-stopped, explicitly stopped: %+v, %v; want no task", st, err)
	}
	// WithNoRestarts takes a container out of the monitor's hands.
	if err := sleeper.Update(ctx, containerd.UpdateContainerOpts(restart.WithNoRestarts)); err != nil {
		t.Fatal(err)
	}
	if err := stopped.Update(ctx, containerd.UpdateContainerOpts(containerd.WithAdditionalContainerLabels(map[string]string{restart.ExplicitlyStoppedLabel: "false"}))); err != nil {
		t.Fatal(err)
	}
	await(stopped, "started once no longer explicitly stopped", func(st state) bool { return st.status == containerd.Running && st.count == "1" })
}
