package runc

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/shim/reaper"
)

// runc152 is where scripts/deps.sh (run by make test) builds upstream runc
// v1.5.2, the newer of the two runcs hull supports.
const runc152 = "/usr/local/lib/hull-test/runc-1.5.2/runc"

// supportedRuncs are the runc binaries hull supports, by name: Debian's on
// PATH and upstream's 1.5.2. The wrappers must work with each.
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

// runcState asks runc for the container's status through the wrapper, so
// that the test's reaper, not os/exec, collects runc state's exit: a
// second waiter would have its status stolen and read as an error.
func runcState(t *testing.T, r *Runc, id string) string {
	t.Helper()
	st, err := r.State(context.Background(), id)
	if IsNotFound(err) {
		return "gone"
	}
	if err != nil {
		t.Fatalf("runc state %s: %v", id, err)
	}
	return st.Status
}

func TestStartDelete(t *testing.T) { forEachRunc(t, testStartDelete) }

// testStartDelete drives runc's own start and delete through the
// wrappers the shim uses, with the container's init reaped by us as the
// shim's reaper would.
func testStartDelete(t *testing.T, runcBin string) {
	ctx := context.Background()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	// The bundle first: runc spec runs under os/exec, which must not
	// race the reaper for its exit.
	bundle := bundleWith(t, "sleep", "30")
	exits := make(chan int, 8)
	rp := reaper.New(func(e reaper.Exit) { exits <- e.Pid })
	t.Cleanup(rp.Background())
	r := &Runc{Binary: runcBin, Root: filepath.Join(t.TempDir(), "root"), Reaper: rp}
	pidFile := filepath.Join(bundle, "pid")
	// runc create's stdio become the container's: none here, so that
	// nothing waits for the container to close a pipe.
	create := exec.Command(runcBin, "--root", r.Root, "create", "--bundle", bundle, "--pid-file", pidFile, "c1")
	wait, err := rp.Start(create)
	if err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != 0 {
		t.Fatalf("runc create: %v", err)
	}
	defer r.Delete(ctx, "c1", true)
	pid := readPidFile(t, pidFile)
	if s := runcState(t, r, "c1"); s != "created" {
		t.Fatalf("state %q before start", s)
	}
	if err := r.Start(ctx, "c1"); err != nil {
		t.Fatalf("start: %v", err)
	}
	if s := runcState(t, r, "c1"); s != "running" {
		t.Fatalf("state %q after start, want running", s)
	}
	if err := r.Start(ctx, "c1"); err == nil {
		t.Fatal("a running container was started again")
	}
	if err := r.Delete(ctx, "c1", false); err == nil {
		t.Fatal("delete without force removed a running container")
	}
	waitDead(t, pid)
	for reaped := false; !reaped; {
		select {
		case p := <-exits:
			reaped = p == pid
		case <-time.After(10 * time.Second):
			t.Fatal("the container's init was not reaped")
		}
	}
	if err := r.Delete(ctx, "c1", false); err != nil {
		t.Fatalf("delete of the stopped container: %v", err)
	}
	if s := runcState(t, r, "c1"); s != "gone" {
		t.Fatalf("runc still knows c1: %s", s)
	}
	if err := r.Delete(ctx, "c1", false); !IsNotFound(err) {
		t.Fatalf("delete of a deleted container: %v, want not found", err)
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
