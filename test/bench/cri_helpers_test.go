package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/internal/hulltest"
)

// The images the CRI benchmarks use: critest's default container image and
// the sandbox image both scripts configure, each served by the critest kit's
// registry.
const (
	criBusybox = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
	criPause   = "registry.k8s.io/pause:3.6"
)

// criDaemon is one CRI runtime under measurement, reached over its socket
// from the host's namespaces.
type criDaemon struct {
	name   string // "hull" or "containerd": the prefix of its metrics
	sock   string
	pid    int // the daemon itself (hulld or containerd), not a wrapper
	logDir string
	rt     runtime.RuntimeServiceClient
	img    runtime.ImageServiceClient
}

// startCRIDaemons starts hulld (scripts/hull-cri.sh) and Debian's
// containerd 1.6 (the kit's containerd16.sh), both in namespaces of their
// own with the same CNI, mirrors and sandbox image, waits until both report
// ready and pulls the benchmark's images into both. Both are stopped by
// their scripts when b ends, also when it fails. b is skipped when the kit
// is missing.
func startCRIDaemons(b *testing.B) (hull, ctrd *criDaemon) {
	b.Helper()
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		b.Fatal(err)
	}
	hullScript := filepath.Join(repo, "scripts", "hull-cri.sh")
	if _, err := os.Stat(hullScript); err != nil {
		b.Fatalf("repository root not found from the working directory: %v", err)
	}
	kit := filepath.Clean(filepath.Join(repo, "..", "shared", "critest"))
	ctrdScript := filepath.Join(kit, "containerd16.sh")
	if _, err := os.Stat(ctrdScript); err != nil {
		b.Skipf("no critest kit at %s: %v", kit, err)
	}
	hulltest.RequireTools(b, "containerd", "runc", "nsenter", "unshare", "docker-registry")
	ensureKitImages(b, kit)

	hulld := hulltest.Binary(b)
	shim := filepath.Join(filepath.Dir(hulld), "containerd-shim-hull-v2")
	if os.Getenv("HULLD_BIN") == "" {
		shim = hulltest.Build(b, "containerd-shim-hull-v2", "github.com/hullrt/hull/cmd/containerd-shim-hull-v2")
	}
	if _, err := os.Stat(shim); err != nil {
		b.Fatalf("hull-cri.sh runs the shim beside hulld: %v", err)
	}

	// A directory of our own rather than b.TempDir, made traversable as
	// critest.sh makes its own (a pod's user namespace reaches its root
	// filesystem through it), and removed only when nothing is left
	// mounted below it.
	work, err := os.MkdirTemp("", "hull-cri-bench.")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if m := mountedBelow(work); len(m) > 0 {
			b.Errorf("left %s in place, still mounted below it: %v", work, m)
			return
		}
		os.RemoveAll(work)
	})
	if err := os.Chmod(work, 0o711); err != nil {
		b.Fatal(err)
	}
	hullWork := filepath.Join(work, "hull")
	logs := filepath.Join(work, "pod-logs")

	// containerd16.sh keeps one fixed work directory: a daemon already
	// running there is someone else's, which we must neither measure nor
	// stop.
	if out, _ := exec.Command(ctrdScript, "status").Output(); bytes.HasPrefix(out, []byte("containerd running")) {
		b.Fatalf("the kit's containerd 1.6 is already running (%s): not ours to use or stop", strings.TrimSpace(string(out)))
	}

	hullEnv := append(os.Environ(), "HULLD="+hulld, "CRITEST_KIT="+kit)
	b.Cleanup(func() { stopCRIScript(b, hullEnv, filepath.Join(hullWork, "hulld.log"), hullScript, "stop", hullWork) })
	kv := runCRIScript(b, hullEnv, hullScript, "start", hullWork)
	hull = &criDaemon{name: "hull", sock: kv["SOCKET"], logDir: filepath.Join(logs, "hull")}
	hull.pid, _ = strconv.Atoi(kv["PID"])
	hull.connect(b, filepath.Base(hulld))

	ctrdLog := ""
	if env := scriptVars(b, ctrdScript, "env"); env["CRI_SOCKET"] != "" {
		ctrdLog = filepath.Join(filepath.Dir(env["CRI_SOCKET"]), "containerd.log")
	}
	b.Cleanup(func() { stopCRIScript(b, os.Environ(), ctrdLog, ctrdScript, "stop") })
	kv = runCRIScript(b, os.Environ(), ctrdScript, "start")
	ctrd = &criDaemon{name: "containerd", sock: kv["socket"], logDir: filepath.Join(logs, "containerd")}
	ctrd.pid, _ = strconv.Atoi(kv["pid"])
	ctrd.connect(b, "containerd")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, d := range []*criDaemon{hull, ctrd} {
		if err := d.waitReady(ctx); err != nil {
			b.Fatal(err)
		}
		for _, ref := range []string{criPause, criBusybox} {
			if _, err := d.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}}); err != nil {
				b.Fatalf("%s: pull %s: %v", d.name, ref, err)
			}
		}
	}
	return hull, ctrd
}

