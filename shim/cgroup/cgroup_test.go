package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"
	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
)

// childEnv makes the test binary a child process that waits for a line on
// stdin (so it starts its work only once it is in its cgroup) and then
// spins on the CPU ("spin") or allocates memory until it is killed
// ("hog").
const childEnv = "HULL_CGROUP_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "spin":
		bufio.NewReader(os.Stdin).ReadString('\n')
		for x := 0; ; x++ {
			_ = x * x
		}
	case "hog":
		bufio.NewReader(os.Stdin).ReadString('\n')
		var keep [][]byte
		for {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = byte(i) | 1 // touch every page
			}
			keep = append(keep, b)
		}
	}
}

// testCgroup is a cgroup made for one test, with a child process in it.
type testCgroup struct {
	dirs  []string // one per hierarchy (v1) or the one v2 directory
	child *exec.Cmd
	start func() // lets the child begin its work
}

// newTestCgroup makes a cgroup (v1 memory, cpu, cpuacct, pids and blkio
// directories, or one v2 directory, as the host runs) limited to
// memLimit bytes of memory without swap, and starts a child of the given
// kind in it. Everything is removed when the test ends.
func newTestCgroup(t *testing.T, kind string, memLimit int64) *testCgroup {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("making cgroups needs root (make test runs as root)")
	}
	name := fmt.Sprintf("hull-cgroup-test-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-"))
	tc := &testCgroup{}
	t.Cleanup(func() {
		if tc.child != nil && tc.child.Process != nil {
			tc.child.Process.Kill()
			tc.child.Wait()
		}
		for _, d := range tc.dirs {
			// The kernel needs a moment to release a killed child.
			for i := 0; i < 50; i++ {
				if err := os.Remove(d); err == nil || errors.Is(err, os.ErrNotExist) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	})
	limit := strconv.FormatInt(memLimit, 10)
	settings := map[string]string{}
	if cgroups.Mode() == cgroups.Unified {
		tc.dirs = []string{filepath.Join("/sys/fs/cgroup", name)}
		settings["memory.max"] = limit
		settings["memory.swap.max"] = "0"
	} else {
		seen := map[string]bool{}
		for _, ctrl := range []string{"memory", "cpu", "cpuacct", "pids", "blkio"} {
			root, err := filepath.EvalSymlinks(filepath.Join("/sys/fs/cgroup", ctrl))
			if err != nil {
				t.Fatalf("v1 %s hierarchy: %v", ctrl, err)
			}
			if !seen[root] { // cpu and cpuacct may share a mount
				seen[root] = true
				tc.dirs = append(tc.dirs, filepath.Join(root, name))
			}
		}
		mem := filepath.Join("/sys/fs/cgroup/memory", name)
		settings[filepath.Join(mem, "memory.limit_in_bytes")] = limit
		settings[filepath.Join(mem, "memory.swappiness")] = "0"
	}
	for _, d := range tc.dirs {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for file, value := range settings {
		if !filepath.IsAbs(file) {
			file = filepath.Join(tc.dirs[0], file)
		}
		if err := os.WriteFile(file, []byte(value), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("write %s: %v", file, err)
		}
	}

	tc.child = exec.Command(os.Args[0], "-test.run=^$")
	tc.child.Env = append(os.Environ(), childEnv+"="+kind)
	in, err := tc.child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.child.Start(); err != nil {
		t.Fatal(err)
	}
	for _, d := range tc.dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(tc.child.Process.Pid)), 0); err != nil {
			t.Fatalf("move child into %s: %v", d, err)
		}
	}
	tc.start = func() { in.Write([]byte("go\n")) }
	return tc
}

