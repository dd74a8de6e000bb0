package integration

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/internal/hulltest"
)

// TestCRI drives hulld's CRI service the way a kubelet does, over its
// socket, with one hulld for all subtests: a pod's and a container's whole
// life, requests that must be refused (code and message), and the classes
// of bug that were CVEs in other runtimes. Pods get a bridge network of
// the test's own inside a network namespace of the test's own.
func TestCRI(t *testing.T) {
	if criInOwnNamespaces(t) {
		return
	}
	e := newCRIEnv(t)
	n := newCRINet(t)
	d := e.startCRI(t, criDaemonOptions{net: n, execSyncMaxOutput: 1 << 20})
	img := d.pull(t, e.busybox)

	t.Run("lifecycle", func(t *testing.T) { testCRILifecycle(t, e, d, img) })
	t.Run("bad input", func(t *testing.T) { testCRIBadInput(t, e, d) })
	t.Run("CVE classes", func(t *testing.T) { testCRICVEClasses(t, e, d) })
	t.Run("user namespace", func(t *testing.T) { testCRIUserNamespace(t, e, d) })
}

// criLogLine is a CRI log line: time, stream, full/partial tag, content.
var criLogLine = regexp.MustCompile(`^(\S+) (stdout|stderr) ([FP]) (.*)$`)