// ensureKitImages makes sure the kit's registry storage holds the two
// images: the daemons' scripts serve it through read-only replicas inside
// their namespaces, so the host registry images.sh starts is needed only to
// fill it, and is stopped again when this benchmark started it.
func ensureKitImages(b *testing.B, kit string) {
	b.Helper()
	out, err := exec.Command("bash", "-c", `source "$1/lib.sh" && echo "$REGISTRY_DIR"`, "_", kit).Output()
	if err != nil {
		b.Fatalf("reading the kit's registry directory: %v", err)
	}
	repos := filepath.Join(strings.TrimSpace(string(out)), "storage", "docker", "registry", "v2", "repositories")
	have := func(repo, tag string) bool {
		_, err := os.Stat(filepath.Join(repos, repo, "_manifests", "tags", tag))
		return err == nil
	}
	if have("e2e-test-images/busybox", "1.29-2") && have("pause", "3.6") {
		return
	}
	images := filepath.Join(kit, "images.sh")
	b.Cleanup(func() { exec.Command(images, "stop").Run() })
	if _, err := run(images); err != nil {
		b.Fatal(err)
	}
}

// runCRIScript runs a start script and returns the NAME=value or
// "name: value" lines it prints.
func runCRIScript(b *testing.B, env []string, script string, args ...string) map[string]string {
	b.Helper()
	cmd := exec.Command(script, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s %s: %v\n%s%s", script, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return parseScriptVars(stdout.String())
}

func scriptVars(b *testing.B, script string, args ...string) map[string]string {
	b.Helper()
	out, err := exec.Command(script, args...).Output()
	if err != nil {
		b.Fatalf("%s %s: %v", script, strings.Join(args, " "), err)
	}
	return parseScriptVars(string(out))
}

func parseScriptVars(out string) map[string]string {
	kv := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if k, v, ok := strings.Cut(line, "="); ok && !strings.Contains(k, " ") {
			kv[k] = v
		} else if k, v, ok := strings.Cut(line, ": "); ok && !strings.Contains(k, " ") {
			kv[k] = v
		}
	}
	return kv
}

// stopCRIScript stops a daemon through its script, showing the end of its
// log first when b failed.
func stopCRIScript(b *testing.B, env []string, logFile, script string, args ...string) {
	if b.Failed() && logFile != "" {
		if data, err := os.ReadFile(logFile); err == nil {
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			b.Logf("last lines of %s:\n%s", logFile, strings.Join(lines[max(0, len(lines)-30):], "\n"))
		}
	}
	cmd := exec.Command(script, args...)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Errorf("%s %s: %v\n%s", script, strings.Join(args, " "), err, out)
	}
}

