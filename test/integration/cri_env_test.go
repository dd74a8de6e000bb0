package integration

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/registrytest"
	"github.com/hullrt/hull/internal/testimage"
)

// The CRI tests run pods with CNI networks: bridges, veths and iptables
// rules. Each test re-runs itself under unshare(1) in a network and mount
// namespace of its own (criInOwnNamespaces), where it starts the registry
// and hulld; whatever it leaves there dies with that namespace, and the
// machine's network is never touched.

const (
	// criNetnsEnv marks the re-run test binary.
	criNetnsEnv = "HULL_CRI_TEST_IN_NETNS"
	// criShimEnv passes the shim the parent built to the re-run.
	criShimEnv = "HULL_CRI_TEST_SHIM"
	// criCNIBinDir is where Debian's containernetworking-plugins installs
	// the plugins.
	criCNIBinDir = "/usr/lib/cni"
	// criNetworkName is the name of the test's CNI network, the directory
	// host-local keeps its allocations in.
	criNetworkName = "hull-critest"
)

// criInOwnNamespaces re-runs the calling top-level test in new network and
// mount namespaces and returns true, the caller then returning; inside the
// re-run it brings lo up and returns false, and the test does its work.
// hulld and its shim are built here, once, and handed to the re-run.
func criInOwnNamespaces(t *testing.T) bool {
	t.Helper()
	if os.Getenv(criNetnsEnv) == "1" {
		out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput()
		if err != nil {
			t.Fatalf("ip link set lo up: %v: %s", err, out)
		}
		return false
	}
	if os.Geteuid() != 0 {
		t.Skip("the CRI tests run pods: root only")
	}
	hulltest.RequireTools(t, "runc", "unshare", "ip", "iptables")
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if _, err := os.Stat(filepath.Join(criCNIBinDir, p)); err != nil {
			t.Fatalf("CNI plugin %s missing (Debian's containernetworking-plugins): %v", p, err)
		}
	}
	if _, err := os.Stat(testimage.BusyboxPath); err != nil {
		t.Fatalf("busybox (make test installs busybox-static): %v", err)
	}
	hulld := hulltest.Binary(t)
	shim := hulltest.Build(t, "containerd-shim-hull-v2", "github.com/hullrt/hull/cmd/containerd-shim-hull-v2")

	ctx := context.Background()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-5*time.Second))
		defer cancel()
	}
	args := []string{"--net", "--mount", "--propagation", "private", "--kill-child",
		os.Args[0], "-test.run=" + criRunPattern(t.Name()), "-test.count=1"}
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	cmd := exec.CommandContext(ctx, "unshare", args...)
	cmd.Env = append(os.Environ(), criNetnsEnv+"=1", "HULLD_BIN="+hulld, criShimEnv+"="+shim)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	copied := make(chan string, 1)
	go func() {
		// The re-run's output, line by line as it comes, so that a hang
		// shows where it is.
		var passed string
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "--- PASS: "+t.Name()+" ") || line == "PASS" {
				passed = line
			}
			t.Log("netns| " + line)
		}
		io.Copy(io.Discard, pr)
		copied <- passed
	}()
	err := cmd.Wait()
	pw.Close()
	passed := <-copied
	if err != nil {
		t.Fatalf("%s in its own network namespace: %v", t.Name(), err)
	}
	if passed == "" {
		t.Fatalf("%s did not report passing in its own network namespace", t.Name())
	}
	return true
}

// criRunPattern anchors the top-level test name and keeps the subtest part
// of the -run pattern this binary was given.
func criRunPattern(name string) string {
	p := "^" + regexp.QuoteMeta(name) + "$"
	if f := flag.Lookup("test.run"); f != nil {
		if _, sub, ok := strings.Cut(f.Value.String(), "/"); ok {
			p += "/" + sub
		}
	}
	return p
}