func testCRILifecycle(t *testing.T, e *criEnv, d *criDaemon, img *runtime.Image) {
	ctx := criCtx(t)
	v, err := d.rt.Version(ctx, &runtime.VersionRequest{})
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	if v.RuntimeApiVersion != "v1" || v.RuntimeName == "" {
		t.Errorf("Version = %+v; want runtime_api_version v1 and a runtime name", v)
	}
	st, err := d.rt.Status(ctx, &runtime.StatusRequest{})
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	for _, want := range []string{runtime.RuntimeReady, runtime.NetworkReady} {
		var found bool
		for _, c := range st.GetStatus().GetConditions() {
			if c.Type == want {
				found = true
				if !c.Status {
					t.Errorf("Status: %s is false: %s: %s", want, c.Reason, c.Message)
				}
			}
		}
		if !found {
			t.Errorf("Status: no %s condition in %v", want, st.GetStatus().GetConditions())
		}
	}

	// The kubelet watches the first image filesystem: the snapshotter's,
	// where unpacked images grow, as containerd reports.
	fs, err := d.img.ImageFsInfo(ctx, &runtime.ImageFsInfoRequest{})
	if err != nil {
		t.Fatalf("ImageFsInfo: %v", err)
	}
	if ifs := fs.GetImageFilesystems(); len(ifs) == 0 || !strings.HasSuffix(ifs[0].GetFsId().GetMountpoint(), "io.containerd.snapshotter.v1.overlayfs") || ifs[0].GetUsedBytes().GetValue() == 0 {
		t.Errorf("ImageFsInfo image filesystems %v; want the snapshotter's directory first, with its usage", ifs)
	}

	logDir := t.TempDir()
	podCfg := d.podConfig("lifecycle", logDir)
	pod, pst, info := d.runPod(t, podCfg)
	if pst.State != runtime.PodSandboxState_SANDBOX_READY {
		t.Errorf("pod state %v; want READY", pst.State)
	}
	ip := net.ParseIP(pst.GetNetwork().GetIp())
	if ip == nil || !d.net.subnet.Contains(ip) {
		t.Fatalf("pod IP %q is not in the test's subnet %v", pst.GetNetwork().GetIp(), d.net.subnet)
	}
	if got := d.net.allocated(t); !contains(got, ip.String()) {
		t.Errorf("host-local holds %v; want the pod's %s among them", got, ip)
	}
	// containerd 2.x's clients see the pod in the sandbox store.
	sbStore := sandboxapi.NewStoreClient(d.conn)
	nsCtx := metadata.AppendToOutgoingContext(ctx, "containerd-namespace", "k8s.io")
	if got, err := sbStore.Get(nsCtx, &sandboxapi.StoreGetRequest{SandboxID: pod}); err != nil {
		t.Errorf("sandbox store: %v", err)
	} else if got.GetSandbox().GetSandboxer() != "podsandbox" || got.GetSandbox().GetLabels()["io.kubernetes.pod.sandbox-id"] != pod {
		t.Errorf("sandbox store record: %+v", got.GetSandbox())
	}
	if info.NetNamespacePath == "" {
		t.Errorf("verbose pod status names no network namespace")
	} else if _, err := os.Stat(info.NetNamespacePath); err != nil {
		t.Errorf("pod network namespace: %v", err)
	}

	cfg := ctrConfig("main", e.busybox, "trap 'exit 7' TERM; echo hello; echo world; while :; do sleep 1 & wait $!; done")
	// The kubelet's layout: <pod log dir>/<container name>/<restarts>.log,
	// the container's directory made by the kubelet.
	cfg.LogPath = "main/0.log"
	if err := os.Mkdir(filepath.Join(logDir, "main"), 0o755); err != nil {
		t.Fatal(err)
	}
	cresp, err := d.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: podCfg})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	id := cresp.ContainerId
	if cs, _ := d.containerStatus(t, id); cs.State != runtime.ContainerState_CONTAINER_CREATED {
		t.Errorf("state after CreateContainer %v; want CREATED", cs.State)
	}
	if _, err := d.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	list, err := d.rt.ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{PodSandboxId: pod}})
	if err != nil {
		t.Fatalf("ListContainers: %v", err)
	}
	if len(list.Containers) != 1 || list.Containers[0].Id != id {
		t.Fatalf("ListContainers of the pod = %v; want just %s", list.Containers, id)
	}
	lc := list.Containers[0]
	if lc.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("ListContainers: state %v; want RUNNING", lc.State)
	}
	if lc.ImageRef != img.Id || lc.ImageId != img.Id {
		t.Errorf("ListContainers: image_ref %q, image_id %q; want ImageStatus's id %q", lc.ImageRef, lc.ImageId, img.Id)
	}
	if img.Id != e.busyboxID {
		t.Errorf("ImageStatus id %q; want the config digest %q", img.Id, e.busyboxID)
	}
	cs, cinfo := d.containerStatus(t, id)
	if cs.State != runtime.ContainerState_CONTAINER_RUNNING || cs.StartedAt == 0 {
		t.Errorf("ContainerStatus: state %v, started_at %d; want RUNNING, started", cs.State, cs.StartedAt)
	}
	if cs.ImageId != img.Id {
		t.Errorf("ContainerStatus: image_id %q; want ImageStatus's id %q", cs.ImageId, img.Id)
	}
	// containerd reports the repo digest as image_ref where the image has
	// one (the kubelet shows it as the pod's imageID), the id otherwise.
	if cs.ImageRef != img.Id && !contains(img.RepoDigests, cs.ImageRef) {
		t.Errorf("ContainerStatus: image_ref %q is neither the id %q nor a repo digest %v", cs.ImageRef, img.Id, img.RepoDigests)
	}
	if cinfo.Pid <= 0 {
		t.Errorf("verbose ContainerStatus: pid %d", cinfo.Pid)
	}

	ex := d.execSync(t, id, "sh", "-c", "echo out; echo err >&2; exit 5")
	if string(ex.Stdout) != "out\n" || string(ex.Stderr) != "err\n" || ex.ExitCode != 5 {
		t.Errorf("ExecSync = stdout %q, stderr %q, exit %d; want \"out\\n\", \"err\\n\", 5", ex.Stdout, ex.Stderr, ex.ExitCode)
	}

	logFile := filepath.Join(logDir, "main", "0.log")
	if cs.LogPath != logFile {
		t.Errorf("ContainerStatus: log_path %q; want %q", cs.LogPath, logFile)
	}
	var lines []string
	hulltest.Eventually(t, 10*time.Second, "hello and world in "+logFile, func() error {
		b, err := os.ReadFile(logFile)
		if err != nil {
			return err
		}
		lines = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		if len(lines) < 2 {
			return os.ErrNotExist
		}
		return nil
	})
	for i, want := range []string{"hello", "world"} {
		m := criLogLine.FindStringSubmatch(lines[i])
		if m == nil {
			t.Errorf("log line %q is not `<time> <stream> <tag> <line>`", lines[i])
			continue
		}
		if _, err := time.Parse(time.RFC3339Nano, m[1]); err != nil {
			t.Errorf("log line %q: time: %v", lines[i], err)
		}
		if m[2] != "stdout" || m[3] != "F" || m[4] != want {
			t.Errorf("log line %q; want stdout F %s", lines[i], want)
		}
	}

	// The pod's mounts (network namespace, shm) are seen here, which the
	// leak checks rely on.
	if m := mountsUnder(t, d.dir); len(m) == 0 {
		t.Errorf("no mounts under %s while a pod runs", d.dir)
	}

	start := time.Now()
	if _, err := d.rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id, Timeout: 20}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("StopContainer took %v: the container traps TERM and exits at once", el)
	}
	cs, _ = d.containerStatus(t, id)
	if cs.State != runtime.ContainerState_CONTAINER_EXITED || cs.ExitCode != 7 || cs.Reason != "Error" || cs.FinishedAt == 0 {
		t.Errorf("after StopContainer: state %v, exit %d, reason %q, finished_at %d; want EXITED, 7, Error, set",
			cs.State, cs.ExitCode, cs.Reason, cs.FinishedAt)
	}
	if _, err := d.rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("RemoveContainer: %v", err)
	}
	_, err = d.rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: id})
	wantCode(t, "ContainerStatus of a removed container", err, codes.NotFound, id)

	if _, err := d.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if got := d.net.allocated(t); contains(got, ip.String()) {
		t.Errorf("after StopPodSandbox host-local still holds the pod's %s (%v)", ip, got)
	}
	if info.NetNamespacePath != "" {
		if _, err := os.Stat(info.NetNamespacePath); !os.IsNotExist(err) {
			t.Errorf("after StopPodSandbox the network namespace file %s: %v; want it gone", info.NetNamespacePath, err)
		}
	}
	if pst, _ := d.podStatus(t, pod); pst.State != runtime.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("after StopPodSandbox the pod is %v; want NOTREADY", pst.State)
	}
	if _, err := d.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	if _, err := sbStore.Get(nsCtx, &sandboxapi.StoreGetRequest{SandboxID: pod}); status.Code(err) != codes.NotFound {
		t.Errorf("sandbox store after RemovePodSandbox: %v; want NotFound", err)
	}
	_, err = d.rt.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: pod})
	wantCode(t, "PodSandboxStatus of a removed pod", err, codes.NotFound, pod)
	if m := mountsUnder(t, d.dir); len(m) > 0 {
		t.Errorf("mounts left after RemovePodSandbox: %v", m)
	}

	// The kubelet retries stops and removes: of what is gone they succeed.
	if _, err := d.rt.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: id, Timeout: 1}); err != nil {
		t.Errorf("StopContainer of a removed container: %v", err)
	}
	if _, err := d.rt.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Errorf("RemoveContainer of a removed container: %v", err)
	}
	if _, err := d.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Errorf("StopPodSandbox of a removed pod: %v", err)
	}
	if _, err := d.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Errorf("RemovePodSandbox of a removed pod: %v", err)
	}
	if pids := hulltest.ShimPIDs(d.Address); len(pids) > 0 {
		// Shims exit after the delete returned: wait for them.
		hulltest.Eventually(t, 10*time.Second, "the pod's shims to exit", func() error {
			if pids := hulltest.ShimPIDs(d.Address); len(pids) > 0 {
				return fmt.Errorf("shims %v still run", pids)
			}
			return nil
		})
	}
}

