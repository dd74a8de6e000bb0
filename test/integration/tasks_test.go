package integration

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/internal/hulltest"
)

// taskRuntimes are the shims the task tests run under hulld: Debian's
// runc shim, and hull's own, built next to hulld (where hulld looks).
func taskRuntimes(t *testing.T) []string {
	t.Helper()
	hulltest.Build(t, "containerd-shim-hull-v2", "github.com/hullrt/hull/cmd/containerd-shim-hull-v2")
	return []string{"io.containerd.runc.v2", "io.containerd.hull.v2"}
}

// ctrTask drives one hulld with ctr, keeping ctr's FIFOs in the test's
// own directory rather than under /run/containerd.
type ctrTask struct {
	d       *hulltest.Daemon
	ns      string
	runtime string
	fifos   string
}

func newCtrTask(t *testing.T, d *hulltest.Daemon, ns, runtime string) *ctrTask {
	dir := filepath.Join(t.TempDir(), "fifo")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return &ctrTask{d: d, ns: ns, runtime: runtime, fifos: dir}
}

func (c *ctrTask) args(args ...string) []string {
	out := []string{"-n", c.ns}
	if len(args) > 0 && args[0] == "run" {
		return append(append(out, "run", "--runtime", c.runtime, "--fifo-dir", c.fifos), args[1:]...)
	}
	if len(args) > 1 && args[0] == "tasks" && (args[1] == "exec" || args[1] == "start" || args[1] == "attach") {
		return append(append(out, "tasks", args[1], "--fifo-dir", c.fifos), args[2:]...)
	}
	return append(out, args...)
}

func (c *ctrTask) ok(t *testing.T, args ...string) string {
	t.Helper()
	return c.d.Ctr(t, nil, c.args(args...)...)
}

func (c *ctrTask) run(args ...string) (string, error) {
	return c.d.CtrErr(nil, c.args(args...)...)
}

// taskStatus returns the STATUS column of `ctr tasks ls` for id, "" if
// the task is not listed.
func (c *ctrTask) taskStatus(t *testing.T, id string) string {
	t.Helper()
	for _, line := range strings.Split(c.ok(t, "tasks", "ls"), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == id {
			return f[2]
		}
	}
	return ""
}

// waitStatus waits until `ctr tasks ls` shows task id in status want.
func (c *ctrTask) waitStatus(t *testing.T, id, want string) {
	t.Helper()
	hulltest.Eventually(t, 20*time.Second, fmt.Sprintf("task %s to be %s", id, want), func() error {
		if got := c.taskStatus(t, id); got != want {
			return fmt.Errorf("ctr tasks ls shows it %q", got)
		}
		return nil
	})
}

// taskPID returns the PID column of `ctr tasks ls` for id: the host PID of
// the task's init process.
func (c *ctrTask) taskPID(t *testing.T, id string) int {
	t.Helper()
	out := c.ok(t, "tasks", "ls")
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == id {
			pid, err := strconv.Atoi(f[1])
			if err != nil || pid <= 0 {
				t.Fatalf("ctr tasks ls: PID %q of task %s", f[1], id)
			}
			return pid
		}
	}
	t.Fatalf("ctr tasks ls does not list task %s:\n%s", id, out)
	return 0
}

// startForTasks starts hulld for a task test and, when the test ends, kills
// whatever containers and shims a failure left behind (they outlive hulld
// by design), so that one failing test does not leak into the machine.
func startForTasks(t *testing.T, opts hulltest.Options) *hulltest.Daemon {
	d := hulltest.Start(t, opts)
	t.Cleanup(func() { reapTasks(d) })
	return d
}

func reapTasks(d *hulltest.Daemon) {
	runcRoot := filepath.Join(d.State, "runc")
	nss, _ := os.ReadDir(runcRoot)
	for _, ns := range nss {
		ids, _ := os.ReadDir(filepath.Join(runcRoot, ns.Name()))
		for _, id := range ids {
			exec.Command("runc", "--root", filepath.Join(runcRoot, ns.Name()), "delete", "--force", id.Name()).Run()
		}
	}
	for _, pid := range hulltest.ShimPIDs(d.Address) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, dir := range []string{d.State, d.Root} {
		ms, _ := mount.MountedUnder(dir)
		for _, m := range ms {
			mount.UnmountAll(m)
		}
	}
}

