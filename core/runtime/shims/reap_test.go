package shims

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// threads is this process's OS thread count.
func threads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatal("no Threads line")
	return 0
}

// gone reports whether pid has been reaped (no /proc entry left; a
// zombie keeps one).
func gone(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return errors.Is(err, os.ErrNotExist)
}

// TestReapShim starts children that wait on their stdin, as launched
// shims serve until told to stop: waiting for them holds no OS thread
// each, every child is reaped once it exits, and the waits end.
func TestReapShim(t *testing.T) {
	const n = 20
	m := &Manager{pidfds: map[*os.File]struct{}{}, stop: make(chan struct{})}
	before := threads(t)
	var stdins []io.WriteCloser
	var pids []int
	for i := 0; i < n; i++ {
		cmd := exec.Command("sh", "-c", "read x")
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid // reapShim releases cmd.Process
		t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
		m.reapShim(cmd.Process)
		stdins = append(stdins, in)
		pids = append(pids, pid)
	}
	if after := threads(t); after-before >= n/2 {
		t.Errorf("%d threads before waiting for %d children, %d after: a thread per wait", before, n, after)
	}
	for _, in := range stdins {
		in.Close()
	}
	waited := make(chan struct{})
	go func() { m.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		t.Fatal("the waits did not end after the children exited")
	}
	for _, pid := range pids {
		if !gone(pid) {
			t.Errorf("child %d was not reaped", pid)
		}
	}
	if len(m.pidfds) != 0 {
		t.Errorf("%d pidfds left", len(m.pidfds))
	}
}

// TestReapShimClose: closing the manager ends the waits of children
// that still run (they outlive hulld), and a child launched after that
// is not waited for.
func TestReapShimClose(t *testing.T) {
	m := &Manager{pidfds: map[*os.File]struct{}{}, stop: make(chan struct{})}
	cmd := exec.Command("sh", "-c", "read x")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid // reapShim releases cmd.Process
	m.reapShim(cmd.Process)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if len(m.pidfds) != 0 {
		t.Errorf("%d pidfds left after Close", len(m.pidfds))
	}
	if gone(pid) {
		t.Fatal("the running child was reaped")
	}
	// Ours to reap now, as it is init's or a subreaper's when hulld is
	// gone.
	in.Close()
	if _, err := syscall.Wait4(pid, nil, 0, nil); err != nil {
		t.Errorf("reap child %d: %v", pid, err)
	}
	late := exec.Command("true")
	if err := late.Start(); err != nil {
		t.Fatal(err)
	}
	latePid := late.Process.Pid
	m.reapShim(late.Process)
	if len(m.pidfds) != 0 {
		t.Error("a child launched after Close is waited for")
	}
	syscall.Wait4(latePid, nil, 0, nil)
}
