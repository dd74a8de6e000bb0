package integration

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/testimage"
)

const shimRuntime = "io.containerd.hull.v2"

// shimFixture is Debian's containerd with hull's shim on its PATH and the
// busybox test image imported.
type shimFixture struct {
	c     *hulltest.Containerd
	image string
	dir   string
}

func newShimFixture(t *testing.T) *shimFixture {
	t.Helper()
	hulltest.RequireCtr(t)
	if os.Geteuid() != 0 {
		t.Skip("the shim tests run containers: root only")
	}
	hulltest.RequireTools(t, "runc", "containerd")
	shim := hulltest.Build(t, "containerd-shim-hull-v2", "github.com/hullrt/hull/cmd/containerd-shim-hull-v2")
	dir := t.TempDir()
	c := hulltest.StartContainerdWith(t, dir, hulltest.ContainerdOptions{PathDirs: []string{filepath.Dir(shim)}, Debug: true})
	files, err := testimage.BusyboxFiles()
	if err != nil {
		t.Fatalf("busybox test image (make test installs busybox-static): %v", err)
	}
	img := testimage.New([]string{"sh"}, files)
	var archive bytes.Buffer
	if err := testimage.WriteOCIArchive(&archive, "example.test/busybox:1", img); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "busybox.tar")
	if err := os.WriteFile(path, archive.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Ctr(t, nil, "images", "import", path)
	f := &shimFixture{c: c, image: "example.test/busybox:1", dir: dir}
	t.Cleanup(func() { f.checkClean(t) })
	return f
}