// assertNoLeaks checks what every task test must leave behind: no mount
// under the daemon's directories, no shim serving it, no FIFO.
func assertNoLeaks(t *testing.T, d *hulltest.Daemon, extraDirs ...string) {
	t.Helper()
	// Shims exit and unmount shortly after the last task is deleted.
	hulltest.Eventually(t, 10*time.Second, "the test's mounts, shims and FIFOs to go", func() error {
		if leaks := findLeaks(d, extraDirs); len(leaks) > 0 {
			return fmt.Errorf("leaks after the test:\n%s", strings.Join(leaks, "\n"))
		}
		return nil
	})
}

func findLeaks(d *hulltest.Daemon, extraDirs []string) []string {
	var leaks []string
	for _, dir := range append([]string{d.Root, d.State}, extraDirs...) {
		ms, _ := mount.MountedUnder(dir)
		for _, m := range ms {
			if strings.Contains(m, "io.containerd.runtime.v2.task") {
				leaks = append(leaks, "mount "+m)
			}
		}
		filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.Type()&fs.ModeNamedPipe != 0 {
				leaks = append(leaks, "fifo "+p)
			}
			return nil
		})
	}
	for _, pid := range hulltest.ShimPIDs(d.Address) {
		leaks = append(leaks, fmt.Sprintf("shim pid %d", pid))
	}
	return leaks
}

// TestCtrRunAndTasks drives the tasks service with Debian's ctr, under
// each runtime: run --rm, run -d, tasks ls/exec/ps/metrics/pause/resume/
// kill/delete, containers ls/info/rm.
func TestCtrRunAndTasks(t *testing.T) {
	hulltest.RequireCtr(t)
	for _, rt := range taskRuntimes(t) {
		t.Run(rt, func(t *testing.T) {
			d := startForTasks(t, hulltest.Options{})
			ref := "example.test/busybox:run"
			importWithCtr(t, d, "run", ref, busyboxImage(t))
			c := newCtrTask(t, d, "run", rt)

			if out := c.ok(t, "run", "--rm", ref, "hi1", "echo", "hi"); strings.TrimSpace(out) != "hi" {
				t.Fatalf("ctr run --rm echo hi printed %q", out)
			}
			out, err := c.run("run", "--rm", ref, "exit3", "sh", "-c", "exit 3")
			if err == nil || !strings.Contains(err.Error(), "exit status 3") {
				t.Fatalf("ctr run of a command exiting 3: %v\n%s", err, out)
			}

			c.ok(t, "run", "-d", ref, "long", "sleep", "600")
			c.waitStatus(t, "long", "RUNNING")
			// hull's shim speaks task API v3 to hulld (its bootstrap JSON
			// says so), Debian's 1.6 runc shim v2.
			rec, err := os.ReadFile(filepath.Join(d.State, "io.containerd.runtime.v2.task", "run", "long", "hull-shim.json"))
			wantVersion := map[string]string{"io.containerd.hull.v2": `"version":3`, "io.containerd.runc.v2": `"version":2`}[rt]
			if err != nil || !strings.Contains(string(rec), wantVersion) {
				t.Fatalf("shim record %s (%v): want %s", rec, err, wantVersion)
			}
			if out := c.ok(t, "tasks", "exec", "--exec-id", "e1", "long", "echo", "from-exec"); strings.TrimSpace(out) != "from-exec" {
				t.Fatalf("tasks exec printed %q", out)
			}
			if out, err := c.run("tasks", "exec", "--exec-id", "e2", "long", "sh", "-c", "exit 5"); err == nil {
				t.Fatalf("exec exiting 5 succeeded: %s", out)
			}
			ps := c.ok(t, "tasks", "ps", "long")
			if len(strings.Split(strings.TrimSpace(ps), "\n")) < 2 {
				t.Fatalf("tasks ps lists no process:\n%s", ps)
			}
			if m := c.ok(t, "tasks", "metrics", "long"); !strings.Contains(m, "memory") || !strings.Contains(m, "pids") {
				t.Fatalf("tasks metrics shows no memory or pids statistics:\n%s", m)
			}
			c.ok(t, "tasks", "pause", "long")
			c.waitStatus(t, "long", "PAUSED")
			c.ok(t, "tasks", "resume", "long")
			c.waitStatus(t, "long", "RUNNING")
			if info := c.ok(t, "containers", "info", "long"); !strings.Contains(info, rt) {
				t.Fatalf("containers info does not name runtime %s:\n%s", rt, info)
			}

			// Deleting a running task is refused; kill, then delete.
			if out, err := c.run("tasks", "rm", "long"); err == nil {
				t.Fatalf("deleting a running task succeeded: %s", out)
			}
			c.ok(t, "tasks", "kill", "-s", "SIGKILL", "long")
			c.waitStatus(t, "long", "STOPPED")
			c.ok(t, "tasks", "rm", "long")
			if out, err := c.run("tasks", "kill", "long"); err == nil || !strings.Contains(out, "not found") {
				t.Fatalf("kill of a deleted task: %v %s", err, out)
			}
			c.ok(t, "containers", "rm", "long")
			if ls := c.ok(t, "containers", "ls", "-q"); strings.TrimSpace(ls) != "" {
				t.Fatalf("containers left: %s", ls)
			}
			assertNoLeaks(t, d)
		})
	}
}

