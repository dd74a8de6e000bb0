package integration

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// testCRIUserNamespace runs a pod in a user namespace of its own (the
// kubelet's hostUsers: false): its containers' root is an unprivileged
// host uid, the image's files show as the namespace root's without being
// changed on disk, and the pod's network namespace belongs to the pod's
// user namespace (made by its pause process, then networked through CNI).
func testCRIUserNamespace(t *testing.T, e *criEnv, d *criDaemon) {
	ctx := criCtx(t)
	st, err := d.rt.Status(ctx, &runtime.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var advertised bool
	for _, h := range st.GetRuntimeHandlers() {
		if h.GetName() == "" && h.GetFeatures().GetUserNamespaces() {
			advertised = true
		}
	}
	if !advertised {
		t.Fatalf("Status does not advertise user namespaces for the default handler: %v", st.GetRuntimeHandlers())
	}
	userns := &runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{
		Mode: runtime.NamespaceMode_POD,
		Uids: []*runtime.IDMapping{{ContainerId: 0, HostId: 100000, Length: 65536}},
		Gids: []*runtime.IDMapping{{ContainerId: 0, HostId: 200000, Length: 65536}},
	}}
	podCfg := d.podConfig("userns", t.TempDir())
	podCfg.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{NamespaceOptions: userns}
	pod, pst, info := d.runPod(t, podCfg)
	ip := net.ParseIP(pst.GetNetwork().GetIp())
	if ip == nil || !d.net.subnet.Contains(ip) {
		t.Errorf("pod IP %q is not in the test's subnet %v", pst.GetNetwork().GetIp(), d.net.subnet)
	}
	// The pinned network namespace is the pause process's and belongs to
	// its user namespace.
	if info.Pid <= 0 || info.NetNamespacePath == "" {
		t.Fatalf("verbose pod status: pid %d, netns %q", info.Pid, info.NetNamespacePath)
	}
	if a, b := nsInode(t, info.NetNamespacePath), nsInode(t, fmt.Sprintf("/proc/%d/ns/net", info.Pid)); a != b {
		t.Errorf("pinned network namespace %d is not the pause process's %d", a, b)
	}
	if owner, want := netnsOwner(t, info.NetNamespacePath), nsInode(t, fmt.Sprintf("/proc/%d/ns/user", info.Pid)); owner != want {
		t.Errorf("pod network namespace belongs to user namespace %d, the pod's is %d", owner, want)
	}

	// A volume with a file only its (host) root may read, as the
	// kubelet's service account tokens are: idmapped, the pod's root
	// reads it.
	vol := t.TempDir()
	if err := os.Chmod(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vol+"/token", []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := ctrConfig("userns", e.busybox, "while :; do sleep 1 & wait $!; done")
	cfg.Linux = &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{NamespaceOptions: userns}}
	cfg.Mounts = []*runtime.Mount{{ContainerPath: "/vol", HostPath: vol, Readonly: true}}
	id := d.runContainer(t, pod, podCfg, cfg)
	if ex := d.execSync(t, id, "sh", "-c", "cat /vol/token; stat -c ' %u:%g' /vol/token /etc/hosts"); ex.ExitCode != 0 || strings.Join(strings.Fields(string(ex.Stdout)), " ") != "secret 0:0 0:0" {
		t.Errorf("volume in the pod's user namespace: exit %d, %q (stderr %q); want the token and owners 0:0", ex.ExitCode, ex.Stdout, ex.Stderr)
	}
	ex := d.execSync(t, id, "sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; stat -c '%u:%g' / /etc /bin/sh; touch /etc/new && stat -c '%u:%g' /etc/new")
	got := strings.Fields(string(ex.Stdout))
	want := strings.Fields("0 100000 65536 0 200000 65536 0:0 0:0 0:0 0:0")
	if ex.ExitCode != 0 || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("in the container: exit %d, %q (stderr %q); want %q", ex.ExitCode, got, ex.Stderr, want)
	}
	_, cinfo := d.containerStatus(t, id)
	if uid := procUID(t, cinfo.Pid); uid != "100000" {
		t.Errorf("the container's process runs as host uid %s, want 100000", uid)
	}
	// The image's files are unchanged on disk: another pod, in the
	// host's user namespace, sees them owned by root.
	plainCfg := d.podConfig("userns-neighbour", t.TempDir())
	plain, _, _ := d.runPod(t, plainCfg)
	pid := d.runContainer(t, plain, plainCfg, ctrConfig("plain", e.busybox, "while :; do sleep 1 & wait $!; done"))
	if ex := d.execSync(t, pid, "sh", "-c", "stat -c %u:%g /bin/sh /etc"); strings.Join(strings.Fields(string(ex.Stdout)), " ") != "0:0 0:0" {
		t.Errorf("in a pod of the host's user namespace the image's files are %q, want 0:0", ex.Stdout)
	}
	d.removePod(t, plain)
	d.removePod(t, pod)
	if got := d.net.allocated(t); contains(got, ip.String()) {
		t.Errorf("after the pod was removed host-local still holds its %s", ip)
	}
	if _, err := os.Stat(info.NetNamespacePath); !os.IsNotExist(err) {
		t.Errorf("network namespace pin %s after removal: %v", info.NetNamespacePath, err)
	}
	if m := mountsUnder(t, d.dir); len(m) > 0 {
		t.Errorf("mounts left after the pods were removed: %v", m)
	}
}

func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// netnsOwner returns the inode of the user namespace owning the network
// namespace at path.
func netnsOwner(t *testing.T, path string) uint64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_USERNS)
	if err != nil {
		t.Fatalf("NS_GET_USERNS on %s: %v", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// procUID is the real uid of process pid, as the host sees it.
func procUID(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" {
			return f[1]
		}
	}
	t.Fatalf("no Uid line in /proc/%d/status", pid)
	return ""
}
