package integration

import (
	"net"
	"os/exec"
	"strings"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestCRIContainerd16Config: a containerd 1.6 user's version 2 file, with
// its single [plugins."io.containerd.grpc.v1.cri"] section (sandbox image,
// stream server, cni bin_dir and conf_dir, registry.config_path, a runtime
// with BinaryName, Root and SystemdCgroup), starts hulld's CRI unchanged,
// and its pods run under containerd's own runc shim as configured.
func TestCRIContainerd16Config(t *testing.T) {
	if _, err := exec.LookPath("containerd-shim-runc-v2"); err != nil {
		t.Fatalf("containerd-shim-runc-v2 (Debian's containerd, which make test installs): %v", err)
	}
	if criInOwnNamespaces(t) {
		return
	}
	e := newCRIEnv(t)
	n := newCRINet(t)
	dir := t.TempDir()
	d := e.startCRI(t, criDaemonOptions{net: n, dir: dir, containerd16: true})
	if !strings.Contains(d.Log(), "version 2") {
		t.Errorf("no word of the version 2 file in hulld's log:\n%s", d.Log())
	}
	st, err := d.rt.Status(criCtx(t), &runtime.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.GetStatus().GetConditions() {
		if !c.GetStatus() {
			t.Fatalf("condition %s is false: %s %s", c.GetType(), c.GetReason(), c.GetMessage())
		}
	}
	d.pull(t, e.busybox)
	logDir := t.TempDir()
	podCfg := d.podConfig("c16", logDir)
	pod, pst, _ := d.runPod(t, podCfg)
	if ip := net.ParseIP(pst.GetNetwork().GetIp()); ip == nil || !n.subnet.Contains(ip) {
		t.Fatalf("pod IP %q is not in the configured network %s", pst.GetNetwork().GetIp(), n.subnet)
	}
	id := d.runContainer(t, pod, podCfg, ctrConfig("c", e.busybox, "echo started; sleep 300"))
	out := d.execSync(t, id, "cat", "/proc/self/cgroup")
	if out.GetExitCode() != 0 {
		t.Fatalf("exec: %d %s", out.GetExitCode(), out.GetStderr())
	}
	// containerd's shim, not hull's, runs the pod: the runtime the
	// handler names.
	if ps, err := exec.Command("ps", "-eo", "args").Output(); err != nil || !strings.Contains(string(ps), "containerd-shim-runc-v2") {
		t.Fatalf("no containerd-shim-runc-v2 runs the pod (%v):\n%s", err, ps)
	}
	d.removePod(t, pod)
}
