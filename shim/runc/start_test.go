package runc

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// runc152 is where scripts/deps.sh (run by make test) builds upstream runc
// v1.5.2, the newer of the two runcs hull supports.
const runc152 = "/usr/local/lib/hull-test/runc-1.5.2/runc"

// supportedRuncs are the runc binaries hull supports, by name: Debian's on
// PATH and upstream's 1.5.2. The fast paths must hold for each.
func supportedRuncs(t *testing.T) map[string]string {
	t.Helper()
	debian, err := exec.LookPath("runc")
	if err != nil {
		t.Fatalf("runc (Debian's, installed by make test): %v", err)
	}
	if _, err := os.Stat(runc152); err != nil {
		t.Fatalf("runc 1.5.2 (built by scripts/deps.sh, which make test runs): %v", err)
	}
	return map[string]string{"debian": debian, "1.5.2": runc152}
}

// forEachRunc runs f as a subtest per supported runc.
func forEachRunc(t *testing.T, f func(t *testing.T, runcBin string)) {
	for name, bin := range supportedRuncs(t) {
		t.Run(name, func(t *testing.T) { f(t, bin) })
	}
}

// bundleWith makes a runc bundle running the static busybox with args.
func bundleWith(t *testing.T, args ...string) string {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatal("the runc tests need root (make test runs as root)")
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatalf("busybox (Debian's busybox-static, installed by make test): %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "rootfs", "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("runc", "spec", "--bundle", dir).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v %s", err, out)
	}
	var spec map[string]any
	data, _ = os.ReadFile(filepath.Join(dir, "config.json"))
	json.Unmarshal(data, &spec)
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = append([]string{"/bin/busybox"}, args...)
	data, _ = json.Marshal(spec)
	os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600)
	return dir
}

func runcState(t *testing.T, r *Runc, id string) string {
	out, err := exec.Command(r.Binary, "--root", r.Root, "state", id).Output()
	if err != nil {
		return "gone"
	}
	var st struct{ Status string }
	json.Unmarshal(out, &st)
	return st.Status
}

func TestStartByFIFO(t *testing.T) { forEachRunc(t, testStartByFIFO) }

func testStartByFIFO(t *testing.T, runcBin string) {
	ctx := context.Background()
	bundle := bundleWith(t, "sleep", "30")
	r := &Runc{Binary: runcBin, Root: filepath.Join(t.TempDir(), "root")}
	pidFile := filepath.Join(bundle, "pid")
	// runc create's stdio become the container's: none here, so that
	// nothing waits for the container to close a pipe.
	if err := exec.Command(runcBin, "--root", r.Root, "create", "--bundle", bundle, "--pid-file", pidFile, "c1").Run(); err != nil {
		t.Fatalf("runc create: %v", err)
	}
	defer exec.Command(runcBin, "--root", r.Root, "delete", "--force", "c1").Run()
	pid := readPidFile(t, pidFile)
	if s := runcState(t, r, "c1"); s != "created" {
		t.Fatalf("state %q before start", s)
	}
	handled, err := r.StartByFIFO(ctx, "c1", pid)
	if !handled || err != nil {
		t.Fatalf("StartByFIFO: handled %v, %v", handled, err)
	}
	if s := runcState(t, r, "c1"); s != "running" {
		t.Fatalf("state %q after start, want running", s)
	}
	// A second start has no FIFO left: not handled, runc's own start
	// then says what is wrong.
	if handled, _ := r.StartByFIFO(ctx, "c1", pid); handled {
		t.Fatal("a started container was started again")
	}

	// Other runtimes, and runc releases outside the tested range, keep
	// their own start: here a runc that claims a later release (the
	// FIFO is there, only the version differs).
	if err := exec.Command(runcBin, "--root", r.Root, "create", "--bundle", bundle, "--pid-file", pidFile, "c3").Run(); err != nil {
		t.Fatalf("runc create: %v", err)
	}
	defer exec.Command(runcBin, "--root", r.Root, "delete", "--force", "c3").Run()
	for _, other := range []string{"crun version 1.8.1", "runc version 1.6.0"} {
		o := &Runc{Binary: fakeRuntime(t, other), Root: r.Root}
		if handled, _ := o.StartByFIFO(ctx, "c3", readPidFile(t, pidFile)); handled {
			t.Fatalf("StartByFIFO handled a runtime printing %q", other)
		}
	}
	if s := runcState(t, r, "c3"); s != "created" {
		t.Fatalf("state %q of a container only other runtimes were asked to start", s)
	}

	// An init that died before start: an error, not a hang.
	if err := exec.Command(runcBin, "--root", r.Root, "create", "--bundle", bundle, "--pid-file", pidFile, "c2").Run(); err != nil {
		t.Fatalf("runc create: %v", err)
	}
	defer exec.Command(runcBin, "--root", r.Root, "delete", "--force", "c2").Run()
	pid = readPidFile(t, pidFile)
	waitDead(t, pid)
	done := make(chan error, 1)
	go func() { _, err := r.StartByFIFO(ctx, "c2", pid); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "dead") {
			t.Fatalf("start of a dead init: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("StartByFIFO hung on a dead init")
	}
}

// waitDead kills pid and returns once it has exited: its pidfd becomes
// readable then, whoever reaps it.
func waitDead(t *testing.T, pid int) {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd of %d: %v", pid, err)
	}
	defer unix.Close(fd)
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 10_000)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n != 1 {
			t.Fatalf("wait for %d to die: %d %v", pid, n, err)
		}
		return
	}
}

