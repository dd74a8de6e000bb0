package hulltest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hullrt/hull/client/cio"
	"github.com/hullrt/hull/shim/launch"
)

// Containerd is a Debian containerd daemon started by a test or benchmark
// as the yardstick, on its own temporary root, state and socket (never the
// default paths), and stopped when the test ends.
type Containerd struct {
	Root, State, Address string
	cmd                  *exec.Cmd
	log                  syncBuffer
	done                 chan struct{}
}

// StartContainerd starts containerd with its CRI plugin disabled, in dir
// (a new temporary directory if dir is "").
func StartContainerd(t testing.TB, dir string) *Containerd {
	t.Helper()
	return StartContainerdWith(t, dir, ContainerdOptions{})
}

// ContainerdOptions change how StartContainerdWith runs containerd.
type ContainerdOptions struct {
	// PathDirs go in front of containerd's PATH: containerd looks for
	// shim binaries (containerd-shim-<name>-v2) there.
	PathDirs []string
	// Env are extra KEY=VALUE entries of containerd's environment.
	Env []string
	// Debug runs containerd at log level debug (shims then get -debug).
	Debug bool
	// Binary is the containerd daemon to run: Debian's (on PATH) when
	// empty, Containerd2Bin(t, "containerd") for containerd v2.4.2. The
	// version 2 config written for it is one both read.
	Binary string
}

// Containerd2Dir is where scripts/deps.sh builds containerd v2.4.2's
// daemon, ctr and containerd-shim-runc-v2 (nothing of it on PATH).
const Containerd2Dir = "/usr/local/lib/hull-test/containerd-2.4.2"

// Containerd2Bin returns the path of containerd v2.4.2's program name
// ("containerd", "ctr", "containerd-shim-runc-v2"), failing the test when
// scripts/deps.sh has not built it.
func Containerd2Bin(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(Containerd2Dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("containerd v2.4.2's %s is missing (scripts/deps.sh builds it): %v", name, err)
	}
	return p
}

// StartContainerdWith is StartContainerd with options.
func StartContainerdWith(t testing.TB, dir string, o ContainerdOptions) *Containerd {
	t.Helper()
	cleanShimSockets(t)
	bin := o.Binary
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("containerd"); err != nil {
			t.Fatalf("containerd not found (make test installs Debian's containerd package): %v", err)
		}
	}
	if dir == "" {
		dir = t.TempDir()
	}
	c := &Containerd{
		Root: filepath.Join(dir, "root"), State: filepath.Join(dir, "state"),
		log: syncBuffer{mu: &sync.Mutex{}, buf: &bytesBuffer{}}, done: make(chan struct{}),
	}
	c.Address = filepath.Join(c.State, "containerd.sock")
	// The opt plugin would otherwise create /opt/containerd on the host.
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, c.Root, c.State, c.Address, filepath.Join(dir, "opt"))
	if o.Debug {
		cfg += "\n[debug]\n  level = \"debug\"\n"
	}
	cfgPath := filepath.Join(dir, "containerd.toml")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(bin, "--config", cfgPath)
	if len(o.PathDirs) > 0 || len(o.Env) > 0 {
		env := os.Environ()
		if len(o.PathDirs) > 0 {
			env = append(env, "PATH="+strings.Join(o.PathDirs, string(os.PathListSeparator))+string(os.PathListSeparator)+os.Getenv("PATH"))
		}
		c.cmd.Env = append(env, o.Env...)
	}
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			t.Logf("containerd log:\n%s", c.Log())
		}
	})
	// The clean-up above logs containerd's output if this fails.
	Eventually(t, 30*time.Second, "containerd to listen on "+c.Address, func() error {
		select {
		case <-c.done:
			t.Fatalf("containerd exited during start-up: %v", c.cmd.ProcessState)
		default:
		}
		conn, err := net.Dial("unix", c.Address)
		if err == nil {
			conn.Close()
		}
		return err
	})
	return c
}

// PID is containerd's process ID.
func (c *Containerd) PID() int { return c.cmd.Process.Pid }

