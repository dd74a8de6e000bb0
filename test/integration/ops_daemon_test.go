package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	versionapi "github.com/containerd/containerd/api/services/version/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/internal/hulltest"
)

// notifySocket is a service manager's end of sd_notify: it records each
// datagram with what the test saw the moment it arrived.
type notifySocket struct {
	path string
	conn *net.UnixConn
	// onReady runs in the reader as soon as READY=1 arrives, before the
	// next datagram is read: what it checks holds at that instant.
	onReady func() error

	mu       sync.Mutex
	messages []string
	readyErr error
	got      chan string
	done     chan struct{}
}

func newNotifySocket(t *testing.T, dir string, onReady func() error) *notifySocket {
	t.Helper()
	n := &notifySocket{path: filepath.Join(dir, "notify"), onReady: onReady, got: make(chan string, 64), done: make(chan struct{})}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n.conn = c
	go func() {
		defer close(n.done)
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			msg := string(buf[:k])
			if strings.Contains(msg, "READY=1") && n.onReady != nil {
				err := n.onReady()
				n.mu.Lock()
				n.readyErr = err
				n.mu.Unlock()
			}
			n.mu.Lock()
			n.messages = append(n.messages, msg)
			n.mu.Unlock()
			select {
			case n.got <- msg:
			default:
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-n.done })
	return n
}

// wait returns the first datagram holding want, failing after timeout.
func (n *notifySocket) wait(t *testing.T, want string, timeout time.Duration, exited <-chan struct{}) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case msg := <-n.got:
			if strings.Contains(msg, want) {
				return msg
			}
		case <-exited:
			// What it sent before exiting is still in the channel.
			select {
			case msg := <-n.got:
				if strings.Contains(msg, want) {
					return msg
				}
				continue
			default:
			}
			t.Fatalf("hulld exited without sending %q (got %q)", want, n.all())
		case <-deadline:
			t.Fatalf("no %q within %v (got %q)", want, timeout, n.all())
		}
	}
}

func (n *notifySocket) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.messages...)
}

// opsDaemon is a hulld run with flags of the test's choosing.
type opsDaemon struct {
	address string
	cmd     *exec.Cmd
	log     hulltest.SyncBuffer
	exited  chan struct{}
}

func (d *opsDaemon) Write(p []byte) (int, error) { return d.log.Write(p) }

// Log is what hulld has written so far.
func (d *opsDaemon) Log() string { return d.log.String() }