func testCRIBadInput(t *testing.T, e *criEnv, d *criDaemon) {
	ctx := criCtx(t)
	t.Run("pod without metadata", func(t *testing.T) {
		_, err := d.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: &runtime.PodSandboxConfig{}})
		wantCode(t, "RunPodSandbox without metadata", err, codes.InvalidArgument, "metadata")
	})
	t.Run("duplicate pod name", func(t *testing.T) {
		cfg := d.podConfig("dup", "")
		first, _, _ := d.runPod(t, cfg)
		defer d.removePod(t, first)
		_, err := d.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
		wantCode(t, "RunPodSandbox of a name in use", err, codes.AlreadyExists, first)
	})
	t.Run("container in unknown pod", func(t *testing.T) {
		unknown := strings.Repeat("feedface", 8)
		_, err := d.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: unknown, Config: ctrConfig("x", e.busybox, "true")})
		wantCode(t, "CreateContainer in an unknown pod", err, codes.NotFound, unknown)
	})
	t.Run("container in stopped pod", func(t *testing.T) {
		cfg := d.podConfig("stopped", "")
		pod, _, _ := d.runPod(t, cfg)
		defer d.removePod(t, pod)
		if _, err := d.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
			t.Fatal(err)
		}
		_, err := d.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod, Config: ctrConfig("x", e.busybox, "true"), SandboxConfig: cfg})
		wantCode(t, "CreateContainer in a stopped pod", err, codes.FailedPrecondition, pod)
	})
	t.Run("unknown runtime handler", func(t *testing.T) {
		_, err := d.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: d.podConfig("handler", ""), RuntimeHandler: "no-such-handler"})
		wantCode(t, "RunPodSandbox with an unknown handler", err, codes.NotFound, "no-such-handler", "runc")
	})
	t.Run("pull of a missing tag", func(t *testing.T) {
		ref := e.reg.Host() + "/critest/busybox:missing"
		_, err := d.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}})
		wantCode(t, "PullImage of a missing tag", err, codes.NotFound, ref)
		if err != nil && !strings.Contains(strings.ToLower(err.Error()), "manifest unknown") {
			t.Errorf("PullImage of a missing tag: %v does not give the registry's reason (manifest unknown)", err)
		}
	})
	t.Run("pull of a bad reference", func(t *testing.T) {
		ref := e.reg.Host() + "/critest/UPPER:x"
		_, err := d.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}})
		wantCode(t, "PullImage of a bad reference", err, codes.InvalidArgument, ref)
	})
	t.Run("invalid port mappings", func(t *testing.T) {
		before := d.net.allocated(t)
		cfg := d.podConfig("port0", "")
		cfg.PortMappings = []*runtime.PortMapping{{ContainerPort: 0, HostPort: 18080}}
		_, err := d.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
		wantCode(t, "RunPodSandbox with container port 0", err, codes.InvalidArgument, "container port 0")
		cfg = d.podConfig("bogus", "")
		cfg.PortMappings = []*runtime.PortMapping{{ContainerPort: 80, HostPort: 18081, Protocol: runtime.Protocol(99)}}
		_, err = d.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
		wantCode(t, "RunPodSandbox with protocol 99", err, codes.InvalidArgument, "protocol", "99")
		if got := d.net.allocated(t); len(got) != len(before) {
			t.Errorf("refused pods changed host-local's IPs from %v to %v", before, got)
		}
	})
	t.Run("host port mapped twice", func(t *testing.T) {
		port := int32(20000 + time.Now().UnixNano()%10000)
		a := d.podConfig("porta", "")
		a.PortMappings = []*runtime.PortMapping{{ContainerPort: 80, HostPort: port}}
		first, _, _ := d.runPod(t, a)
		defer d.removePod(t, first)
		before := d.net.allocated(t)
		b := d.podConfig("portb", "")
		b.PortMappings = []*runtime.PortMapping{{ContainerPort: 8080, HostPort: port}}
		_, err := d.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: b})
		wantCode(t, "RunPodSandbox mapping a host port in use", err, codes.AlreadyExists, strconv.Itoa(int(port)), first)
		if got := d.net.allocated(t); len(got) != len(before) {
			t.Errorf("the refused pod changed host-local's IPs from %v to %v", before, got)
		}
	})
	for _, sysctl := range []string{"net.ipv4.no_such_sysctl", "kernel.panic"} {
		t.Run("sysctl "+sysctl, func(t *testing.T) {
			before := d.net.allocated(t)
			var nsBefore map[string][]string
			nsBefore = map[string][]string{}
			for dir := range d.netns {
				nsBefore[dir] = dirNames(dir)
			}
			cfg := d.podConfig("sysctl", "")
			cfg.Linux.Sysctls = map[string]string{sysctl: "1"}
			resp, err := d.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
			if err == nil {
				t.Errorf("RunPodSandbox with sysctl %s=1 succeeded (pod %s); want it refused", sysctl, resp.PodSandboxId)
				d.removePod(t, resp.PodSandboxId)
				return
			}
			t.Logf("RunPodSandbox with sysctl %s: %v", sysctl, err)
			// Named as the sysctl or as its file under /proc/sys.
			if !strings.Contains(err.Error(), sysctl) && !strings.Contains(err.Error(), strings.ReplaceAll(sysctl, ".", "/")) {
				t.Errorf("RunPodSandbox with sysctl %s: error %q does not name it", sysctl, err)
			}
			if got := d.net.allocated(t); len(got) != len(before) {
				t.Errorf("the failed pod changed host-local's IPs from %v to %v", before, got)
			}
			for dir, names := range nsBefore {
				if got := dirNames(dir); len(got) != len(names) {
					t.Errorf("the failed pod changed the network namespaces in %s from %v to %v", dir, names, got)
				}
			}
			pods, err := d.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{LabelSelector: map[string]string{"critest": "sysctl"}}})
			if err != nil {
				t.Fatal(err)
			}
			if len(pods.Items) > 0 {
				t.Errorf("the failed pod is listed: %v", pods.Items)
			}
		})
	}

	// One pod for the container checks.
	logDir := t.TempDir()
	podCfg := d.podConfig("badctr", logDir)
	pod, _, _ := d.runPod(t, podCfg)
	defer d.removePod(t, pod)
	t.Run("log path leaving the log directory", func(t *testing.T) {
		cfg := ctrConfig("escape", e.busybox, "true")
		cfg.LogPath = "../x.log"
		_, err := d.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: podCfg})
		wantCode(t, "CreateContainer with log path ../x.log", err, codes.InvalidArgument, "../x.log")
	})
	t.Run("log path in a new directory", func(t *testing.T) {
		// containerd makes the log file's directory, as a kubelet that
		// did not (or a crictl user) expects.
		cfg := ctrConfig("newdir", e.busybox, "echo logged")
		cfg.LogPath = "newdir/0.log"
		resp, err := d.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: podCfg})
		if err != nil {
			t.Fatalf("CreateContainer with log path newdir/0.log: %v", err)
		}
		if _, err := d.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
			t.Errorf("StartContainer with log path newdir/0.log, its directory not made yet: %v", err)
			return
		}
		hulltest.Eventually(t, 10*time.Second, "the log line", func() error {
			b, err := os.ReadFile(filepath.Join(logDir, "newdir", "0.log"))
			if err != nil || !strings.Contains(string(b), " stdout F logged") {
				return fmt.Errorf("log %q: %v", b, err)
			}
			return nil
		})
	})
	t.Run("exec in a stopped container", func(t *testing.T) {
		id := d.runContainer(t, pod, podCfg, ctrConfig("quits", e.busybox, "exit 0"))
		hulltest.Eventually(t, 10*time.Second, "the container to exit", func() error {
			if cs, _ := d.containerStatus(t, id); cs.State != runtime.ContainerState_CONTAINER_EXITED {
				return fmt.Errorf("state %v", cs.State)
			}
			return nil
		})
		_, err := d.rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: id, Cmd: []string{"true"}, Timeout: 5})
		wantCode(t, "ExecSync in an exited container", err, codes.FailedPrecondition, id)
	})
	t.Run("exec of a missing program", func(t *testing.T) {
		id := d.runContainer(t, pod, podCfg, ctrConfig("runs", e.busybox, "while :; do sleep 1 & wait $!; done"))
		start := time.Now()
		_, err := d.rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: id, Cmd: []string{"no-such-program"}, Timeout: 20})
		if err == nil || !strings.Contains(err.Error(), "no-such-program") {
			t.Errorf("ExecSync of a missing program: %v; want an error naming it", err)
		}
		// runc says so at once; the call must not wait out its timeout.
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("ExecSync of a missing program took %v", took)
		}
	})
}

