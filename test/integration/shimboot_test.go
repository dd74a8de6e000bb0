package integration

// Shims and daemons across the shim bootstrap protocol of containerd 2.3+
// (bootstrap parameters on start's stdin, a binary BootstrapResult back)
// and the one before it (options on stdin, an address back). Cases
// tested elsewhere: Debian's 1.6 runc shim under hulld (TestCtrRunAndTasks)
// and hull's shim under Debian's containerd 1.6 (TestShimCtrExitCodeAndStdin).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	apitypes "github.com/containerd/containerd/api/types"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/testimage"
)

func shimBootRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("runs containers: root only")
	}
}

// TestShimBootContainerd2RuncShimUnderHulld runs containerd v2.4.2's runc
// shim, which refuses to start without bootstrap parameters, under hulld:
// a container's exit code comes back, the shim is spoken to in task API
// v3, its socket is in hulld's directory, hulld reattaches to it after a
// restart, and no shim is left.
func TestShimBootContainerd2RuncShimUnderHulld(t *testing.T) {
	hulltest.RequireCtr(t)
	shimBootRoot(t)
	shim := hulltest.Containerd2Bin(t, "containerd-shim-runc-v2")
	dir := t.TempDir()
	opts := hulltest.Options{Dir: dir, Env: []string{"PATH=" + filepath.Dir(shim) + string(os.PathListSeparator) + os.Getenv("PATH")}}
	d := startForTasks(t, opts)
	const ns, ref = "boot2", "example.test/busybox:1"
	importWithCtr(t, d, ns, ref, busyboxImage(t))
	c := newCtrTask(t, d, ns, "io.containerd.runc.v2")

	out, err := c.run("run", "--rm", ref, "exit5", "sh", "-c", "echo from-2.4-shim; exit 5")
	if err == nil || !strings.Contains(err.Error(), "exit status 5") || !strings.Contains(out, "from-2.4-shim") {
		t.Fatalf("run exit 5 under containerd 2.4.2's runc shim: %v\n%s", err, out)
	}

	c.ok(t, "run", "-d", ref, "long", "sleep", "600")
	c.waitStatus(t, "long", "RUNNING")
	bundle := filepath.Join(d.State, "io.containerd.runtime.v2.task", ns, "long")
	var rec struct {
		Binary, Address string
		Version         int
	}
	data, err := os.ReadFile(filepath.Join(bundle, "hull-shim.json"))
	if err != nil || json.Unmarshal(data, &rec) != nil {
		t.Fatalf("shim record: %v, %s", err, data)
	}
	if rec.Binary != shim || rec.Version != 3 {
		t.Errorf("shim record %+v; want binary %s speaking task API v3", rec, shim)
	}
	if sock := strings.TrimPrefix(rec.Address, "unix://"); strings.HasPrefix(sock, "/run/containerd/") {
		t.Errorf("shim socket %s is containerd's; want it in hulld's socket directory", sock)
	}
	pids := hulltest.ShimPIDs(d.Address)
	if len(pids) != 1 {
		t.Fatalf("shims of hulld: %v; want the one of task long", pids)
	}
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pids[0]))
	if exe != shim {
		t.Errorf("shim process runs %q; want %s", exe, shim)
	}

	// hulld restarts and reattaches to the v3 shim it recorded.
	d.Stop()
	d = startForTasks(t, opts)
	c.d = d
	if s := c.taskStatus(t, "long"); s != "RUNNING" {
		t.Fatalf("task long is %q after hulld restarted", s)
	}
	if out := c.ok(t, "tasks", "exec", "--exec-id", "e1", "long", "echo", "exec-ok"); strings.TrimSpace(out) != "exec-ok" {
		t.Errorf("exec after the restart printed %q", out)
	}
	c.ok(t, "tasks", "kill", "-s", "SIGKILL", "long")
	c.waitStatus(t, "long", "STOPPED")
	if out := c.ok(t, "tasks", "rm", "long"); !strings.Contains(out, "exit code 137") {
		t.Errorf("tasks rm long: %q; want exit code 137", out)
	}
	c.ok(t, "containers", "rm", "long")
	hulltest.Eventually(t, 10*time.Second, "the shim to exit", func() error {
		if left := hulltest.ShimPIDs(d.Address); len(left) > 0 {
			return fmt.Errorf("shims %v still run", left)
		}
		return nil
	})

	// A shim that dies is cleaned up after with its delete command,
	// which takes the legacy flags alone: the container goes with it.
	c.ok(t, "run", "-d", ref, "crash", "sleep", "600")
	c.waitStatus(t, "crash", "RUNNING")
	pids = hulltest.ShimPIDs(d.Address)
	if len(pids) != 1 {
		t.Fatalf("shims of hulld: %v; want the one of task crash", pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.waitStatus(t, "crash", "STOPPED")
	// 137 is what the shim's delete says; hulld's own fallback is 255.
	if out := c.ok(t, "tasks", "rm", "crash"); !strings.Contains(out, "exit code 137") {
		t.Errorf("tasks rm crash: %q; want the exit code the shim's delete gave, 137", out)
	}
	c.ok(t, "containers", "rm", "crash")
	runcRoot := filepath.Join(d.State, "runc", ns)
	if out, err := exec.Command("runc", "--root", runcRoot, "list", "-q").CombinedOutput(); err != nil || strings.Contains(string(out), "crash") {
		t.Errorf("runc list after the shim died: %v\n%s", err, out)
	}
}

// ctr2 runs containerd v2.4.2's own ctr against address and returns its
// stdout; stderr (where it warns, e.g. of cgroup v1) goes into the error.
func ctr2(t *testing.T, address string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(hulltest.Containerd2Bin(t, "ctr"), append([]string{"--address", address, "--timeout", "60s"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return string(out), err
}

func mustCtr2(t *testing.T, address string, args ...string) string {
	t.Helper()
	out, err := ctr2(t, address, args...)
	if err != nil {
		t.Fatalf("ctr (2.4.2) %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestShimBootHullShimUnderContainerd2 runs hull's shim under containerd
// v2.4.2, driven by its own ctr: containerd sends bootstrap parameters and
// reads the binary answer (task API v3, as its bundle's bootstrap.json
// keeps it), the exit code comes back, `ctr plugins inspect-runtime` shows
// what the shim's -info says, and no shim is left.
func TestShimBootHullShimUnderContainerd2(t *testing.T) {
	shimBootRoot(t)
	hulltest.RequireTools(t, "runc")
	shim := hulltest.Build(t, "containerd-shim-hull-v2", "github.com/hullrt/hull/cmd/containerd-shim-hull-v2")
	dir := t.TempDir()
	c := hulltest.StartContainerdWith(t, dir, hulltest.ContainerdOptions{
		Binary: hulltest.Containerd2Bin(t, "containerd"), PathDirs: []string{filepath.Dir(shim)},
	})
	const ns, ref, rt = "boot2", "example.test/busybox:1", "io.containerd.hull.v2"
	var archive bytes.Buffer
	if err := testimage.WriteOCIArchive(&archive, ref, busyboxImage(t)); err != nil {
		t.Fatal(err)
	}
	tar := filepath.Join(dir, "busybox.tar")
	if err := os.WriteFile(tar, archive.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	mustCtr2(t, c.Address, "-n", ns, "images", "import", tar)
	fifos := filepath.Join(dir, "fifo")
	if err := os.MkdirAll(fifos, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, pid := range hulltest.ShimPIDs(c.Address) {
			t.Errorf("shim %d outlives the test; killing it", pid)
			exec.Command("kill", "-9", fmt.Sprint(pid)).Run()
		}
	})

	out, err := ctr2(t, c.Address, "-n", ns, "run", "--rm", "--runtime", rt, "--fifo-dir", fifos, ref, "exit6", "sh", "-c", "echo from-hull-shim; exit 6")
	if err == nil || !strings.Contains(err.Error(), "exit status 6") || !strings.Contains(out, "from-hull-shim") {
		t.Fatalf("run exit 6 with hull's shim under containerd 2.4.2: %v\n%s", err, out)
	}

	mustCtr2(t, c.Address, "-n", ns, "run", "-d", "--runtime", rt, "--fifo-dir", fifos, ref, "long", "sleep", "600")
	data, err := os.ReadFile(filepath.Join(c.State, "io.containerd.runtime.v2.task", ns, "long", "bootstrap.json"))
	if err != nil {
		t.Fatal(err)
	}
	var boot struct {
		Version  int    `json:"version"`
		Address  string `json:"address"`
		Protocol string `json:"protocol"`
	}
	if err := json.Unmarshal(data, &boot); err != nil || boot.Version != 3 || boot.Protocol != "ttrpc" || !strings.HasPrefix(boot.Address, "unix:///") {
		t.Errorf("containerd's bootstrap.json %s (%v); want task API v3 over ttrpc at a filesystem socket", data, err)
	}
	if out := mustCtr2(t, c.Address, "-n", ns, "tasks", "exec", "--exec-id", "e1", "--fifo-dir", fifos, "long", "echo", "exec-ok"); strings.TrimSpace(out) != "exec-ok" {
		t.Errorf("exec printed %q", out)
	}
	mustCtr2(t, c.Address, "-n", ns, "tasks", "kill", "-s", "SIGKILL", "long")
	hulltest.Eventually(t, 20*time.Second, "task long to stop", func() error {
		out := mustCtr2(t, c.Address, "-n", ns, "tasks", "ls")
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "long" && f[2] == "STOPPED" {
				return nil
			}
		}
		return fmt.Errorf("tasks ls:\n%s", out)
	})
	mustCtr2(t, c.Address, "-n", ns, "tasks", "rm", "long")
	mustCtr2(t, c.Address, "-n", ns, "containers", "rm", "long")

	// containerd runs `<shim> -info` for PluginInfo.
	out = mustCtr2(t, c.Address, "plugins", "inspect-runtime", "--runtime", rt)
	for _, want := range []string{`"Name": "io.containerd.hull.v2"`, `"rro"`, `"ociVersionMin"`} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect-runtime lacks %s:\n%s", want, out)
		}
	}
	hulltest.Eventually(t, 10*time.Second, "hull's shims to exit", func() error {
		if left := hulltest.ShimPIDs(c.Address); len(left) > 0 {
			return fmt.Errorf("shims %v still run", left)
		}
		return nil
	})
}

// TestShimBootInfo decodes what hull's shim prints for -info with runc
// options on stdin, as containerd 2.x reads it.
func TestShimBootInfo(t *testing.T) {
	hulltest.RequireTools(t, "runc")
	shim := hulltest.Build(t, "containerd-shim-hull-v2", "github.com/hullrt/hull/cmd/containerd-shim-hull-v2")
	v, err := proto.Marshal(&runcoptions.Options{BinaryName: "runc", Root: "/nonexistent/runc"})
	if err != nil {
		t.Fatal(err)
	}
	in, err := proto.Marshal(&anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: v})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(shim, "-info")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s -info: %v: %s", shim, err, stderr.String())
	}
	var ri apitypes.RuntimeInfo
	if err := proto.Unmarshal(out, &ri); err != nil {
		t.Fatalf("-info printed %q: %v", out, err)
	}
	if ri.Name != "io.containerd.hull.v2" || ri.Version.GetVersion() == "" {
		t.Errorf("name %q, version %v", ri.Name, ri.Version)
	}
	var o runcoptions.Options
	if ri.Options.UnmarshalTo(&o) != nil || o.Root != "/nonexistent/runc" {
		t.Errorf("options %v; want the ones given", ri.Options)
	}
	var f features.Features
	if ri.Features.GetTypeUrl() != "types.containerd.io/opencontainers/runtime-spec/1/features/Features" || json.Unmarshal(ri.Features.GetValue(), &f) != nil ||
		!slices.Contains(f.MountOptions, "rro") {
		t.Errorf("features %s %s; want runc's, with rro", ri.Features.GetTypeUrl(), ri.Features.GetValue())
	}

	// Options that are not runc's fail, saying so.
	bad, _ := proto.Marshal(&anypb.Any{TypeUrl: "example.com/Other"})
	cmd = exec.Command(shim, "-info")
	cmd.Stdin = bytes.NewReader(bad)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "example.com/Other") {
		t.Errorf("-info with options of another type: %v, %q", err, out)
	}
}