// criEnv is what a CRI test has inside its namespaces: a registry with a
// pause and a busybox image, hosts.toml pointing at it, and the shim.
type criEnv struct {
	reg      *registrytest.Registry
	hostsDir string
	shim     string
	// pause is the sandbox image's reference; busybox an image to run,
	// busyboxID its config digest (the CRI image id).
	pause, busybox, busyboxID string
}

// newCRIEnv starts the registry and pushes the images; it must run inside
// criInOwnNamespaces' re-run, where 127.0.0.1 is the test's own.
func newCRIEnv(t *testing.T) *criEnv {
	t.Helper()
	shim := os.Getenv(criShimEnv)
	if shim == "" {
		t.Fatalf("%s is not set in the re-run", criShimEnv)
	}
	files, err := testimage.BusyboxFiles()
	if err != nil {
		t.Fatal(err)
	}
	reg := registrytest.Start(t, registrytest.Options{})
	pause := testimage.New([]string{"sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 1; done"}, files)
	busybox := testimage.New([]string{"sh"}, files)
	reg.Push(t, "critest/pause", "1", pause)
	reg.Push(t, "critest/busybox", "1", busybox)
	e := &criEnv{
		reg: reg, hostsDir: t.TempDir(), shim: shim,
		pause:     reg.Host() + "/critest/pause:1",
		busybox:   reg.Host() + "/critest/busybox:1",
		busyboxID: busybox.Config.Desc.Digest.String(),
	}
	// The fixture serves plain http: hosts.toml says so.
	dir := filepath.Join(e.hostsDir, reg.Host())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	hosts := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", reg.URL(), reg.URL())
	if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// criNet is a CNI network of a test's own: a bridge and subnet nobody
// else uses, and host-local's allocations in a directory of the test's.
type criNet struct {
	confDir, binDir, ipamDir string
	bridge                   string
	subnet                   *net.IPNet
}

// newCRINet writes a bridge + portmap conflist into a new conf dir;
// extra are plugins (JSON objects) put between the two.
func newCRINet(t *testing.T, extra ...string) *criNet {
	t.Helper()
	dir := t.TempDir()
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	n := &criNet{
		confDir: filepath.Join(dir, "net.d"), binDir: filepath.Join(dir, "bin"), ipamDir: filepath.Join(dir, "ipam"),
		bridge: "hcri" + hex.EncodeToString(b),
	}
	_, n.subnet, _ = net.ParseCIDR(fmt.Sprintf("10.%d.%d.0/24", 200+int(b[0])%50, b[1]))
	plugins := []string{fmt.Sprintf(`{"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
      "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}}`,
		n.bridge, n.ipamDir, n.subnet.String())}
	plugins = append(plugins, extra...)
	plugins = append(plugins, `{"type": "portmap", "capabilities": {"portMappings": true}}`)
	conf := fmt.Sprintf("{\"cniVersion\": \"1.0.0\", \"name\": %q, \"plugins\": [\n    %s\n]}\n", criNetworkName, strings.Join(plugins, ",\n    "))
	for _, d := range []string{n.confDir, n.binDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(n.confDir, "10-critest.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

// allocated lists the IPs host-local holds.
func (n *criNet) allocated(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(n.ipamDir, criNetworkName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, e := range entries {
		if net.ParseIP(e.Name()) != nil {
			ips = append(ips, e.Name())
		}
	}
	return ips
}

// criDaemonOptions say how to configure a CRI hulld.
type criDaemonOptions struct {
	net *criNet
	// confDir overrides the network's conf dir (an empty one: no network).
	confDir string
	// dir is the daemon's root/state directory pair, for a restart.
	dir string
	// execSyncMaxOutput is exec_sync_max_output; 0 leaves the default.
	execSyncMaxOutput int
	// cgroupParent is the pods' cgroup parent (a restart keeps the first
	// daemon's); empty makes a new one.
	cgroupParent string
	// containerd16 writes a version 2 file with containerd 1.6's single
	// CRI section, running containerd's runc shim, as a containerd 1.6
	// user's config has it.
	containerd16 bool
}

// criDaemon is a hulld serving CRI, with clients.
type criDaemon struct {
	*hulltest.Daemon
	dir   string
	conn  *grpc.ClientConn
	rt    runtime.RuntimeServiceClient
	img   runtime.ImageServiceClient
	net   *criNet
	netns map[string]bool // directories pod network namespaces were seen in
	// cgroupParent is the cgroup parent of the daemon's pods, a cgroup of
	// the test's own that must be empty once they are removed.
	cgroupParent string
	// ranPods is set once a pod ran, which makes the cgroup parent.
	ranPods bool
}

func (e *criEnv) config(o criDaemonOptions) string {
	confDir := o.confDir
	if confDir == "" {
		confDir = o.net.confDir
	}
	if o.containerd16 {
		return fmt.Sprintf(`version = 2

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = %q
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %q
`, e.pause, filepath.Join(o.dir, "runc"), criCNIBinDir, confDir, e.hostsDir)
	}
	var extra string
	if o.execSyncMaxOutput > 0 {
		extra = fmt.Sprintf("  exec_sync_max_output = %d\n", o.execSyncMaxOutput)
	}
	return fmt.Sprintf(`version = 3

[plugins.'io.containerd.runtime.v2.task'.runtimes.'io.containerd.hull.v2']
  binary = %q

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %q
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = %q

[plugins.'io.containerd.cri.v1.runtime']
%s  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.hull.v2"
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [%q, %q]
    conf_dir = %q
    max_conf_num = 1

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_port = "0"
`, e.shim, e.pause, e.hostsDir, extra, o.net.binDir, criCNIBinDir, confDir)
}

// startCRI starts hulld with its CRI service. The pods left when the test
// ends are removed and what they held (IPs, network namespaces, shims) is
// checked to be gone, before hulld stops.
func (e *criEnv) startCRI(t *testing.T, o criDaemonOptions) *criDaemon {
	t.Helper()
	if o.dir == "" {
		o.dir = t.TempDir()
		// Traversable, as /run and /var/lib are: the root of a pod's
		// user namespace reaches its root filesystem through here.
		for _, dir := range []string{o.dir, filepath.Dir(o.dir)} {
			if err := os.Chmod(dir, 0o711); err != nil {
				t.Fatal(err)
			}
		}
	}
	d := hulltest.Start(t, hulltest.Options{Config: e.config(o), Dir: o.dir})
	conn, err := grpc.NewClient("unix://"+d.Address, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	if o.cgroupParent == "" {
		b := make([]byte, 4)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		o.cgroupParent = "/hullcritest-" + hex.EncodeToString(b)
	}
	cd := &criDaemon{Daemon: d, dir: o.dir, conn: conn, rt: runtime.NewRuntimeServiceClient(conn), img: runtime.NewImageServiceClient(conn),
		net: o.net, netns: map[string]bool{}, cgroupParent: o.cgroupParent}
	t.Cleanup(func() {
		defer conn.Close()
		select {
		case <-d.Exited():
			return // killed by the test, which starts the next one over dir
		default:
		}
		cd.removeAllPods(t)
		cd.checkNothingLeft(t)
	})
	return cd
}

// removeAllPods stops and removes every pod hulld knows of.
func (d *criDaemon) removeAllPods(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pods, err := d.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		t.Errorf("clean-up: list pods: %v", err)
		return
	}
	for _, p := range pods.GetItems() {
		if _, err := d.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Errorf("clean-up: stop pod %s: %v", p.Id, err)
		}
		if _, err := d.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Errorf("clean-up: remove pod %s: %v", p.Id, err)
		}
	}
}

// checkNothingLeft checks that no pod holds anything any more: no IP, no
// network namespace file, no mount, no shim, no veth, no cgroup.
func (d *criDaemon) checkNothingLeft(t *testing.T) {
	t.Helper()
	if m := mountsUnder(t, d.dir); len(m) > 0 {
		t.Errorf("leak: mounts left under hulld's directory: %v", m)
	}
	if d.net != nil {
		if ips := d.net.allocated(t); len(ips) > 0 {
			t.Errorf("leak: host-local still holds %v", ips)
		}
	}
	for dir := range d.netns {
		if left := dirNames(dir); len(left) > 0 {
			t.Errorf("leak: network namespace files left in %s: %v", dir, left)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	// Polled: shims exit, and the kernel destroys a namespace's veths,
	// some time after the calls that ended them returned.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		pids := hulltest.ShimPIDs(d.Address)
		links := vethLinks(t)
		if len(pids) == 0 && len(links) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("leak: shims %v and veths %v left after every pod was removed", pids, links)
			// Killed here so that a failing test leaves nothing running
			// on the machine; their containers go with their cgroups
			// below.
			for _, pid := range pids {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			break
		}
		<-tick.C
	}
	// The parent cgroups are the test's (runc makes them and leaves them):
	// anything below them is a pod's or container's cgroup left behind.
	cgroups, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", d.cgroupParent))
	if unified := filepath.Join("/sys/fs/cgroup", d.cgroupParent); dirExists(unified) {
		cgroups = append(cgroups, unified)
	}
	if d.ranPods && len(cgroups) == 0 {
		t.Errorf("no cgroup %s although pods ran: the pods' cgroup parent was not used", d.cgroupParent)
	}
	for _, cg := range cgroups {
		entries, _ := os.ReadDir(cg)
		for _, e := range entries {
			if e.IsDir() {
				t.Errorf("leak: cgroup %s left", filepath.Join(cg, e.Name()))
				removeCgroup(t, filepath.Join(cg, e.Name()))
			}
		}
		if err := os.Remove(cg); err != nil {
			t.Errorf("remove the pods' parent cgroup: %v", err)
		}
	}
}

// netnsDir is where the daemon pins pod network namespaces; the CRI
// service makes it at start.
func (d *criDaemon) netnsDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(d.State, "io.containerd.grpc.v1.cri", "netns")
	if !dirExists(dir) {
		t.Fatalf("no network namespace directory %s", dir)
	}
	return dir
}

// removeCgroup kills what runs in a leaked cgroup and removes it, so that
// a failing test leaves no container behind.
func removeCgroup(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		pids := strings.Fields(string(b))
		if len(pids) == 0 {
			break
		}
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("processes %v of cgroup %s do not die", pids, dir)
			return
		}
		<-tick.C
	}
	if err := os.Remove(dir); err != nil {
		t.Errorf("remove leaked cgroup: %v", err)
	}
}

// mountsUnder lists the mount points below dir in the test's mount
// namespace, the one hulld runs in.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

// vethLinks lists the veth devices of the test's network namespace; a
// removed pod leaves none.
func vethLinks(t *testing.T) []string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, i := range ifs {
		if b, err := os.ReadFile(filepath.Join("/sys/class/net", i.Name, "uevent")); err == nil && strings.Contains(string(b), "DEVTYPE=veth") {
			out = append(out, i.Name)
			continue
		}
		if strings.HasPrefix(i.Name, "veth") {
			out = append(out, i.Name)
		}
	}
	return out
}