// TestMetrics reads a spinning child's cgroup through the library and
// checks the counters are the ones containerd returns: its message type,
// and CPU times in nanoseconds (v1's cpuacct.stat counts USER_HZ ticks)
// or microseconds (v2) that add up to the total.
func TestMetrics(t *testing.T) {
	tc := newTestCgroup(t, "spin", 256<<20)
	tc.start()
	cg, err := Load(tc.child.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if cg.V2() != (cgroups.Mode() == cgroups.Unified) {
		t.Fatalf("V2() = %v on a host in mode %v", cg.V2(), cgroups.Mode())
	}
	const enough = 300 * time.Millisecond
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, err := cg.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		var total, user, system time.Duration
		var pids, mem uint64
		var wantURL string
		switch m := m.(type) {
		case *v1.Metrics:
			total, user, system = time.Duration(m.CPU.Usage.Total), time.Duration(m.CPU.Usage.User), time.Duration(m.CPU.Usage.Kernel)
			pids, mem = m.Pids.Current, m.Memory.Usage.Usage
			wantURL = "io.containerd.cgroups.v1.Metrics"
			if m.Blkio == nil || m.MemoryOomControl == nil || len(m.CPU.Usage.PerCPU) == 0 {
				t.Fatalf("controllers missing from %v", m)
			}
		case *v2.Metrics:
			total = time.Duration(m.CPU.UsageUsec) * time.Microsecond
			user, system = time.Duration(m.CPU.UserUsec)*time.Microsecond, time.Duration(m.CPU.SystemUsec)*time.Microsecond
			pids, mem = m.Pids.Current, m.Memory.Usage
			wantURL = "io.containerd.cgroups.v2.Metrics"
			if m.MemoryEvents == nil || m.Io == nil {
				t.Fatalf("controllers missing from %v", m)
			}
		default:
			t.Fatalf("metrics of type %T", m)
		}
		if total < enough && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if total < enough {
			t.Fatalf("CPU total %v after 30s of spinning", total)
		}
		// Tick-based user and system times lag the precise total by a
		// few ticks at most.
		if d := total - (user + system); d < -100*time.Millisecond || d > total/4+100*time.Millisecond {
			t.Errorf("user %v + system %v far from total %v", user, system, total)
		}
		if pids == 0 || mem == 0 {
			t.Errorf("pids %d memory %d: want both non-zero", pids, mem)
		}
		a, err := typeurl.MarshalAnyToProto(m)
		if err != nil {
			t.Fatal(err)
		}
		if a.GetTypeUrl() != wantURL {
			t.Errorf("type URL %q, want %q (what ctr decodes)", a.GetTypeUrl(), wantURL)
		}
		return
	}
}

// TestWatchOOM lets a child outgrow its memory limit and waits for the
// watcher to report the kill; the metrics count it too.
func TestWatchOOM(t *testing.T) {
	tc := newTestCgroup(t, "hog", 32<<20)
	cg, err := Load(tc.child.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	ooms := make(chan struct{}, 16)
	stop, err := cg.WatchOOM(func() { ooms <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	tc.start()
	select {
	case <-ooms:
	case <-time.After(60 * time.Second):
		t.Fatal("no OOM reported within 60s")
	}
	if err := tc.child.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("child ended with %v, want killed", err)
	}
	m, err := cg.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	var kills uint64
	switch m := m.(type) {
	case *v1.Metrics:
		kills = m.MemoryOomControl.OomKill
	case *v2.Metrics:
		kills = m.MemoryEvents.OomKill
	}
	if kills == 0 {
		t.Errorf("metrics count no OOM kill: %v", m)
	}
}

// TestWatchOOMStop checks that a stopped watcher reports nothing.
func TestWatchOOMStop(t *testing.T) {
	tc := newTestCgroup(t, "hog", 32<<20)
	cg, err := Load(tc.child.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	ooms := make(chan struct{}, 16)
	stop, err := cg.WatchOOM(func() { ooms <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	stop()
	tc.start()
	tc.child.Wait()
	select {
	case <-ooms:
		t.Fatal("OOM reported after stop")
	case <-time.After(500 * time.Millisecond):
	}
}

func TestLoadGone(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("reading cgroups needs root (make test runs as root)")
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid // reaped: its /proc entry is gone
	_, err := Load(pid)
	if !errdefs.IsNotFound(err) {
		t.Fatalf("Load of exited pid %d: %v, want not found", pid, err)
	}
	if !strings.Contains(err.Error(), strconv.Itoa(pid)) {
		t.Errorf("error %q does not name pid %d", err, pid)
	}
}