// Log returns what containerd has written so far.
func (c *Containerd) Log() string {
	c.log.mu.Lock()
	defer c.log.mu.Unlock()
	return c.log.buf.String()
}

// Stop sends SIGTERM to containerd's PID and waits up to 15s before
// SIGKILL.
func (c *Containerd) Stop() {
	select {
	case <-c.done:
		return
	default:
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		c.cmd.Process.Signal(syscall.SIGKILL)
		<-c.done
	}
}

// Ctr runs ctr against containerd; it fails the test on a non-zero exit.
func (c *Containerd) Ctr(t testing.TB, stdin []byte, args ...string) string {
	t.Helper()
	out, err := runCtr(c.Address, stdin, args...)
	if err != nil {
		t.Fatalf("ctr (containerd) %v: %v\n%s", args, err, out)
	}
	return out
}

// DefaultRuncRoot is where containerd's runc shim keeps its containers
// (runc's --root, one directory per namespace) when the client's runtime
// options name no root, whichever daemon started it.
const DefaultRuncRoot = "/run/containerd/runc"

// containerdDefaultDirs are the directories containerd's programs make at
// their fixed defaults, whatever the daemon's own paths: the runc shim's
// runc root and socket directory (containerd 2.4's shim puts its socket
// in /run/containerd/s under any daemon), and ctr's FIFO directory when
// it is given no --fifo-dir. Deepest first.
var containerdDefaultDirs = []string{DefaultRuncRoot, "/run/containerd/s", "/run/containerd/fifo", "/run/containerd"}

// RemoveContainerdDefaultsMade notes which of containerd's default
// directories exist and returns a function that removes, among those
// that did not, the ones left empty: for the TestMain of a package whose
// tests run containerd's shims or ctr, after its tests. Only for a
// package that no other test process runs such programs beside, as the
// directories are shared.
//
// A runc shim whose daemon a test stopped may still be exiting when the
// package's tests end, its socket still in RuncShimSocketDir: the removal
// waits a little for such sockets to go or to be dead (nobody listening),
// removing the dead ones, rather than leave the directory behind.
func RemoveContainerdDefaultsMade() func() {
	_, err := os.Stat(RuncShimSocketDir)
	ours := err != nil // the host's containerd may have shims of its own there
	remove := removeEmptyIfMade(containerdDefaultDirs)
	return func() {
		for deadline := time.Now().Add(5 * time.Second); ours; {
			if removeDeadShimSockets() == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		remove()
	}
}

// RemoveRuncNamespaceDir removes, when t ends, what containerd's runc
// shim made at its defaults for a test whose client names no runc root
// (ctr's --runc-root, runc options' Root): namespace ns's directory under
// DefaultRuncRoot, then the default directories themselves if the test
// made them. Only empty directories go, so nothing of anyone else is
// touched; ns must be the test's own.
func RemoveRuncNamespaceDir(t testing.TB, ns string) {
	t.Cleanup(removeEmptyIfMade(append([]string{filepath.Join(DefaultRuncRoot, ns)}, containerdDefaultDirs...)))
}

// removeEmptyIfMade notes which of dirs (deepest first) do not exist yet
// and returns a function that removes those of them that are then empty.
func removeEmptyIfMade(dirs []string) func() {
	var made []string
	for _, dir := range dirs {
		if _, err := os.Stat(dir); err != nil {
			made = append(made, dir)
		}
	}
	return func() {
		for _, dir := range made {
			os.Remove(dir) // fails, as it should, unless empty
		}
	}
}

// RemoveHullDefaultsMade is RemoveContainerdDefaultsMade for hull's own
// defaults under the temporary directory: the shim socket directory that
// daemons whose paths are too long for a socket fall back to
// (launch.SocketDirIn) and the clients' FIFO directory
// (cio.DefaultFIFODir). The same caveat holds: only for a package that no
// other test process runs hull beside (`make test`, whose packages run
// side by side, removes them once all are done).
func RemoveHullDefaultsMade() func() {
	return removeEmptyIfMade([]string{launch.SocketDirIn("", 0), cio.DefaultFIFODir()})
}