// vmKB reads a field of /proc/pid/status in kB.
func vmKB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatalf("%s %q: %v", field, line, err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

func testCRICVEClasses(t *testing.T, e *criEnv, d *criDaemon) {
	ctx := criCtx(t)
	podCfg := d.podConfig("cve", "")
	pod, _, _ := d.runPod(t, podCfg)
	defer d.removePod(t, pod)
	sleeper := d.runContainer(t, pod, podCfg, ctrConfig("sleeper", e.busybox, "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"))

	t.Run("exec output is capped", func(t *testing.T) {
		const printed = 32 << 20
		pid := d.PID()
		// Reset the peak RSS, so that VmHWM is this exec's peak.
		if err := os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0); err != nil {
			t.Fatalf("reset hulld's peak RSS: %v", err)
		}
		rssBefore := vmKB(t, pid, "VmRSS")
		ex := d.execSync(t, sleeper, "busybox", "head", "-c", strconv.Itoa(printed), "/dev/zero")
		peak := vmKB(t, pid, "VmHWM")
		t.Logf("ExecSync of %d bytes: %d bytes back, exit %d; hulld RSS %d kB before, peak %d kB", printed, len(ex.Stdout), ex.ExitCode, rssBefore, peak)
		if len(ex.Stdout) == 0 || len(ex.Stdout) > 1<<20 {
			t.Errorf("ExecSync returned %d bytes of stdout; want some, at most exec_sync_max_output (1 MiB)", len(ex.Stdout))
		}
		if grew := peak - rssBefore; grew > 16<<10 {
			t.Errorf("hulld's RSS grew by %d kB while the exec printed %d MiB: the output is held, not capped", grew, printed>>20)
		}
	})

	t.Run("env stays per container", func(t *testing.T) {
		// Created at once from the same image: CVE-2021-21334 mixed the
		// env of containers made concurrently from one image.
		envs := map[string][]*runtime.KeyValue{
			"env-a": {{Key: "WHO", Value: []byte("a")}, {Key: "ONLY_A", Value: []byte("1")}},
			"env-b": {{Key: "WHO", Value: []byte("b")}, {Key: "ONLY_B", Value: []byte("1")}},
		}
		ids := map[string]string{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for name, env := range envs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cfg := ctrConfig(name, e.busybox, "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done")
				cfg.Envs = env
				resp, err := d.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: podCfg})
				if err != nil {
					t.Errorf("CreateContainer %s: %v", name, err)
					return
				}
				mu.Lock()
				ids[name] = resp.ContainerId
				mu.Unlock()
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		for name, id := range ids {
			if _, err := d.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: id}); err != nil {
				t.Fatalf("StartContainer %s: %v", name, err)
			}
		}
		for name, id := range ids {
			out := string(d.execSync(t, id, "env").Stdout)
			lines := strings.Split(out, "\n")
			me, other := "a", "b"
			if name == "env-b" {
				me, other = "b", "a"
			}
			for _, want := range []string{"WHO=" + me, "ONLY_" + strings.ToUpper(me) + "=1", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"} {
				if !contains(lines, want) {
					t.Errorf("%s's env lacks %s:\n%s", name, want, out)
				}
			}
			if strings.Contains(out, "ONLY_"+strings.ToUpper(other)) || contains(lines, "WHO="+other) {
				t.Errorf("%s sees the other container's env:\n%s", name, out)
			}
		}
	})

	t.Run("no inheritable capabilities", func(t *testing.T) {
		// CVE-2022-24769: a non-empty inheritable set gave the
		// capabilities to programs an unprivileged user execs.
		for _, f := range []string{"/proc/1/status", "/proc/self/status"} {
			out := string(d.execSync(t, sleeper, "cat", f).Stdout)
			var inh string
			for _, line := range strings.Split(out, "\n") {
				if v, ok := strings.CutPrefix(line, "CapInh:"); ok {
					inh = strings.TrimSpace(v)
				}
			}
			if inh != "0000000000000000" {
				t.Errorf("%s in the container: CapInh %q; want 0000000000000000", f, inh)
			}
		}
	})

	t.Run("stream server on loopback", func(t *testing.T) {
		resp, err := d.rt.Exec(ctx, &runtime.ExecRequest{ContainerId: sleeper, Cmd: []string{"true"}, Stdout: true})
		if err != nil {
			t.Fatalf("Exec: %v", err)
		}
		u, err := url.Parse(resp.Url)
		if err != nil {
			t.Fatalf("Exec URL %q: %v", resp.Url, err)
		}
		if u.Hostname() != "127.0.0.1" {
			t.Errorf("Exec URL %q: host %q; want 127.0.0.1 (stream_server_address unset)", resp.Url, u.Hostname())
		}
	})
}