// ctr runs ctr against the fixture's containerd and returns its combined
// output and error.
func (f *shimFixture) ctr(stdin []byte, args ...string) (string, error) {
	cmd := exec.Command("ctr", append([]string{"--address", f.c.Address}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (f *shimFixture) mustCtr(t *testing.T, args ...string) string {
	t.Helper()
	out, err := f.ctr(nil, args...)
	if err != nil {
		t.Fatalf("ctr %v: %v\n%s", args, err, out)
	}
	return out
}

// checkClean fails the test if a shim process, a mount or a FIFO under the
// test's directory outlives it.
func (f *shimFixture) checkClean(t *testing.T) {
	// Shims exit after their last task's Shutdown, a little after the
	// client returned: wait for each to end (a pidfd says when), then
	// look again.
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range f.shimPids() {
		waitPidExit(pid, time.Until(deadline))
	}
	if left := f.leftovers(); len(left) > 0 {
		t.Errorf("left behind:\n%s", strings.Join(left, "\n"))
	}
}

// shimPids are the shims serving this containerd (their -address names
// its socket).
func (f *shimFixture) shimPids() []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, "containerd-shim-hull-v2") && strings.Contains(cmd, f.c.Address) {
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func (f *shimFixture) leftovers() []string {
	var left []string
	for _, pid := range f.shimPids() {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		left = append(left, fmt.Sprintf("shim %d: %s", pid, strings.ReplaceAll(string(cmd), "\x00", " ")))
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(mi), "\n") {
			if fs := strings.Fields(l); len(fs) > 4 && strings.HasPrefix(fs[4], f.dir) {
				left = append(left, "mount: "+fs[4])
			}
		}
	}
	filepath.Walk(f.dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&os.ModeNamedPipe != 0 && !strings.HasSuffix(p, "/log") {
			left = append(left, "fifo: "+p)
		}
		return nil
	})
	return left
}

func TestShimCtrRunEcho(t *testing.T) {
	f := newShimFixture(t)
	out := f.mustCtr(t, "run", "--rm", "--runtime", shimRuntime, f.image, "echo1", "echo", "hi")
	if out != "hi\n" {
		t.Fatalf("ctr run echo hi printed %q", out)
	}
	if out := f.mustCtr(t, "containers", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("containers left after --rm: %q", out)
	}
}

func TestShimCtrLifecycle(t *testing.T) {
	f := newShimFixture(t)
	f.mustCtr(t, "run", "-d", "--runtime", shimRuntime, f.image, "life", "sleep", "1000")
	defer f.ctr(nil, "containers", "rm", "life")
	if out := f.mustCtr(t, "tasks", "ls"); !regexpMatch(`life\s+\d+\s+RUNNING`, out) {
		t.Fatalf("tasks ls:\n%s", out)
	}
	if out := f.mustCtr(t, "tasks", "exec", "--exec-id", "x", "life", "sh", "-c", "echo from-exec"); out != "from-exec\n" {
		t.Fatalf("exec printed %q", out)
	}
	out, err := f.ctr(nil, "tasks", "exec", "--exec-id", "y", "life", "sh", "-c", "exit 3")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("exec exit 3: %v\n%s", err, out)
	}
	if out := f.mustCtr(t, "tasks", "ps", "life"); !regexpMatch(`(?m)^\d+\s`, out) {
		t.Fatalf("tasks ps:\n%s", out)
	}
	out = f.mustCtr(t, "tasks", "metrics", "life")
	for _, want := range []string{"memory.usage_in_bytes", "pids.current", "cpuacct.usage"} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %s:\n%s", want, out)
		}
	}
	f.mustCtr(t, "tasks", "pause", "life")
	if out := f.mustCtr(t, "tasks", "ls"); !regexpMatch(`life\s+\d+\s+PAUSED`, out) {
		t.Fatalf("tasks ls after pause:\n%s", out)
	}
	f.mustCtr(t, "tasks", "resume", "life")
	if out := f.mustCtr(t, "tasks", "ls"); !regexpMatch(`life\s+\d+\s+RUNNING`, out) {
		t.Fatalf("tasks ls after resume:\n%s", out)
	}
	// Deleting a running task is refused.
	if out, err := f.ctr(nil, "tasks", "delete", "life"); err == nil || !strings.Contains(out, "failed precondition") {
		t.Fatalf("delete of a running task: %v\n%s", err, out)
	}
	// sleep as pid 1 ignores SIGTERM: it keeps running, SIGKILL ends it.
	f.mustCtr(t, "tasks", "kill", "life")
	// kill(2) has decided by the time ctr returns: a signal the init
	// ignores is dropped, one it does not would still be pending or have
	// ended it. So no pending SIGTERM and a live process is final.
	pid := taskPid(t, f.mustCtr(t, "tasks", "ls"), "life")
	if pending := pendingSignals(t, pid); pending != 0 {
		t.Fatalf("SIGTERM to a process that ignores it is pending (mask %#x)", pending)
	}
	if out := f.mustCtr(t, "tasks", "ls"); !regexpMatch(`life\s+\d+\s+RUNNING`, out) {
		t.Fatalf("SIGTERM ended a process that ignores it:\n%s", out)
	}
	f.mustCtr(t, "tasks", "kill", "-s", "SIGKILL", "life")
	waitFor(t, func() bool { return regexpMatch(`life\s+\d+\s+STOPPED`, f.mustCtr(t, "tasks", "ls")) })
	// A stopped task cannot be signalled.
	if out, err := f.ctr(nil, "tasks", "kill", "-s", "SIGKILL", "life"); err == nil || !strings.Contains(out, "not found") {
		t.Fatalf("kill of a stopped task: %v\n%s", err, out)
	}
	f.mustCtr(t, "tasks", "delete", "life")
	f.mustCtr(t, "containers", "rm", "life")
}

func TestShimCtrMissingExecutable(t *testing.T) {
	f := newShimFixture(t)
	out, err := f.ctr(nil, "run", "--rm", "--runtime", shimRuntime, f.image, "missing", "nosuch")
	if err == nil || !strings.Contains(out, `exec: "nosuch": executable file not found in $PATH`) {
		t.Fatalf("run of a missing executable: %v\n%s", err, out)
	}
	f.ctr(nil, "containers", "rm", "missing")
}

func TestShimCtrExitCodeAndStdin(t *testing.T) {
	f := newShimFixture(t)
	out, err := f.ctr(nil, "run", "--rm", "--runtime", shimRuntime, f.image, "exit7", "sh", "-c", "exit 7")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
		t.Fatalf("exit 7: %v\n%s", err, out)
	}
	out, err = f.ctr([]byte("through stdin\n"), "run", "--rm", "--runtime", shimRuntime, f.image, "cat1", "cat")
	if err != nil || out != "through stdin\n" {
		t.Fatalf("cat of stdin: %v\n%q", err, out)
	}
}