// criCtx bounds one CRI call.
func criCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// podConfig is a pod's config with a unique uid, logging into logDir, its
// cgroups under the daemon's parent.
func (d *criDaemon) podConfig(name, logDir string) *runtime.PodSandboxConfig {
	b := make([]byte, 4)
	rand.Read(b)
	uid := name + "-" + hex.EncodeToString(b)
	return &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: name, Namespace: "critest", Uid: uid},
		Hostname:     name,
		LogDirectory: logDir,
		Labels:       map[string]string{"critest": name},
		Linux:        &runtime.LinuxPodSandboxConfig{CgroupParent: d.cgroupParent},
	}
}

// podInfo is what verbose PodSandboxStatus tells of a pod.
type podInfo struct {
	Pid              int    `json:"pid"`
	NetNamespacePath string `json:"netNamespacePath"`
}

// runPod runs a pod and returns its id and status; the network namespace's
// directory is remembered for the leak check.
func (d *criDaemon) runPod(t *testing.T, cfg *runtime.PodSandboxConfig) (string, *runtime.PodSandboxStatus, podInfo) {
	t.Helper()
	ctx := criCtx(t)
	resp, err := d.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox %s: %v", cfg.GetMetadata().GetName(), err)
	}
	d.ranPods = true
	st, info := d.podStatus(t, resp.PodSandboxId)
	return resp.PodSandboxId, st, info
}

