package podmetrics

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
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

// helperEnv makes the test binary a container stand-in: it listens on a
// TCP socket, says "ready" and waits for stdin to close.
const helperEnv = "HULL_PODMETRICS_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin)
		l.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestCollectHostProcess runs Collect against this machine: a helper
// process in a cgroup of its own, found through the real /proc and cgroup
// mounts, and this process's network namespace.
func TestCollectHostProcess(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a cgroup")
	}
	c := collector{root: "/", log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	self, err := c.cgroupOf(uint32(os.Getpid()), "")
	if err != nil {
		t.Fatalf("this process's cgroup: %v", err)
	}
	name := "hull-podmetrics-test-" + strconv.Itoa(os.Getpid())
	dir := filepath.Join(self, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeCgroup(t, dir) })

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	pid := cmd.Process.Pid
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		t.Fatalf("move helper into %s: %v", dir, err)
	}
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("helper said %q, %v", line, err)
	}

	ctr := Container{ID: "helper", Name: "helper", Pid: uint32(pid), CgroupPath: "/" + name}
	pod := Pod{ID: "host", NetNSPid: uint32(os.Getpid())}
	got := series(t, c.collect(pod, []Container{ctr}, fakeNow))
	l := "container=helper,id=helper,image=,namespace=,pod="
	one := func(name string) uint64 {
		t.Helper()
		v, ok := got[name][l]
		if !ok {
			t.Fatalf("no %s{%s}: %v", name, l, got[name])
		}
		return v
	}
	if n := one(processes); n != 1 {
		t.Errorf("%s = %d, want 1", processes, n)
	}
	if n := one(sockets); n < 1 {
		t.Errorf("%s = %d, want the helper's listener at least", sockets, n)
	}
	if n := one(fileDescriptors); n < 4 {
		t.Errorf("%s = %d, want stdio and a socket at least", fileDescriptors, n)
	}
	if n := one(threads); n < 1 {
		t.Errorf("%s = %d", threads, n)
	}
	if _, err := os.Stat(filepath.Join(dir, "pids.max")); err == nil {
		if n := one(threadsMax); n != 0 {
			t.Errorf("%s = %d, want 0 for an unlimited pids.max", threadsMax, n)
		}
	}
	// The helper is a Go program like this one: both raised their soft
	// open-files limit to the hard one at start.
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if v, ok := got[ulimitsSoft][l+",ulimit=max_open_files"]; !ok || v != rl.Cur {
		t.Errorf("max_open_files = %d (%v), want %d", v, ok, rl.Cur)
	}

	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, i := range ifaces {
		if !ignoredInterface(i.Name) {
			want["container=POD,id=host,image=,interface="+i.Name+",namespace=,pod="] = true
		}
	}
	if len(got[networkReceiveBytes]) != len(want) {
		t.Errorf("network series %v, want one per interface of %v", got[networkReceiveBytes], want)
	}
	for k := range got[networkReceiveBytes] {
		if !want[k] {
			t.Errorf("network series %s is no interface of this namespace", k)
		}
	}

	// A cgroup path that is not the helper's makes its pid a stranger.
	ctr.CgroupPath = "/" + name + "-other"
	got = series(t, c.collect(pod, []Container{ctr}, fakeNow))
	if len(got[processes]) > 0 {
		t.Errorf("processes counted for a pid outside the container's cgroup: %v", got[processes])
	}
}

// removeCgroup removes a test cgroup, waiting for the kernel to let go of
// the exited helper.
func removeCgroup(t *testing.T, dir string) {
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			t.Errorf("remove cgroup %s: %v", dir, err)
			return
		}
		<-tick.C
	}
}

// testWriter sends log lines to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
