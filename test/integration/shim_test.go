package integration

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := f.leftovers()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("left behind:\n%s", strings.Join(left, "\n"))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (f *shimFixture) leftovers() []string {
	var left []string
	// Shims serving this containerd (their -address names its socket).
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, "containerd-shim-hull-v2") && strings.Contains(cmd, f.c.Address) {
			left = append(left, "shim: "+p+": "+cmd)
		}
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
	time.Sleep(500 * time.Millisecond)
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
		t.Skipf("no pty: %v", err)
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

// openPty opens a pseudo-terminal pair through /dev/ptmx.
func openPty() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, err
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, slave, nil
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
