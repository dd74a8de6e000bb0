// Package hulltest starts real hulld processes for tests: each with its own
// temporary root, state and socket, stopped and cleaned up when the test
// ends. It is the one way tests start hulld.
package hulltest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Binary returns the path of a hulld built from this tree, building it once
// per test process. HULLD_BIN overrides it.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("HULLD_BIN"); p != "" {
		return p
	}
	return build(t, "hulld", "github.com/hullrt/hull/cmd/hulld", "")
}

// CrashBinary returns a hulld built with the hullcrash tag, with hull's
// shim built the same way beside it (where hulld finds its shim), so that
// HULL_CRASHPOINT (package crashpoint) can kill either at a named point.
func CrashBinary(t testing.TB) string {
	t.Helper()
	build(t, "crash/containerd-shim-hull-v2", "github.com/hullrt/hull/cmd/containerd-shim-hull-v2", "hullcrash")
	return build(t, "crash/hulld", "github.com/hullrt/hull/cmd/hulld", "hullcrash")
}

// BuildTags are the build tags of the Makefile's BUILDTAGS.
const BuildTags = "urfave_cli_no_docs,grpcnotrace"

// Build builds the command package pkg into a per-process directory as name
// and returns its path; builds are shared by every test of the process.
func Build(t testing.TB, name, pkg string) string {
	t.Helper()
	return build(t, name, pkg, "")
}

var built sync.Map // name -> path

// RemoveBuilds removes what Build and its kin built for this process, so
// that no test run leaves binaries behind in the temporary directory.
func RemoveBuilds() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// Main is the TestMain of a test package that builds binaries through
// this package: it runs the tests, removes the builds and exits.
func Main(m *testing.M) {
	code := m.Run()
	RemoveBuilds()
	os.Exit(code)
}

func build(t testing.TB, name, pkg, tags string) string {
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "hulltest-bin-")
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	if p, ok := built.Load(name); ok {
		return p.(string)
	}
	out := filepath.Join(buildDir, name)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	// Built as `make build` builds them: static, stripped, with its build
	// tags, which is what start-up costs and memory are measured on.
	cmd := exec.Command("go", "build", "-trimpath", "-tags", strings.TrimSuffix(BuildTags+","+tags, ","), "-ldflags", "-s -w", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
	built.Store(name, out)
	return out
}

// Daemon is a hulld started for one test.
type Daemon struct {
	Root, State, Address, Config string
	cmd                          *exec.Cmd
	log                          *bytes.Buffer
	logMu                        *sync.Mutex
	done                         chan struct{}
	t                            testing.TB
}

// Options change how Start runs hulld.
type Options struct {
	// Config is the text of a config file; root, state and address are
	// still forced by flags.
	Config string
	// Args are extra hulld flags.
	Args []string
	// Dir reuses a root/state directory pair, to restart over the same
	// state; empty makes a new temporary one.
	Dir string
	// Binary runs this hulld instead of Binary's (e.g. CrashBinary's).
	Binary string
	// Env is added to hulld's environment, which its shims inherit.
	Env []string
}

// SyncBuffer is a buffer goroutines may write and read at once: a
// process's output, read by the test while the process writes.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

type syncBuffer struct {
	mu  *sync.Mutex
	buf *bytesBuffer
}

// bytesBuffer is the buffer type behind syncBuffer.
type bytesBuffer = bytes.Buffer