func readPidFile(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestDeleteStopped(t *testing.T) { forEachRunc(t, testDeleteStopped) }

func testDeleteStopped(t *testing.T, runcBin string) {
	ctx := context.Background()
	// As in the shim, the container's init is reparented to us, so that
	// its exit can be reaped (a zombie keeps its cgroups busy).
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	bundle := bundleWith(t, "true")
	r := &Runc{Binary: runcBin, Root: filepath.Join(t.TempDir(), "root")}
	pidFile := filepath.Join(bundle, "pid")
	if err := exec.Command(runcBin, "--root", r.Root, "create", "--bundle", bundle, "--pid-file", pidFile, "d1").Run(); err != nil {
		t.Fatalf("runc create: %v", err)
	}
	defer exec.Command(runcBin, "--root", r.Root, "delete", "--force", "d1").Run()
	pid := readPidFile(t, pidFile)
	data, _ := os.ReadFile(filepath.Join(r.Root, "d1", "state.json"))
	var st struct {
		CgroupPaths map[string]string `json:"cgroup_paths"`
	}
	json.Unmarshal(data, &st)
	if len(st.CgroupPaths) == 0 {
		t.Fatal("runc recorded no cgroups")
	}
	// Busy: the created process still lives in the cgroups.
	if handled, _ := r.DeleteStopped(ctx, "d1"); handled {
		t.Fatal("DeleteStopped removed a container whose process lives")
	}
	if _, err := os.Stat(filepath.Join(r.Root, "d1")); err != nil {
		t.Fatalf("a refused DeleteStopped removed the state: %v", err)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
		t.Fatalf("reap the container's init: %v", err)
	}
	// A runc outside the tested range is left to runc's own delete, even
	// with the container's process gone.
	if handled, _ := (&Runc{Binary: fakeRuntime(t, "runc version 1.6.0"), Root: r.Root}).DeleteStopped(ctx, "d1"); handled {
		t.Fatal("DeleteStopped handled a runc release it was not tested against")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		handled, err := r.DeleteStopped(ctx, "d1")
		if handled {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("DeleteStopped never handled the stopped container")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, p := range st.CgroupPaths {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("cgroup %s left: %v", p, err)
		}
	}
	if s := runcState(t, r, "d1"); s != "gone" {
		t.Fatalf("runc still knows d1: %s", s)
	}
}