func TestShimCtrTerminal(t *testing.T) {
	f := newShimFixture(t)
	master, slave, err := openPty()
	if err != nil {
		t.Fatalf("no pty, not even from a devpts of the test's own: %v", err)
	}
	defer master.Close()
	cmd := exec.Command("ctr", "--address", f.c.Address, "run", "--rm", "-t", "--runtime", shimRuntime, f.image, "tty1",
		"sh", "-c", "tty; echo tty-ok")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var out bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&out, master); close(done) }()
	werr := cmd.Wait()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	if werr != nil || !strings.Contains(out.String(), "/dev/pts/0") || !strings.Contains(out.String(), "tty-ok") {
		t.Fatalf("ctr run -t: %v\n%q", werr, out.String())
	}
}

// openPty opens a pseudo-terminal pair: through /dev/ptmx when the
// machine has one that works, else from a devpts instance of its own
// (privatePty), so that terminal tests never depend on the sandbox.
func openPty() (master, slave *os.File, err error) {
	master, slave, err = ptyFrom("/dev/ptmx")
	if err == nil {
		return master, slave, nil
	}
	return privatePty()
}

// ptyFrom opens a pty master through the ptmx at path, unlocks it and opens
// its slave with TIOCGPTPEER, which needs no /dev/pts path to the slave
// (there is none outside the mount namespace of a private instance).
func ptyFrom(ptmx string) (master, slave *os.File, err error) {
	master, err = os.OpenFile(ptmx, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("unlock pty of %s: %w", ptmx, err)
	}
	sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(unix.TIOCGPTPEER), uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		master.Close()
		return nil, nil, fmt.Errorf("open the slave of %s: %w", ptmx, errno)
	}
	return master, os.NewFile(sfd, "pty-slave"), nil
}

// privatePty mounts a new devpts instance in a mount namespace of its own
// and opens a pty from it. The namespace belongs to one locked OS thread
// that exits afterwards (its goroutine never unlocks it), so the mount is
// gone with it and nothing is mounted in the test's namespace; the open
// files keep the instance alive as long as they are needed.
func privatePty() (master, slave *os.File, err error) {
	type result struct {
		master, slave *os.File
		err           error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		dir, err := os.MkdirTemp("", "hull-devpts-")
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer os.Remove(dir)
		if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
			ch <- result{err: fmt.Errorf("private mount namespace: %w", err)}
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			ch <- result{err: fmt.Errorf("make mounts private: %w", err)}
			return
		}
		if err := unix.Mount("devpts", dir, "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
			ch <- result{err: fmt.Errorf("mount devpts at %s: %w", dir, err)}
			return
		}
		m, s, err := ptyFrom(filepath.Join(dir, "ptmx"))
		unix.Unmount(dir, unix.MNT_DETACH)
		ch <- result{m, s, err}
	}()
	r := <-ch
	return r.master, r.slave, r.err
}

// taskPid reads the pid of task id from ctr tasks ls output.
func taskPid(t *testing.T, ls, id string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(id) + `\s+(\d+)\s`).FindStringSubmatch(ls)
	if m == nil {
		t.Fatalf("no task %s in:\n%s", id, ls)
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
}

// pendingSignals is the mask of signals pending for pid, the thread's and
// the process's (SigPnd, ShdPnd in /proc/<pid>/status).
func pendingSignals(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("status of %d: %v", pid, err)
	}
	var mask uint64
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		if k == "SigPnd" || k == "ShdPnd" {
			x, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatalf("%s of %d: %q", k, pid, v)
			}
			mask |= x
		}
	}
	return mask
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The fallback of openPty works wherever the tests run as root: a pty
// from a devpts instance of the test's own, with no mount left behind.
func TestPrivatePty(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("mounting a devpts instance needs root (make test runs as root)")
	}
	before, _ := os.ReadFile("/proc/self/mountinfo")
	master, slave, err := privatePty()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	if _, err := slave.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	buf := make([]byte, 64)
	n, err := master.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "ping") {
		t.Fatalf("read from the master: %q %v", buf[:n], err)
	}
	after, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Count(string(after), "devpts") != strings.Count(string(before), "devpts") {
		t.Fatalf("the private devpts shows in the test's mounts:\n%s", after)
	}
}
