package integration

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hullrt/hull/config"
	"github.com/hullrt/hull/internal/hulltest"
)

// startActivated starts hulld as systemd starts a socket-activated
// service: the listening sockets as fds 3 and up, LISTEN_FDS, and
// LISTEN_PID naming hulld itself (sh sets it to its own pid, which exec
// hands to hulld). It returns the daemon; it is stopped when the test ends.
func startActivated(t *testing.T, address string, socks []*net.UnixListener, env []string, args ...string) *opsDaemon {
	t.Helper()
	cmd := exec.Command("sh", append([]string{"-c", `LISTEN_PID=$$ exec "$0" "$@"`, hulltest.Binary(t)}, args...)...)
	cmd.Env = append(append(os.Environ(), env...), "LISTEN_FDS="+strconv.Itoa(len(socks)))
	for _, l := range socks {
		f, err := l.File()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close() // the child has its copy
		cmd.ExtraFiles = append(cmd.ExtraFiles, f)
	}
	return runOps(t, address, cmd)
}

// systemdSocket makes a listening unix socket at path as systemd does for
// a .socket unit; the test keeps it, as systemd keeps its own.
func systemdSocket(t *testing.T, path string) *net.UnixListener {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	t.Cleanup(func() { l.Close(); os.Remove(path) })
	return l
}

// TestOpsSocketActivation: hulld serves the sockets systemd passed it
// (contrib/hull.socket) instead of making its own: a client that connects
// before hulld is ready is answered once it is, the socket is the one
// systemd made (same inode) and is left in place when hulld stops, and
// shims do not inherit LISTEN_FDS. A passed socket that is not hulld's
// address stops hulld with the path named.
func TestOpsSocketActivation(t *testing.T) {
	hulltest.RequireCtr(t)
	dir, err := os.MkdirTemp("", "ops")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	address := filepath.Join(dir, "h.sock")
	gsock := systemdSocket(t, address)
	tsock := systemdSocket(t, address+".ttrpc")
	var before syscall.Stat_t
	if err := syscall.Stat(address, &before); err != nil {
		t.Fatal(err)
	}
	// A client connects while hulld has not even started: the kernel
	// queues it on systemd's socket.
	early, err := net.Dial("unix", address)
	if err != nil {
		t.Fatal(err)
	}
	early.Close()

	n := newNotifySocket(t, dir, nil)
	cfg := writeFile(t, dir, "config.toml", "version = 3\n")
	d := startActivated(t, address, []*net.UnixListener{gsock, tsock}, []string{"NOTIFY_SOCKET=" + n.path},
		"--root", filepath.Join(dir, "root"), "--state", filepath.Join(dir, "state"), "--address", address, "--config", cfg)
	// ctr, started at once, waits for hulld through the passed socket.
	if out := d.Ctr(t, nil, "version"); !strings.Contains(out, "Server:") {
		t.Fatalf("ctr version through the activated socket:\n%s", out)
	}
	n.wait(t, "READY=1", 30*time.Second, d.exited)
	var after syscall.Stat_t
	if err := syscall.Stat(address, &after); err != nil || after.Ino != before.Ino {
		t.Fatalf("hulld replaced systemd's socket (inode %d, now %d: %v)", before.Ino, after.Ino, err)
	}
	// A shim, started by hulld, must not see the activation variables
	// (it would take hulld's sockets for its own).
	if os.Geteuid() == 0 {
		hulltest.RequireTools(t, "runc")
		rts := taskRuntimes(t)
		ref := "example.test/busybox:act"
		importWithCtr(t, d, "act", ref, busyboxImage(t))
		fifos := filepath.Join(dir, "fifo")
		os.MkdirAll(fifos, 0o700)
		d.Ctr(t, nil, "-n", "act", "run", "-d", "--runtime", rts[len(rts)-1], "--fifo-dir", fifos, ref, "act1", "sleep", "60")
		pids := hulltest.ShimPIDs(address)
		if len(pids) == 0 {
			t.Fatal("no shim of hulld running")
		}
		for _, pid := range pids {
			env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
			if err == nil && (strings.Contains(string(env), "LISTEN_FDS=") || strings.Contains(string(env), "LISTEN_PID=")) {
				t.Errorf("shim %d inherited the activation variables", pid)
			}
		}
		d.Ctr(t, nil, "-n", "act", "tasks", "kill", "-s", "KILL", "act1")
		hulltest.Eventually(t, 10*time.Second, "task act1 to stop", func() error {
			if out := d.Ctr(t, nil, "-n", "act", "tasks", "ls"); strings.Contains(out, "RUNNING") {
				return errors.New("still running:\n" + out)
			}
			return nil
		})
		d.Ctr(t, nil, "-n", "act", "tasks", "rm", "act1")
		d.Ctr(t, nil, "-n", "act", "containers", "rm", "act1")
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("hulld did not stop on SIGTERM")
	}
	if _, err := os.Stat(address); err != nil {
		t.Fatalf("hulld removed systemd's socket on stop: %v", err)
	}

	// A unit whose socket is not grpc.address.
	other := filepath.Join(dir, "other.sock")
	bad := startActivated(t, address, []*net.UnixListener{systemdSocket(t, other)}, nil,
		"--root", filepath.Join(dir, "root2"), "--state", filepath.Join(dir, "state2"), "--address", address, "--config", cfg)
	select {
	case <-bad.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("hulld kept running with a passed socket that is not its address")
	}
	if bad.cmd.ProcessState.ExitCode() == 0 || !strings.Contains(bad.Log(), other) || !strings.Contains(bad.Log(), "ListenStream") {
		t.Fatalf("exit %d; the log does not name the passed socket %s:\n%s", bad.cmd.ProcessState.ExitCode(), other, bad.Log())
	}
}

// TestOpsSocketUnitMatchesDefaults: contrib/hull.socket hands hulld the
// socket of its default grpc.address, the one contrib/hull.service's hulld
// serves, so hulld accepts it.
func TestOpsSocketUnitMatchesDefaults(t *testing.T) {
	unit, err := os.ReadFile(filepath.Join("..", "..", "contrib", "hull.socket"))
	if err != nil {
		t.Fatal(err)
	}
	var streams []string
	for _, line := range strings.Split(string(unit), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "ListenStream="); ok {
			streams = append(streams, v)
		}
	}
	if len(streams) != 1 || streams[0] != config.DefaultAddress {
		t.Fatalf("contrib/hull.socket listens on %q, want grpc.address's default %s", streams, config.DefaultAddress)
	}
}