func (s syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// Start runs hulld and waits until its socket accepts connections. The
// daemon is stopped (SIGTERM, then SIGKILL) when the test ends.
func Start(t testing.TB, opts Options) *Daemon {
	t.Helper()
	// Registered first, so that it runs last: after the daemon and the
	// test's own clean-up have stopped the shims.
	cleanShimSockets(t)
	dir := opts.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	d := &Daemon{
		Root: filepath.Join(dir, "root"), State: filepath.Join(dir, "state"),
		Address: filepath.Join(dir, "state", "hull.sock"),
		log:     &bytes.Buffer{}, logMu: &sync.Mutex{}, done: make(chan struct{}), t: t,
	}
	args := []string{"--root", d.Root, "--state", d.State, "--address", d.Address, "--log-level", "debug"}
	if opts.Config != "" {
		d.Config = filepath.Join(dir, "config.toml")
		if err := os.WriteFile(d.Config, []byte(opts.Config), 0o600); err != nil {
			t.Fatal(err)
		}
	} else {
		d.Config = filepath.Join(dir, "none.toml")
		os.WriteFile(d.Config, []byte("version = 3\n"), 0o600)
	}
	args = append(args, "--config", d.Config)
	args = append(args, opts.Args...)
	bin := opts.Binary
	if bin == "" {
		bin = Binary(t)
	}
	d.cmd = exec.Command(bin, args...)
	if len(opts.Env) > 0 {
		d.cmd.Env = append(os.Environ(), opts.Env...)
	}
	w := syncBuffer{d.logMu, d.log}
	d.cmd.Stdout, d.cmd.Stderr = w, w
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			t.Logf("hulld log:\n%s", d.Log())
		}
	})
	// The clean-up above logs hulld's output if this fails.
	Eventually(t, 20*time.Second, "hulld to listen on "+d.Address, func() error {
		select {
		case <-d.done:
			t.Fatalf("hulld exited during start-up: %v", d.cmd.ProcessState)
		default:
		}
		c, err := net.Dial("unix", d.Address)
		if err == nil {
			c.Close()
		}
		return err
	})
	return d
}

// Log returns what hulld has written so far.
func (d *Daemon) Log() string {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	return d.log.String()
}

// PID is hulld's process ID.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// Exited is closed when hulld has exited.
func (d *Daemon) Exited() <-chan struct{} { return d.done }

// ExitCode is hulld's exit code after Exited is closed.
func (d *Daemon) ExitCode() int { return d.cmd.ProcessState.ExitCode() }

// Stop sends SIGTERM and waits up to 15s before SIGKILL.
func (d *Daemon) Stop() {
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		d.t.Errorf("hulld did not stop within 15s of SIGTERM; killing it")
		d.Kill()
	}
}

// Kill sends SIGKILL and waits for the exit.
func (d *Daemon) Kill() {
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

// Ctr runs Debian's ctr against the daemon with args and returns its
// combined output; it fails the test on a non-zero exit.
func (d *Daemon) Ctr(t testing.TB, stdin []byte, args ...string) string {
	t.Helper()
	out, err := d.CtrErr(stdin, args...)
	if err != nil {
		t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// CtrErr runs ctr like Ctr and returns its error instead of failing.
func (d *Daemon) CtrErr(stdin []byte, args ...string) (string, error) {
	return runCtr(d.Address, stdin, args...)
}

// runCtr runs Debian's ctr against the daemon at address.
func runCtr(address string, stdin []byte, args ...string) (string, error) {
	cmd := exec.Command("ctr", append([]string{"--address", address, "--timeout", "60s"}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// RequireTools fails when one of the programs names is not on PATH: make
// test installs every one of them (scripts/deps.sh), and a test whose
// yardstick is missing must not pass by skipping.
func RequireTools(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			t.Fatalf("%s not found (make test installs it): %v", name, err)
		}
	}
}

// RequireCtr fails when Debian's ctr is missing: it is installed by the
// Makefile, and a missing yardstick must not pass silently.
func RequireCtr(t testing.TB) {
	t.Helper()
	RequireTools(t, "ctr")
}

// ShimPIDs lists the shim processes serving the daemon at address (hulld
// or containerd): shims carry it in their -address flag. Tests use it to
// check that no shim is left, benchmarks to measure shims.
func ShimPIDs(address string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmd), "\x00")
		if !strings.Contains(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-address" && args[i+1] == address {
				pids = append(pids, pid)
			}
		}
	}
	// A shim starting runc shows, between its fork and runc's exec, a
	// child with the shim's own command line (Go forks with the parent's
	// memory): that child is not a shim.
	var shims []int
	for _, pid := range pids {
		if !slices.Contains(pids, parentPID(pid)) {
			shims = append(shims, pid)
		}
	}
	return shims
}

// parentPID returns pid's parent, or 0 when it cannot be read.
func parentPID(pid int) int {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: fields start
	// after its last ")".
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}