func (d *criDaemon) podStatus(t *testing.T, id string) (*runtime.PodSandboxStatus, podInfo) {
	t.Helper()
	st, err := d.rt.PodSandboxStatus(criCtx(t), &runtime.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		t.Fatalf("PodSandboxStatus %s: %v", id, err)
	}
	var info podInfo
	if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &info); err != nil {
		t.Errorf("PodSandboxStatus %s: verbose info %q: %v", id, st.GetInfo()["info"], err)
	}
	if info.NetNamespacePath != "" {
		d.netns[filepath.Dir(info.NetNamespacePath)] = true
	}
	return st.GetStatus(), info
}

// removePod stops and removes a pod, failing on an error.
func (d *criDaemon) removePod(t *testing.T, id string) {
	t.Helper()
	ctx := criCtx(t)
	if _, err := d.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatalf("StopPodSandbox %s: %v", id, err)
	}
	if _, err := d.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatalf("RemovePodSandbox %s: %v", id, err)
	}
}

// pull pulls the busybox image and returns its ImageStatus.
func (d *criDaemon) pull(t *testing.T, ref string) *runtime.Image {
	t.Helper()
	ctx := criCtx(t)
	if _, err := d.img.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}}); err != nil {
		t.Fatalf("PullImage %s: %v", ref, err)
	}
	st, err := d.img.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: ref}})
	if err != nil {
		t.Fatalf("ImageStatus %s: %v", ref, err)
	}
	if st.GetImage() == nil {
		t.Fatalf("ImageStatus %s: no image after the pull", ref)
	}
	return st.GetImage()
}