// Ctr runs Debian's ctr against the daemon.
func (d *opsDaemon) Ctr(t testing.TB, stdin []byte, args ...string) string {
	t.Helper()
	cmd := exec.Command("ctr", append([]string{"--address", d.address}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ctr %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// startOps starts hulld with args and env; it is stopped (SIGTERM, then
// SIGKILL) when the test ends.
func startOps(t *testing.T, address string, env []string, args ...string) *opsDaemon {
	t.Helper()
	cmd := exec.Command(hulltest.Binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	return runOps(t, address, cmd)
}

// runOps starts hulld's command cmd (hulld itself, or a wrapper that
// execs it); it is stopped (SIGTERM, then SIGKILL) when the test ends.
func runOps(t *testing.T, address string, cmd *exec.Cmd) *opsDaemon {
	t.Helper()
	d := &opsDaemon{address: address, exited: make(chan struct{}), cmd: cmd}
	d.cmd.Stdout, d.cmd.Stderr = d, d
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(15 * time.Second):
			d.cmd.Process.Kill()
			<-d.exited
			t.Errorf("hulld did not stop within 15s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("hulld log:\n%s", d.Log())
		}
	})
	return d
}

func dialHulld(t *testing.T, address string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestOpsNotifyReadyWatchdogStopping is hulld under a service manager's
// eye: READY=1 (with STATUS) arrives only once the API, the ttrpc socket
// and the debug socket accept connections and the health service says
// SERVING; WATCHDOG=1 comes every half of WATCHDOG_USEC; SIGTERM brings
// STOPPING=1, and a health Watch stream hears NOT_SERVING.
func TestOpsNotifyReadyWatchdogStopping(t *testing.T) {
	dir, err := os.MkdirTemp("", "ops")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	address := filepath.Join(dir, "h.sock")
	debug := filepath.Join(dir, "debug.sock")
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte("version = 3\n[debug]\n  address = \""+debug+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var readyAt time.Time
	n := newNotifySocket(t, dir, func() error {
		// No retries: at READY=1 everything must answer at once.
		readyAt = time.Now()
		for _, sock := range []string{address, address + ".ttrpc", debug} {
			c, err := net.DialTimeout("unix", sock, time.Second)
			if err != nil {
				return fmt.Errorf("READY=1 before %s accepted: %v", sock, err)
			}
			c.Close()
		}
		conn, err := grpc.NewClient("unix://"+address, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := versionapi.NewVersionClient(conn).Version(ctx, &emptypb.Empty{}); err != nil {
			return fmt.Errorf("Version right after READY=1: %v", err)
		}
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("health right after READY=1: %v %v", resp, err)
		}
		return nil
	})
	start := time.Now()
	d := startOps(t, address, []string{"NOTIFY_SOCKET=" + n.path, "WATCHDOG_USEC=400000"},
		"--root", filepath.Join(dir, "root"), "--state", filepath.Join(dir, "state"), "--address", address, "--config", cfg)
	ready := n.wait(t, "READY=1", 30*time.Second, d.exited)
	if !strings.Contains(ready, "STATUS=serving on "+address) {
		t.Errorf("READY datagram %q lacks the STATUS line", ready)
	}
	n.mu.Lock()
	readyErr := n.readyErr
	n.mu.Unlock()
	if readyErr != nil {
		t.Fatal(readyErr)
	}
	t.Logf("READY=1 after %v", readyAt.Sub(start))
	// Watchdog pings every 200ms: two within a few seconds.
	n.wait(t, "WATCHDOG=1", 5*time.Second, d.exited)
	n.wait(t, "WATCHDOG=1", 5*time.Second, d.exited)

	// A Watch stream opened while serving hears NOT_SERVING on SIGTERM.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	watch, err := healthpb.NewHealthClient(dialHulld(t, address)).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first watched status %v, %v; want SERVING", r, err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	n.wait(t, "STOPPING=1", 10*time.Second, d.exited)
	if r, err := watch.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watched status after SIGTERM %v, %v; want NOT_SERVING", r, err)
	}
	cancel()
	select {
	case <-d.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("hulld did not exit after SIGTERM")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
	// READY came once, before every WATCHDOG, and STOPPING last.
	msgs := n.all()
	if len(msgs) < 4 || !strings.HasPrefix(msgs[0], "READY=1") || !strings.HasPrefix(msgs[len(msgs)-1], "STOPPING=1") {
		t.Errorf("notifications %q: want READY=1 first and STOPPING=1 last", msgs)
	}
}

// TestOpsSystemdRunNotify runs hulld as a Type=notify transient unit: the
// start returns only once hulld is ready, so the API answers at once.
func TestOpsSystemdRunNotify(t *testing.T) {
	if out, err := exec.Command("systemctl", "is-system-running").CombinedOutput(); err != nil &&
		!strings.Contains(string(out), "degraded") && !strings.Contains(string(out), "running") {
		t.Skipf("systemd is not managing this machine (systemctl is-system-running: %v: %s)", err, bytes.TrimSpace(out))
	}
	dir, err := os.MkdirTemp("", "ops")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	address := filepath.Join(dir, "h.sock")
	unit := "hull-ops-test-" + strconv.Itoa(os.Getpid())
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte("version = 3\n"), 0o600)
	out, err := exec.Command("systemd-run", "--unit", unit, "-p", "Type=notify", "-p", "NotifyAccess=main", "-p", "KillMode=process",
		hulltest.Binary(t), "--root", filepath.Join(dir, "root"), "--state", filepath.Join(dir, "state"), "--address", address, "--config", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-run: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("systemctl", "stop", unit).Run() })
	// No polling: systemd-run returned after READY=1.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := versionapi.NewVersionClient(dialHulld(t, address)).Version(ctx, &emptypb.Empty{}); err != nil {
		t.Fatalf("Version right after systemd-run returned: %v", err)
	}
}

// runHulldToExit runs hulld with args and returns its output and exit
// code; it fails the test if hulld is still running after 60s.
func runHulldToExit(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, hulltest.Binary(t), args...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("hulld %v still running after 60s:\n%s", args, out)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// TestOpsFailFastLockedMetadata: with the metadata database locked by
// another process hulld exits 1 naming the metadata plugin and the cause,
// not the plugins that need it, and never serves.
func TestOpsFailFastLockedMetadata(t *testing.T) {
	hulltest.RequireTools(t, "flock")
	dir := t.TempDir()
	db := filepath.Join(dir, "root", "io.containerd.metadata.v1.bolt", "meta.db")
	if err := os.MkdirAll(filepath.Dir(db), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(db, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	holder := exec.Command("flock", db, "sleep", "120")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	hulltest.Eventually(t, 10*time.Second, "flock to hold "+db, func() error {
		f, err := os.Open(db)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err == nil {
			syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			return fmt.Errorf("not locked yet")
		}
		return nil
	})
	cfg := filepath.Join(dir, "c.toml")
	os.WriteFile(cfg, []byte("version = 3\n"), 0o600)
	address := filepath.Join(dir, "state", "h.sock")
	out, code := runHulldToExit(t, "--root", filepath.Join(dir, "root"), "--state", filepath.Join(dir, "state"), "--address", address, "--config", cfg)
	if code == 0 || !strings.Contains(out, "hulld: plugin io.containerd.metadata.v1.bolt failed to start (needed by ") || !strings.Contains(out, db+": it is locked by another process (another hulld or containerd on this root?): timeout") {
		t.Fatalf("hulld with a locked database: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "hulld serving") || strings.Contains(out, "plugin failed to load") {
		t.Errorf("hulld served, or reported the cascade:\n%s", out)
	}
	if _, err := os.Stat(address); !os.IsNotExist(err) {
		t.Errorf("socket %s left: %v", address, err)
	}
}

// TestOpsBadValues: every value that stops hulld is refused by `hulld
// config check` with file:line:col, the key and the value, and stops
// hulld, before it serves, with the same words.
func TestOpsBadValues(t *testing.T) {
	for _, c := range []struct {
		name, file, want string
	}{
		{"gc delay", "[plugins.\"io.containerd.gc.v1.scheduler\"]\n  schedule_delay = \"soon\"\n",
			`:3:3: invalid value "soon" for 'plugins."io.containerd.gc.v1.scheduler".schedule_delay'`},
		{"gc startup", "[plugins.\"io.containerd.gc.v1.scheduler\"]\n  startup_delay = \"-1s\"\n",
			`:3:3: invalid value "-1s" for 'plugins."io.containerd.gc.v1.scheduler".startup_delay'`},
		{"reconcile", "[plugins.\"io.containerd.runtime.v2.task\"]\n  reconcile_interval = \"1 minute\"\n",
			`:3:3: invalid value "1 minute" for 'plugins."io.containerd.runtime.v2.task".reconcile_interval'`},
		{"runtime binary", "[plugins.\"io.containerd.runtime.v2.task\".runtimes.\"io.containerd.runc.v2\"]\n  binary = \"bin/shim\"\n",
			`:3:3: invalid value "bin/shim" for 'plugins."io.containerd.runtime.v2.task".runtimes."io.containerd.runc.v2".binary'`},
		{"parallel unpack", "[plugins.\"io.containerd.snapshotter.v1.overlayfs\"]\n  parallel_unpack = -2\n",
			`:3:3: invalid value -2 for 'plugins."io.containerd.snapshotter.v1.overlayfs".parallel_unpack'`},
		{"restart interval", "[plugins.\"io.containerd.monitor.container.v1.restart\"]\n  interval = \"soon\"\n",
			`:3:3: invalid value "soon" for 'plugins."io.containerd.monitor.container.v1.restart".interval'`},
		{"cri cgroup driver", "[plugins.\"io.containerd.cri.v1.runtime\"]\n  cgroup_driver = \"sysd\"\n",
			`:3:3: invalid value in 'plugins."io.containerd.cri.v1.runtime"': cgroup_driver "sysd"`},
		{"cri pull timeout", "[plugins.\"io.containerd.cri.v1.images\"]\n  image_pull_progress_timeout = \"soon\"\n",
			`:3:3: invalid value in 'plugins."io.containerd.cri.v1.images"': image_pull_progress_timeout "soon"`},
		{"cri idle timeout", "[plugins.\"io.containerd.grpc.v1.cri\"]\n  stream_idle_timeout = \"soon\"\n",
			`:3:3: invalid value in 'plugins."io.containerd.grpc.v1.cri"': stream_idle_timeout "soon"`},
		{"type error", "[plugins.\"io.containerd.snapshotter.v1.overlayfs\"]\n  parallel_unpack = \"four\"\n",
			`:3:3: invalid value for 'plugins."io.containerd.snapshotter.v1.overlayfs".parallel_unpack'`},
		{"oom score", "oom_score = 5000\n", `:2:1: invalid value 5000 for "oom_score"`},
		{"message size", "[grpc]\n  max_recv_message_size = -1\n",
			`:3:3: invalid value -1 for 'plugins."io.containerd.server.v1.grpc".max_recv_message_size'`},
		{"metrics address", "[metrics]\n  address = \"1338\"\n",
			`:3:3: invalid value "1338" for 'plugins."io.containerd.server.v1.metrics".address'`},
		{"required unknown", "required_plugins = [\"io.containerd.grpc.v1.nope\"]\n",
			`:2:1: invalid value "io.containerd.grpc.v1.nope" for "required_plugins": hull has no such plugin`},
		{"proxy address", "[proxy_plugins.fast]\n  type = \"snapshot\"\n",
			`:2:16: invalid value "" for "proxy_plugins.fast.address"`},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "-"), func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "config.toml")
			if err := os.WriteFile(cfg, []byte("version = 3\n"+c.file), 0o600); err != nil {
				t.Fatal(err)
			}
			want := cfg + c.want
			out, code := runHulldToExit(t, "config", "check", cfg)
			if code == 0 || !strings.Contains(out, "error: "+want) || strings.Contains(out, ": ok") {
				t.Fatalf("config check: exit %d, want the error %s\n%s", code, want, out)
			}
			address := filepath.Join(dir, "state", "h.sock")
			out, code = runHulldToExit(t, "--root", filepath.Join(dir, "root"), "--state", filepath.Join(dir, "state"), "--address", address, "--config", cfg)
			if code == 0 || !strings.Contains(out, want) || strings.Contains(out, "hulld serving") {
				t.Fatalf("hulld: exit %d, want the error %s before serving\n%s", code, want, out)
			}
			// Refused before anything started: no root, no socket.
			if _, err := os.Stat(filepath.Join(dir, "root")); !os.IsNotExist(err) {
				t.Errorf("root made before the config was checked: %v", err)
			}
		})
	}
}

// TestOpsShimSocketsUnderState: with the state directory where the
// socket directory used to be derived from the address (--state /x/s
// --address /x/h.sock), containers run, their shims' sockets are under
// <state>/s, and the shims do not inherit NOTIFY_SOCKET.
func TestOpsShimSocketsUnderState(t *testing.T) {
	hulltest.RequireCtr(t)
	if os.Geteuid() != 0 {
		t.Skip("runs containers: root only")
	}
	hulltest.RequireTools(t, "runc")
	rts := taskRuntimes(t)
	dir, err := os.MkdirTemp("", "ops")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	address := filepath.Join(dir, "h.sock")
	state := filepath.Join(dir, "s")
	n := newNotifySocket(t, dir, nil)
	d := startOps(t, address, []string{"NOTIFY_SOCKET=" + n.path},
		"--root", filepath.Join(dir, "root"), "--state", state, "--address", address, "--config", writeFile(t, dir, "config.toml", "version = 3\n"))
	n.wait(t, "READY=1", 30*time.Second, d.exited)
	ref := "example.test/busybox:ops"
	importWithCtr(t, d, "ops", ref, busyboxImage(t))
	fifos := filepath.Join(dir, "fifo")
	os.MkdirAll(fifos, 0o700)
	for _, rt := range rts {
		if rt != "io.containerd.hull.v2" {
			continue // Debian's 1.6 runc shim picks /run/containerd/s itself
		}
		id := "sock-" + strconv.Itoa(len(rt))
		if out := d.Ctr(t, nil, "-n", "ops", "run", "--rm", "--runtime", rt, "--fifo-dir", fifos, ref, id, "echo", "hi"); strings.TrimSpace(out) != "hi" {
			t.Fatalf("run --rm under %s printed %q", rt, out)
		}
		d.Ctr(t, nil, "-n", "ops", "run", "-d", "--runtime", rt, "--fifo-dir", fifos, ref, id+"d", "sleep", "60")
		ents, err := os.ReadDir(filepath.Join(state, "s"))
		if err != nil || len(ents) == 0 {
			t.Fatalf("no shim socket in %s: %v", filepath.Join(state, "s"), err)
		}
		pids := hulltest.ShimPIDs(address)
		if len(pids) == 0 {
			t.Fatalf("no shim of hulld at %s running", address)
		}
		for _, pid := range pids {
			env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
			if err == nil && bytes.Contains(env, []byte("NOTIFY_SOCKET=")) {
				t.Errorf("shim %d inherited NOTIFY_SOCKET", pid)
			}
		}
		d.Ctr(t, nil, "-n", "ops", "tasks", "kill", "-s", "KILL", id+"d")
		hulltest.Eventually(t, 10*time.Second, "task "+id+"d to stop", func() error {
			if out := d.Ctr(t, nil, "-n", "ops", "tasks", "ls"); strings.Contains(out, "RUNNING") {
				return fmt.Errorf("still running:\n%s", out)
			}
			return nil
		})
		d.Ctr(t, nil, "-n", "ops", "tasks", "rm", id+"d")
		d.Ctr(t, nil, "-n", "ops", "containers", "rm", id+"d")
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
