package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
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

// hullctlRuntimes are the shims hullctl run is tested under: Debian's runc
// shim and hull's own, built next to hulld, where hulld finds it.
func hullctlRuntimes(t *testing.T) []string {
	t.Helper()
	hulltest.Build(t, "containerd-shim-hull-v2", "github.com/hullrt/hull/cmd/containerd-shim-hull-v2")
	return []string{"io.containerd.runc.v2", "io.containerd.hull.v2"}
}

// runFixture is one hulld with the busybox image imported by hullctl (not
// unpacked, so that run unpacks it) into namespace ns.
type runFixture struct {
	t       *testing.T
	d       *hulltest.Daemon
	h       hullctlRunner
	ns, ref string
	runtime string
	fifos   string
}

func newRunFixture(t *testing.T, runtime string) *runFixture {
	d := startForTasks(t, hulltest.Options{})
	f := &runFixture{t: t, d: d, h: newHullctl(t, d), ns: "hr", ref: "example.test/busybox:run", runtime: runtime}
	f.fifos = filepath.Join(t.TempDir(), "fifo")
	var archive bytes.Buffer
	if err := testimage.WriteOCIArchive(&archive, f.ref, busyboxImage(t)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(path, archive.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	f.ok("images", "import", path)
	return f
}

// args puts the namespace first and, for commands that make processes,
// the runtime and the FIFO directory.
func (f *runFixture) args(args ...string) []string {
	out := []string{"-n", f.ns}
	switch {
	case len(args) > 0 && args[0] == "run":
		return append(append(out, "run", "--runtime", f.runtime, "--fifo-dir", f.fifos), args[1:]...)
	case len(args) > 1 && args[0] == "containers" && args[1] == "create":
		return append(append(out, "containers", "create", "--runtime", f.runtime), args[2:]...)
	case len(args) > 1 && args[0] == "tasks" && (args[1] == "exec" || args[1] == "start"):
		return append(append(out, "tasks", args[1], "--fifo-dir", f.fifos), args[2:]...)
	}
	return append(out, args...)
}

// run runs hullctl and returns its combined output and exit code.
func (f *runFixture) run(args ...string) (string, int) {
	f.t.Helper()
	out, err := f.h.run(f.args(args...)...)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out, ee.ExitCode()
	}
	if err != nil {
		f.t.Fatalf("hullctl %s: %v", strings.Join(args, " "), err)
	}
	return out, 0
}

func (f *runFixture) ok(args ...string) string {
	f.t.Helper()
	out, code := f.run(args...)
	if code != 0 {
		f.t.Fatalf("hullctl %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// fails expects exit code 1 and an output that mentions each of wants.
func (f *runFixture) fails(wants []string, args ...string) string {
	f.t.Helper()
	out, code := f.run(args...)
	if code != 1 {
		f.t.Fatalf("hullctl %s: exit %d, want 1\n%s", strings.Join(args, " "), code, out)
	}
	for _, w := range wants {
		if !strings.Contains(out, w) {
			f.t.Errorf("hullctl %s: output does not mention %q:\n%s", strings.Join(args, " "), w, out)
		}
	}
	return out
}

// status returns the STATUS column of tasks ls for id ("" if not listed).
func (f *runFixture) status(id string) string {
	f.t.Helper()
	for _, line := range strings.Split(f.ok("tasks", "ls"), "\n") {
		if fl := strings.Fields(line); len(fl) == 3 && fl[0] == id {
			return fl[2]
		}
	}
	return ""
}

// waitStatus waits until `hullctl tasks ls` shows task id in status want.
func (f *runFixture) waitStatus(id, want string) {
	f.t.Helper()
	hulltest.Eventually(f.t, 20*time.Second, fmt.Sprintf("task %s to be %s", id, want), func() error {
		if got := f.status(id); got != want {
			return fmt.Errorf("hullctl tasks ls shows it %q", got)
		}
		return nil
	})
}

// checkClean: no container left and no snapshot but the image's layers.
func (f *runFixture) checkClean() {
	f.t.Helper()
	if ls := strings.TrimSpace(f.ok("containers", "ls", "-q")); ls != "" {
		f.t.Fatalf("containers left: %s", ls)
	}
	for _, key := range strings.Fields(f.ok("snapshots", "ls", "-q")) {
		if !strings.HasPrefix(key, "sha256:") {
			f.t.Fatalf("snapshot %q left behind", key)
		}
	}
	assertNoLeaks(f.t, f.d, f.fifos)
}

func TestHullctlRun(t *testing.T) {
	for _, rt := range hullctlRuntimes(t) {
		t.Run(rt, func(t *testing.T) {
			f := newRunFixture(t, rt)
			ref := f.ref

			if out := f.ok("run", "--rm", "--name", "hi", ref, "echo", "hi"); out != "hi\n" {
				t.Fatalf("run --rm echo hi printed %q", out)
			}
			if out, code := f.run("run", "--rm", "--name", "seven", ref, "sh", "-c", "exit 7"); code != 7 || out != "" {
				t.Fatalf("run of exit 7: exit %d, output %q", code, out)
			}
			// --name takes the id out of the arguments.
			if out := f.ok("run", "--rm", "--name", "named", ref, "hostname"); out != "named\n" {
				t.Fatalf("run --name: hostname %q", out)
			}

			envFile := filepath.Join(t.TempDir(), "env")
			if err := os.WriteFile(envFile, []byte("# a comment\n\nFROMFILE=file value\nFOO=overridden\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			out := f.ok("run", "--rm", "--env", "FOO=bar,baz", "--env-file", envFile, "--cwd", "/tmp", "--user", "1000:1000",
				"--name", "env1", ref, "sh", "-c", `echo "$FOO|$FROMFILE"; pwd; id`)
			if want := "bar,baz|file value\n/tmp\nuid=1000 gid=1000"; !strings.HasPrefix(out, want) {
				t.Fatalf("env, cwd and user: got %q, want %q...", out, want)
			}

			if out, code := f.run("run", "--rm", "--read-only", "--name", "ro", ref, "sh", "-c", "busybox touch /x"); code == 0 || !strings.Contains(out, "Read-only file system") {
				t.Fatalf("touch in a read-only root: exit %d\n%s", code, out)
			}
			if out := f.ok("run", "--rm", "--name", "rw", ref, "sh", "-c", "busybox touch /x && echo touched"); out != "touched\n" {
				t.Fatalf("touch in a writable root: %q", out)
			}

			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("from the host\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if out := f.ok("run", "--rm", "--mount", "type=bind,src="+dir+",dst=/data,options=rbind:ro", "--name", "mnt", ref, "cat", "/data/hello.txt"); out != "from the host\n" {
				t.Fatalf("bind mount: %q", out)
			}
			if out, code := f.run("run", "--rm", "--mount", "src="+dir+",dst=/data,options=ro", "--name", "mntro", ref, "sh", "-c", "busybox touch /data/new"); code == 0 || !strings.Contains(out, "Read-only") {
				t.Fatalf("write to a read-only bind mount: exit %d\n%s", code, out)
			}

			out = f.ok("run", "--rm", "--memory-limit", "64m", "--cpus", "0.5", "--name", "mem", ref, "sh", "-c",
				"cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max")
			if strings.TrimSpace(out) != "67108864" {
				t.Fatalf("memory limit inside the container: %q", out)
			}

			ifaces := func(out string) []string {
				var names []string
				for _, l := range strings.Split(out, "\n") {
					if name, _, ok := strings.Cut(l, ":"); ok {
						names = append(names, strings.TrimSpace(name))
					}
				}
				return names
			}
			if got := ifaces(f.ok("run", "--rm", "--name", "net", ref, "cat", "/proc/net/dev")); len(got) != 1 || got[0] != "lo" {
				t.Fatalf("default network namespace has interfaces %v, want only lo", got)
			}
			if got := ifaces(f.ok("run", "--rm", "--net-host", "--name", "nethost", ref, "cat", "/proc/net/dev")); len(got) < 2 {
				t.Fatalf("--net-host sees interfaces %v, want the host's", got)
			}

			f.ok("run", "--rm", "--privileged", "--name", "priv", ref, "true")
			f.ok("run", "--rm", "--seccomp", "--no-new-privileges", "--name", "secc", ref, "true")

			// Detached, then every tasks and containers command.
			if out := f.ok("run", "-d", "--label", "team=infra", "--name", "long", ref, "sleep", "600"); out != "long\n" {
				t.Fatalf("run -d printed %q", out)
			}
			f.waitStatus("long", "RUNNING")
			if out := f.ok("tasks", "exec", "--exec-id", "e1", "long", "echo", "from-exec"); out != "from-exec\n" {
				t.Fatalf("tasks exec printed %q", out)
			}
			if _, code := f.run("tasks", "exec", "long", "sh", "-c", "exit 5"); code != 5 {
				t.Fatalf("exec of exit 5: hullctl exited %d", code)
			}
			if out := f.ok("tasks", "exec", "--user", "nobody", "--cwd", "/tmp", "--env", "X=y", "long", "sh", "-c", `id -u; pwd; echo $X`); out != "65534\n/tmp\ny\n" {
				t.Fatalf("exec --user --cwd --env: %q", out)
			}
			ps := f.ok("tasks", "ps", "long")
			if l := strings.Split(strings.TrimSpace(ps), "\n"); len(l) < 2 || !strings.HasPrefix(l[0], "PID") {
				t.Fatalf("tasks ps:\n%s", ps)
			}
			m := f.ok("tasks", "metrics", "long")
			if !strings.Contains(m, "memory") || !strings.Contains(m, "pids.current") {
				t.Fatalf("tasks metrics:\n%s", m)
			}
			if js := f.ok("tasks", "metrics", "--format", "json", "long"); !strings.Contains(js, `"io.containerd.cgroups.v`) {
				t.Fatalf("tasks metrics --format json:\n%s", js)
			}
			f.ok("tasks", "pause", "long")
			f.waitStatus("long", "PAUSED")
			f.ok("tasks", "resume", "long")
			f.waitStatus("long", "RUNNING")

			if ls := f.ok("containers", "ls"); !strings.Contains(ls, "long") || !strings.Contains(ls, rt) || !strings.Contains(ls, ref) {
				t.Fatalf("containers ls:\n%s", ls)
			}
			if info := f.ok("containers", "info", "long"); !strings.Contains(info, rt) || !strings.Contains(info, `"sleep"`) || !strings.Contains(info, "team") {
				t.Fatalf("containers info:\n%s", info)
			}
			// run -d labelled it with its log file too.
			if out := f.ok("containers", "label", "long", "tier=gold", "team"); !strings.HasSuffix(out, ",tier=gold\n") || strings.Contains(out, "team=") || !strings.Contains(out, "io.hull.log-uri=file://") {
				t.Fatalf("containers label printed %q", out)
			}
			f.fails([]string{"long", "kill it first"}, "tasks", "rm", "long")
			f.fails([]string{"long", "task"}, "containers", "rm", "long")
			f.ok("tasks", "kill", "-s", "SIGKILL", "long")
			f.waitStatus("long", "STOPPED")
			f.ok("tasks", "rm", "long")
			f.fails([]string{"long", "no task"}, "tasks", "kill", "long")
			f.ok("containers", "rm", "long")

			// containers create + tasks start, attached.
			f.ok("containers", "create", ref, "made", "sh", "-c", "echo started; exit 3")
			if out, code := f.run("tasks", "start", "made"); code != 3 || out != "started\n" {
				t.Fatalf("tasks start: exit %d, %q", code, out)
			}
			f.ok("containers", "rm", "made")

			f.checkClean()
		})
	}
}

// TestHullctlRunSignals: SIGINT to an attached run reaches the container;
// one that handles it exits with its own code, one that ignores it is
// killed after --stop-timeout; --rm leaves nothing either way.
func TestHullctlRunSignals(t *testing.T) {
	rts := hullctlRuntimes(t)
	for _, rt := range rts {
		t.Run(rt, func(t *testing.T) {
			f := newRunFixture(t, rt)
			for _, c := range []struct {
				id    string
				cmd   []string
				ready string // printed once the process is ready for SIGINT
				codes []int
			}{
				{"trapper", []string{"sh", "-c", "trap 'exit 130' INT; echo ready; while true; do sleep 0.1; done"}, "ready\n", []int{130}},
				// sleep, as the container's PID 1, has no handler, so
				// the kernel drops SIGINT: ready as soon as it runs.
				{"ignorer", []string{"sleep", "600"}, "", []int{137}},
			} {
				cmd := exec.Command(f.h.bin, append([]string{"--address", f.d.Address},
					f.args(append([]string{"run", "--rm", "--stop-timeout", "2s", "--name", c.id, f.ref}, c.cmd...)...)...)...)
				var out lockedBuffer
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				f.waitStatus(c.id, "RUNNING")
				// The trap is set once the container says so through
				// hullctl's output.
				hulltest.Eventually(t, 20*time.Second, fmt.Sprintf("%s to print %q", c.id, c.ready), func() error {
					if !strings.Contains(out.String(), c.ready) {
						return fmt.Errorf("hullctl run printed %q", out.String())
					}
					return nil
				})
				if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
					t.Fatalf("%s: SIGINT to hullctl run: %v", c.id, err)
				}
				var err error
				select {
				case err = <-done:
				case <-time.After(30 * time.Second):
					cmd.Process.Kill()
					t.Fatalf("%s: hullctl run did not exit after SIGINT\n%s", c.id, out.String())
				}
				code := 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					code = ee.ExitCode()
				}
				okCode := false
				for _, want := range c.codes {
					okCode = okCode || code == want
				}
				if !okCode {
					t.Fatalf("%s: hullctl run exited %d after SIGINT, want one of %v\n%s", c.id, code, c.codes, out.String())
				}
				if s := f.status(c.id); s != "" {
					t.Fatalf("%s: task still listed as %s", c.id, s)
				}
			}
			f.checkClean()
		})
	}
}

// TestHullctlRunTerminal drives run -t through a pseudo-terminal: the
// process gets a terminal of the outer one's size. hullctl sets the size
// once the process has started, so the process polls for it (for up to
// 10s) before printing it.
func TestHullctlRunTerminal(t *testing.T) {
	rts := hullctlRuntimes(t)
	for _, rt := range rts {
		t.Run(rt, func(t *testing.T) {
			f := newRunFixture(t, rt)
			master, slave, err := openPty()
			if err != nil {
				t.Fatalf("no pty, not even a private devpts: %v", err)
			}
			defer master.Close()
			if err := setWinsize(slave, 33, 111); err != nil {
				t.Fatal(err)
			}
			script := `busybox tty; i=0; while [ "$(busybox stty size)" != "33 111" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; busybox stty size; exit 4`
			cmd := exec.Command(f.h.bin, append([]string{"--address", f.d.Address},
				f.args("run", "--rm", "-t", "--name", "tty1", f.ref, "sh", "-c", script)...)...)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			slave.Close()
			var out bytes.Buffer
			copied := make(chan struct{})
			go func() { io.Copy(&out, master); close(copied) }()
			werr := cmd.Wait()
			select {
			case <-copied:
			case <-time.After(5 * time.Second):
			}
			var ee *exec.ExitError
			if !errors.As(werr, &ee) || ee.ExitCode() != 4 {
				t.Fatalf("run -t: %v, want exit 4\n%q", werr, out.String())
			}
			if !strings.Contains(out.String(), "/dev/pts/0") || !strings.Contains(out.String(), "33 111") {
				t.Fatalf("run -t: no terminal of the right size:\n%q", out.String())
			}
			f.checkClean()
		})
	}
}

// TestHullctlRunTerminalPipedInput gives run -t input from a pipe, as a
// script does: the process gets a terminal all the same, reads the input
// from it and sees its end (^D), with or without a last newline, so that
// cat and sh end instead of waiting forever.
func TestHullctlRunTerminalPipedInput(t *testing.T) {
	for _, rt := range hullctlRuntimes(t) {
		t.Run(rt, func(t *testing.T) {
			f := newRunFixture(t, rt)
			for i, c := range []struct {
				stdin, script, want string
			}{
				{"abc\ndef", "cat; echo; echo cat-ended", "cat-ended"},
				{"abc\n", "cat; echo cat-ended", "cat-ended"},
				{"", "cat; echo cat-ended", "cat-ended"},
				{"line1\n", "read x; busybox tty; echo got-$x", "got-line1"},
			} {
				cmd := exec.Command(f.h.bin, append([]string{"--address", f.d.Address},
					f.args("run", "--rm", "-t", "--name", fmt.Sprintf("piped%d", i), f.ref, "sh", "-c", c.script)...)...)
				cmd.Stdin = strings.NewReader(c.stdin)
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case err := <-done:
					if err != nil {
						t.Fatalf("%q with input %q: %v\n%q", c.script, c.stdin, err, out.String())
					}
				case <-time.After(30 * time.Second):
					cmd.Process.Kill()
					<-done
					t.Fatalf("%q with input %q: still running after 30s (the end of the input never reached it)\n%q", c.script, c.stdin, out.String())
				}
				if !strings.Contains(out.String(), c.want) {
					t.Fatalf("%q with input %q: no %q in %q", c.script, c.stdin, c.want, out.String())
				}
				if strings.Contains(c.stdin, "def") && strings.Count(out.String(), "def") < 2 {
					t.Fatalf("cat did not give back the unterminated last line (the terminal echoes it once, cat once more): %q", out.String())
				}
				if strings.HasPrefix(c.script, "read") && !strings.Contains(out.String(), "/dev/pts/") {
					t.Fatalf("no terminal: %q", out.String())
				}
			}
			f.checkClean()
		})
	}
}

// setWinsize sets a terminal's size.
func setWinsize(f *os.File, rows, cols uint16) error {
	return unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
}

func TestHullctlRunBadInput(t *testing.T) {
	f := newRunFixture(t, "io.containerd.runc.v2")
	ref := f.ref
	// --pull=never keeps ctr's behaviour: no image, no container.
	f.fails([]string{"example.test/nosuch:1", "not found"}, "run", "--rm", "--pull=never", "example.test/nosuch:1", "true")
	f.fails([]string{"docker.io/library/nosuch:latest", "not found"}, "run", "--rm", "--pull=never", "nosuch", "true")
	f.ok("containers", "create", ref, "dup", "true")
	f.fails([]string{`"dup"`, "already exists"}, "run", "--rm", "--name", "dup", ref, "true")
	f.fails([]string{`"dup"`, "already exists"}, "containers", "create", ref, "dup", "true")
	f.ok("containers", "rm", "dup")
	f.fails([]string{"type=bind,src=/tmp", "no dst"}, "run", "--rm", "--mount", "type=bind,src=/tmp", "--name", "m", ref, "true")
	f.fails([]string{"bogus", "KEY=VALUE"}, "run", "--rm", "--mount", "bogus", "--name", "m", ref, "true")
	f.fails([]string{"dst", "relative"}, "run", "--rm", "--mount", "src=/tmp,dst=relative", "--name", "m", ref, "true")
	f.fails([]string{"12q"}, "run", "--rm", "--memory-limit", "12q", "--name", "m", ref, "true")
	f.fails([]string{"-1"}, "run", "--rm", "--cpus", "-1", "--name", "m", ref, "true")
	f.fails([]string{"FOO"}, "run", "--rm", "--env", "FOO", "--name", "m", ref, "true")
	f.fails([]string{"usage"}, "run")
	f.fails([]string{"--rm", "--detach"}, "run", "--rm", "-d", "--name", "m", ref, "true")
	f.fails([]string{"nosuchuser"}, "run", "--rm", "--user", "nosuchuser", "--name", "m", ref, "true")
	// A detached task has no FIFOs to attach to; --log-file keeps its
	// output.
	logFile := filepath.Join(t.TempDir(), "out.log")
	f.ok("run", "-d", "--log-file", logFile, "--name", "quiet", ref, "sh", "-c", "echo to-the-log; sleep 600")
	f.waitStatus("quiet", "RUNNING")
	f.fails([]string{`"quiet"`, "no stdio FIFOs"}, "tasks", "attach", "quiet")
	hulltest.Eventually(t, 10*time.Second, "the task's output in --log-file "+logFile, func() error {
		b, err := os.ReadFile(logFile)
		if err == nil && !strings.Contains(string(b), "to-the-log") {
			err = fmt.Errorf("it holds %q", b)
		}
		return err
	})
	f.fails([]string{"--log-file", "--detach"}, "run", "--log-file", logFile, "--name", "m", ref, "true")
	f.ok("containers", "rm", "-f", "quiet")
	f.fails([]string{"ghost"}, "tasks", "kill", "ghost")
	f.fails([]string{"SIGNOPE"}, "tasks", "kill", "-s", "SIGNOPE", "ghost")
	f.fails([]string{"ghost"}, "containers", "info", "ghost")
	f.checkClean()
}

// TestHullctlDebugDump: the archive has hulld's stacks, its effective
// config, the plugins, the objects and, for a container under hull's shim,
// the shim's stacks; what a runc shim cannot give is said in README.txt.
func TestHullctlDebugDump(t *testing.T) {
	rts := hullctlRuntimes(t)
	f := newRunFixture(t, rts[0])
	for i, rt := range rts {
		f.runtime = rt
		f.ok("run", "-d", "--name", "dbg"+string(rune('0'+i)), f.ref, "sleep", "600")
	}
	out := filepath.Join(t.TempDir(), "dump.tar.gz")
	if got := f.ok("debug", "dump", "-o", out); !strings.Contains(got, out) {
		t.Fatalf("debug dump printed %q", got)
	}
	files := readTarGz(t, out)
	t.Logf("README.txt:\n%s", files["README.txt"])
	for _, name := range []string{"README.txt", "version.txt", "hulld/stacks.log", "hulld/events.log", "hulld/config.toml", "plugins.txt", "plugins.json", "objects.txt"} {
		if _, ok := files[name]; !ok {
			t.Errorf("dump has no %s; it has %v", name, keys(files))
		}
	}
	if s := files["hulld/stacks.log"]; !strings.Contains(s, "goroutine") {
		t.Errorf("hulld/stacks.log holds no goroutines:\n%.300s", s)
	}
	if s := files["plugins.txt"]; !strings.Contains(s, "introspection") {
		t.Errorf("plugins.txt:\n%s", s)
	}
	if s := files["objects.txt"]; !strings.Contains(s, "dbg0") || !strings.Contains(s, "namespace hr") {
		t.Errorf("objects.txt:\n%s", s)
	}
	// The machine agrees with hulld: each task's bundle and runc state
	// are there, and hulld lists them.
	m := files["machine.txt"]
	for i := range rts {
		id := "hr/dbg" + string(rune('0'+i))
		for _, kind := range []string{"bundle", "runc"} {
			if !regexp.MustCompile(`(?m)^` + kind + ` +` + id + ` .* listed$`).MatchString(m) {
				t.Errorf("machine.txt has no listed %s of %s:\n%s", kind, id, m)
			}
		}
	}
	if strings.Contains(m, "NOT LISTED") || strings.Contains(m, "MISSING") || strings.Contains(m, "stale") {
		t.Errorf("machine.txt shows a disagreement:\n%s", m)
	}
	for i, rt := range rts {
		id := "dbg" + string(rune('0'+i))
		found := false
		for name, data := range files {
			if strings.HasPrefix(name, "shims/hr/"+id+"/shim.") && strings.HasSuffix(name, ".stacks.log") && strings.Contains(data, "goroutine") {
				found = true
			}
		}
		switch {
		case rt == "io.containerd.hull.v2" && !found:
			t.Errorf("no shim stacks for %s (%s); files %v\nREADME:\n%s", id, rt, keys(files), files["README.txt"])
		case rt != "io.containerd.hull.v2" && !found && !strings.Contains(files["README.txt"], "hr/"+id):
			t.Errorf("README.txt does not say why the stacks of %s's shim are missing:\n%s", id, files["README.txt"])
		}
		f.ok("tasks", "rm", "-f", id)
		f.ok("containers", "rm", id)
	}
	f.checkClean()
}

func readTarGz(t *testing.T, path string) map[string]string {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	zr, err := gzip.NewReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read %s from the dump: %v", h.Name, err)
		}
		files[h.Name] = string(data)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