// mountedBelow lists the mount points under dir.
func mountedBelow(dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

// connect dials d's socket, and checks that the PID its script reported is
// the daemon itself (comm), not a wrapper, since its memory and CPU time
// are what is measured.
func (d *criDaemon) connect(b *testing.B, comm string) {
	b.Helper()
	if d.sock == "" || d.pid <= 0 {
		b.Fatalf("%s: its script printed no socket or PID (socket %q, pid %d)", d.name, d.sock, d.pid)
	}
	got, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", d.pid))
	if err != nil {
		b.Fatalf("%s: pid %d: %v", d.name, d.pid, err)
	}
	if want := comm[:min(len(comm), 15)]; strings.TrimSpace(string(got)) != want {
		b.Fatalf("%s: pid %d runs %q, want %q", d.name, d.pid, strings.TrimSpace(string(got)), want)
	}
	conn := dial(b, d.sock)
	d.rt, d.img = runtime.NewRuntimeServiceClient(conn), runtime.NewImageServiceClient(conn)
}

// waitReady polls Status until the runtime and its network report ready:
// hull-cri.sh returns as soon as the socket exists.
func (d *criDaemon) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := d.ready(ctx)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within 60s: %w", d.name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *criDaemon) ready(ctx context.Context) error {
	st, err := d.rt.Status(ctx, &runtime.StatusRequest{})
	if err != nil {
		return err
	}
	for _, want := range []string{runtime.RuntimeReady, runtime.NetworkReady} {
		ok := false
		for _, c := range st.GetStatus().GetConditions() {
			ok = ok || (c.Type == want && c.Status)
		}
		if !ok {
			return fmt.Errorf("condition %s not true: %v", want, st.GetStatus().GetConditions())
		}
	}
	return nil
}

// podConfig returns the sandbox config of pod name, with its log directory
// made beforehand (the kubelet makes it, not the runtime).
func (d *criDaemon) podConfig(name string) (*runtime.PodSandboxConfig, error) {
	dir := filepath.Join(d.logDir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: name, Uid: "uid-" + name, Namespace: "bench"},
		LogDirectory: dir,
		Linux:        &runtime.LinuxPodSandboxConfig{},
	}, nil
}

// runPod runs the sandbox cfg and n busybox containers sleeping in it,
// returning once the last one's StartContainer returned.
func (d *criDaemon) runPod(ctx context.Context, cfg *runtime.PodSandboxConfig, n int) (string, error) {
	pod, err := d.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		return "", fmt.Errorf("%s: run pod %s: %w", d.name, cfg.Metadata.Name, err)
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("c%d", i)
		c, err := d.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{
			PodSandboxId: pod.PodSandboxId,
			Config: &runtime.ContainerConfig{
				Metadata: &runtime.ContainerMetadata{Name: name},
				Image:    &runtime.ImageSpec{Image: criBusybox},
				Command:  []string{"sleep", "3600"},
				LogPath:  name + ".log",
				Linux:    &runtime.LinuxContainerConfig{},
			},
			SandboxConfig: cfg,
		})
		if err != nil {
			return pod.PodSandboxId, fmt.Errorf("%s: create container %s in pod %s: %w", d.name, name, cfg.Metadata.Name, err)
		}
		if _, err := d.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
			return pod.PodSandboxId, fmt.Errorf("%s: start container %s in pod %s: %w", d.name, name, cfg.Metadata.Name, err)
		}
	}
	return pod.PodSandboxId, nil
}

// newPod makes the config of pod name and runs it with n containers,
// without timing the config.
func (d *criDaemon) newPod(ctx context.Context, name string, n int) (string, error) {
	cfg, err := d.podConfig(name)
	if err != nil {
		return "", err
	}
	return d.runPod(ctx, cfg, n)
}

// removePod stops and removes pod id with its containers.
func (d *criDaemon) removePod(ctx context.Context, id string) error {
	if _, err := d.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		return fmt.Errorf("%s: stop pod %s: %w", d.name, id, err)
	}
	if _, err := d.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		return fmt.Errorf("%s: remove pod %s: %w", d.name, id, err)
	}
	return nil
}

// removeAll removes every pod d runs, limit at a time, and checks that none
// is left: every benchmark ends with its daemon emptied.
func (d *criDaemon) removeAll(ctx context.Context, limit int) error {
	pods, err := d.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		return err
	}
	items := pods.GetItems()
	if err := parallel(len(items), limit, func(i int) error { return d.removePod(ctx, items[i].Id) }); err != nil {
		return err
	}
	return d.checkEmpty(ctx)
}

func (d *criDaemon) checkEmpty(ctx context.Context) error {
	pods, err := d.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		return err
	}
	ctrs, err := d.rt.ListContainers(ctx, &runtime.ListContainersRequest{})
	if err != nil {
		return err
	}
	if len(pods.Items) != 0 || len(ctrs.Containers) != 0 {
		return fmt.Errorf("%s: %d pods and %d containers left after removing all", d.name, len(pods.Items), len(ctrs.Containers))
	}
	return nil
}