// TestTaskBadInput: the errors ctr gets name what is wrong, and nothing
// is left behind.
func TestTaskBadInput(t *testing.T) {
	hulltest.RequireCtr(t)
	for _, rt := range taskRuntimes(t) {
		t.Run(rt, func(t *testing.T) {
			d := startForTasks(t, hulltest.Options{})
			ref := "example.test/busybox:bad"
			importWithCtr(t, d, "bad", ref, busyboxImage(t))
			c := newCtrTask(t, d, "bad", rt)

			// runc's own message reaches the client.
			out, err := c.run("run", "--rm", ref, "noexe", "/no/such/binary")
			if err == nil || !strings.Contains(out, "/no/such/binary") || !strings.Contains(out, "no such file or directory") {
				t.Fatalf("running a missing executable: %v\n%s", err, out)
			}
			// With --rm, ctr removes the container whose task failed.
			if out := c.ok(t, "containers", "ls", "-q"); strings.TrimSpace(out) != "" {
				t.Fatalf("containers left after a failed run --rm: %s", out)
			}

			// A runtime without a binary names the binary and PATH.
			out, err = c.d.CtrErr(nil, "-n", "bad", "run", "--fifo-dir", c.fifos, "--runtime", "io.containerd.nosuch.v9", ref, "nort", "true")
			if err == nil || !strings.Contains(out, "containerd-shim-nosuch-v9") || !strings.Contains(out, "PATH=") {
				t.Fatalf("unknown runtime: %v\n%s", err, out)
			}
			c.ok(t, "containers", "rm", "nort")

			// Duplicate exec id; SIGTERM handled without exiting, SIGKILL
			// works. The handler leaves a file in a directory of the
			// test's, which says when SIGTERM has arrived.
			marks := t.TempDir()
			c.ok(t, "run", "-d", "--mount", "type=bind,src="+marks+",dst=/marks,options=rbind:rw", ref, "stubborn",
				"sh", "-c", "trap ': > /marks/got-term' TERM; while true; do sleep 0.2; done")
			c.waitStatus(t, "stubborn", "RUNNING")
			c.ok(t, "tasks", "exec", "-d", "--exec-id", "dup", "stubborn", "sleep", "30")
			if out, err := c.run("tasks", "exec", "-d", "--exec-id", "dup", "stubborn", "sleep", "30"); err == nil || !strings.Contains(out, "dup") {
				t.Fatalf("duplicate exec id: %v\n%s", err, out)
			}
			c.ok(t, "tasks", "kill", "-s", "SIGTERM", "stubborn")
			hulltest.Eventually(t, 10*time.Second, "task stubborn to handle SIGTERM", func() error {
				_, err := os.Stat(filepath.Join(marks, "got-term"))
				return err
			})
			if s := c.taskStatus(t, "stubborn"); s != "RUNNING" {
				t.Fatalf("task that handled SIGTERM without exiting is %s", s)
			}
			c.ok(t, "tasks", "kill", "-a", "-s", "SIGKILL", "stubborn")
			c.waitStatus(t, "stubborn", "STOPPED")
			if out, err := c.run("tasks", "kill", "stubborn"); err == nil || !strings.Contains(out, "not found") {
				t.Fatalf("kill of a stopped task: %v\n%s", err, out)
			}
			c.ok(t, "tasks", "rm", "stubborn")
			c.ok(t, "containers", "rm", "stubborn")

			// A shim that crashes: the task is reported stopped and its
			// bundle is cleaned up.
			c.ok(t, "run", "-d", ref, "crash", "sleep", "600")
			c.waitStatus(t, "crash", "RUNNING")
			pids := hulltest.ShimPIDs(d.Address)
			if len(pids) != 1 {
				t.Fatalf("want one shim, found %v", pids)
			}
			if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			c.waitStatus(t, "crash", "STOPPED")
			if _, err := os.Stat(filepath.Join(d.State, "io.containerd.runtime.v2.task", "bad", "crash")); !os.IsNotExist(err) {
				t.Fatalf("bundle of the crashed shim's task is still there: %v", err)
			}
			c.ok(t, "tasks", "rm", "crash")
			c.ok(t, "containers", "rm", "crash")
			assertNoLeaks(t, d)
		})
	}
}