// ctrConfig is a busybox container running sh -c script.
func ctrConfig(name, image, script string) *runtime.ContainerConfig {
	return &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: name},
		Image:    &runtime.ImageSpec{Image: image},
		Command:  []string{"sh", "-c", script},
		Labels:   map[string]string{"critest-container": name},
	}
}

// runContainer creates and starts a container in pod.
func (d *criDaemon) runContainer(t *testing.T, pod string, podCfg *runtime.PodSandboxConfig, cfg *runtime.ContainerConfig) string {
	t.Helper()
	ctx := criCtx(t)
	resp, err := d.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: podCfg})
	if err != nil {
		t.Fatalf("CreateContainer %s: %v", cfg.GetMetadata().GetName(), err)
	}
	if _, err := d.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
		t.Fatalf("StartContainer %s: %v", cfg.GetMetadata().GetName(), err)
	}
	return resp.ContainerId
}

// containerInfo is what verbose ContainerStatus tells of a container.
type containerInfo struct {
	Pid int `json:"pid"`
}

func (d *criDaemon) containerStatus(t *testing.T, id string) (*runtime.ContainerStatus, containerInfo) {
	t.Helper()
	st, err := d.rt.ContainerStatus(criCtx(t), &runtime.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatalf("ContainerStatus %s: %v", id, err)
	}
	var info containerInfo
	if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &info); err != nil {
		t.Errorf("ContainerStatus %s: verbose info %q: %v", id, st.GetInfo()["info"], err)
	}
	return st.GetStatus(), info
}

// execSync runs cmd in a container and fails the test on an error.
func (d *criDaemon) execSync(t *testing.T, id string, cmd ...string) *runtime.ExecSyncResponse {
	t.Helper()
	resp, err := d.rt.ExecSync(criCtx(t), &runtime.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 30})
	if err != nil {
		t.Fatalf("ExecSync %q in %s: %v", cmd, id, err)
	}
	return resp
}