// running counts d's pods that are ready and containers that are running.
func (d *criDaemon) running(ctx context.Context) (pods, containers int, err error) {
	ps, err := d.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		return 0, 0, err
	}
	for _, p := range ps.Items {
		if p.State == runtime.PodSandboxState_SANDBOX_READY {
			pods++
		}
	}
	cs, err := d.rt.ListContainers(ctx, &runtime.ListContainersRequest{})
	if err != nil {
		return 0, 0, err
	}
	for _, c := range cs.Containers {
		if c.State == runtime.ContainerState_CONTAINER_RUNNING {
			containers++
		}
	}
	return pods, containers, nil
}

// memory returns the daemon's RSS and the summed RSS and PSS of its shims
// (the processes whose command line names containerd-shim and d's socket),
// in KiB, and how many shims there are.
func (d *criDaemon) memory() (daemon, shims, shimsPSS int64, n int, err error) {
	if daemon, _, err = rssKiB(d.pid); err != nil {
		return 0, 0, 0, 0, err
	}
	pids := hulltest.ShimPIDs(d.sock)
	if len(pids) == 0 {
		return 0, 0, 0, 0, fmt.Errorf("%s: no shim found for %s", d.name, d.sock)
	}
	for _, pid := range pids {
		rss, _, err := rssKiB(pid)
		if err != nil {
			return 0, 0, 0, 0, err
		}
		pss, err := pssKiB(pid)
		if err != nil {
			return 0, 0, 0, 0, err
		}
		shims += rss
		shimsPSS += pss
	}
	return daemon, shims, shimsPSS, len(pids), nil
}

// startCPU is where a runtime's CPU goes while pods start: the whole
// machine, the daemon itself, the children it waited for (shim start-up
// commands, CNI plugins), and its shims with the children they waited for
// (runc). Shims are read while they run, so a shim that started before the
// window counts whole: the windows here start with none.
type startCPU struct {
	system, daemon, daemonChildren, shims, shimChildren time.Duration
}

func (c startCPU) since(before startCPU) startCPU {
	return startCPU{
		system:         c.system - before.system,
		daemon:         c.daemon - before.daemon,
		daemonChildren: c.daemonChildren - before.daemonChildren,
		shims:          c.shims - before.shims,
		shimChildren:   c.shimChildren - before.shimChildren,
	}
}

func (c startCPU) String() string {
	rest := c.system - c.daemon - c.daemonChildren - c.shims - c.shimChildren
	return fmt.Sprintf("machine %s = daemon %s + its children %s + shims %s + their children %s + the rest (containers, kernel threads, other) %s",
		ms(c.system), ms(c.daemon), ms(c.daemonChildren), ms(c.shims), ms(c.shimChildren), ms(rest))
}

// cpu reads d's startCPU counters now.
func (d *criDaemon) cpu(b *testing.B) (startCPU, error) {
	var c startCPU
	var err error
	c.system, _ = systemCPU(b)
	if c.daemon, c.daemonChildren, err = cpuTimes(d.pid); err != nil {
		return c, err
	}
	for _, pid := range hulltest.ShimPIDs(d.sock) {
		own, children, err := cpuTimes(pid)
		if err != nil {
			continue // the shim exited meanwhile
		}
		c.shims += own
		c.shimChildren += children
	}
	return c, nil
}

// parallel calls f(0..n-1) with at most limit calls running at a time and
// waits for all of them; it returns their errors joined.
func parallel(n, limit int, f func(i int) error) error {
	sem := make(chan struct{}, limit)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// reportRatio logs one readable line comparing hull with containerd and
// reports both figures and their ratio as metrics named hull-UNIT,
// containerd-UNIT and ratioName.
func reportRatio(b *testing.B, what, unit, ratioName string, hull, ctrd float64) {
	b.Helper()
	ratio := hull / ctrd
	b.Logf("%s: hull %.2f %s, containerd 1.6 %.2f %s, hull/containerd %.2f", what, hull, unit, ctrd, unit, ratio)
	b.ReportMetric(hull, "hull-"+unit)
	b.ReportMetric(ctrd, "containerd-"+unit)
	b.ReportMetric(ratio, ratioName)
}

// msOf converts d to float milliseconds for metrics.
func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