// TestRestartKeepsContainers: containers survive hulld's SIGKILL; after
// the restart the running ones can be exec'd into and killed, and those
// that exited meanwhile report their real exit codes.
func TestRestartKeepsContainers(t *testing.T) {
	hulltest.RequireCtr(t)
	rts := taskRuntimes(t)
	rt := rts[len(rts)-1]
	dir := t.TempDir()
	d := startForTasks(t, hulltest.Options{Dir: dir})
	ref := "example.test/busybox:restart"
	importWithCtr(t, d, "rs", ref, busyboxImage(t))
	c := newCtrTask(t, d, "rs", rt)
	for i := 0; i < 8; i++ {
		c.ok(t, "run", "-d", ref, fmt.Sprintf("live%d", i), "sleep", "600")
	}
	// These two exit while hulld is down, with codes 3 and 4: they wait
	// for a file the test creates once hulld is dead.
	trigger := t.TempDir()
	var dying []int
	for i := 0; i < 2; i++ {
		id := fmt.Sprintf("dies%d", i)
		c.ok(t, "run", "-d", "--mount", "type=bind,src="+trigger+",dst=/trigger,options=rbind:ro", ref, id,
			"sh", "-c", fmt.Sprintf("while [ ! -e /trigger/exit ]; do sleep 0.1; done; exit %d", i+3))
		c.waitStatus(t, id, "RUNNING")
		dying = append(dying, c.taskPID(t, id))
	}
	d.Kill()
	if err := os.WriteFile(filepath.Join(trigger, "exit"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for i, pid := range dying {
		hulltest.Eventually(t, 10*time.Second, fmt.Sprintf("task dies%d (pid %d) to exit while hulld is down", i, pid), func() error {
			if !hulltest.ProcessExited(pid) {
				return fmt.Errorf("pid %d still running", pid)
			}
			return nil
		})
	}
	d2 := startForTasks(t, hulltest.Options{Dir: dir})
	c.d = d2
	for i := 0; i < 8; i++ {
		id := fmt.Sprintf("live%d", i)
		if s := c.taskStatus(t, id); s != "RUNNING" {
			t.Fatalf("%s is %q after the restart", id, s)
		}
	}
	for i := 0; i < 2; i++ {
		id := fmt.Sprintf("dies%d", i)
		c.waitStatus(t, id, "STOPPED")
		// ctr warns of the exit code and succeeds.
		out := c.ok(t, "tasks", "rm", id)
		if !strings.Contains(out, fmt.Sprintf("exit code %d", i+3)) {
			t.Fatalf("tasks rm %s: want exit code %d, got %q", id, i+3, out)
		}
		c.ok(t, "containers", "rm", id)
	}
	if out := c.ok(t, "tasks", "exec", "--exec-id", "after", "live0", "echo", "still-here"); strings.TrimSpace(out) != "still-here" {
		t.Fatalf("exec after restart printed %q", out)
	}
	for i := 0; i < 8; i++ {
		id := fmt.Sprintf("live%d", i)
		c.ok(t, "tasks", "kill", "-s", "SIGKILL", id)
		c.waitStatus(t, id, "STOPPED")
		c.ok(t, "tasks", "rm", id)
		c.ok(t, "containers", "rm", id)
	}
	assertNoLeaks(t, d2)
}

// procArgs returns the command line of pid.
func procArgs(pid int) []string {
	cmd, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
}
