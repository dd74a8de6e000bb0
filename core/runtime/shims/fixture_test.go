package shims

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/core/runtime"
)

// TestMain runs the fake shim when the binary is started under a shim's
// name (fakeshim_test.go), and the tests otherwise.
func TestMain(m *testing.M) {
	if strings.HasPrefix(filepath.Base(os.Args[0]), "containerd-shim-") {
		os.Exit(fakeShimMain(os.Args[1:]))
	}
	// A fake shim's serving process outlives its start command. As the
	// subreaper, the test process inherits it instead of init, so that
	// reapShims can kill and reap it, and its pid is not reused meanwhile.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "become subreaper:", err)
		os.Exit(1)
	}
	// Under -race a program sleeps a second at exit (GORACE's
	// atexit_sleep_ms) by default; every fake start and delete command
	// would pay it. The shims inherit the test's environment.
	if gorace := os.Getenv("GORACE"); !strings.Contains(gorace, "atexit_sleep_ms") {
		os.Setenv("GORACE", strings.TrimSpace(gorace+" atexit_sleep_ms=0"))
	}
	os.Exit(m.Run())
}

const fakeRuntime = "io.containerd.fake.v2"

// fixture is one test's directories, fake shim binary and event recorder.
type fixture struct {
	t       *testing.T
	cfg     Config // what managers are made from; tests change copies
	sockDir string // holds hulld's (unused) address, so the shims' sockets
	binDir  string // holds shimBin
	shimBin string // the fake shim: a symlink to the test binary
	events  *recorder

	closers []func()    // of the managers, run first at cleanup
	procs   []*shimProc // the shims of tasks created, stopped next
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	// Shim sockets go beside the address, and must fit in sun_path (108
	// bytes), which t.TempDir's long names may not.
	sockDir, err := os.MkdirTemp("", "shims")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	t.Cleanup(func() { reapShims(t, sockDir) })
	f := &fixture{t: t, sockDir: sockDir, events: newRecorder()}
	// Managers close before shims are killed, so that they take no kill
	// for a crash and start no cleanup while the directories go.
	t.Cleanup(func() {
		for _, c := range f.closers {
			c()
		}
		for _, p := range f.procs {
			p.stop(t)
		}
	})
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	binDir := t.TempDir()
	shimBin := filepath.Join(binDir, "containerd-shim-fake-v2")
	if err := os.Symlink(self, shimBin); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f.binDir, f.shimBin = binDir, shimBin
	f.cfg = Config{
		Root: filepath.Join(dir, "root"), State: filepath.Join(dir, "state"),
		Address: filepath.Join(sockDir, "hulld.sock"), TTRPCAddress: filepath.Join(sockDir, "hulld.sock.ttrpc"),
		PublishBinary:  self,
		DefaultRuntime: fakeRuntime,
		Runtimes:       map[string]RuntimeConfig{fakeRuntime: {Binary: shimBin}},
		Publisher:      f.events,
		// Managers log from goroutines that may outlive a test.
		Log: slog.New(slog.DiscardHandler),
	}
	return f
}

// manager starts a manager from cfg, closed at the end of the test unless
// the test closes it with closeManager first.
func (f *fixture) manager(cfg Config) (m *Manager, closeManager func()) {
	f.t.Helper()
	m, err := New(f.t.Context(), cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	var once sync.Once
	closeManager = func() {
		once.Do(func() {
			if err := m.Close(); err != nil {
				f.t.Errorf("Close: %v", err)
			}
		})
	}
	f.closers = append(f.closers, closeManager)
	return m, closeManager
}

// spec is a valid OCI spec with the annotations that steer the fake shim.
func spec(annotations map[string]string) []byte {
	data, err := json.Marshal(map[string]any{
		"process":     map[string]any{"args": []string{"sh"}, "cwd": "/"},
		"root":        map[string]any{"path": "rootfs"},
		"annotations": annotations,
	})
	if err != nil {
		panic(err)
	}
	return data
}

// create creates task id in the namespace of ctx with the fake runtime and
// returns it with its shim process.
func (f *fixture) create(ctx context.Context, m *Manager, id string, annotations map[string]string) (runtime.Task, *shimProc) {
	f.t.Helper()
	task, err := m.Create(ctx, id, runtime.CreateOpts{Runtime: fakeRuntime, Spec: spec(annotations)})
	if err != nil {
		f.t.Fatalf("Create %s: %v", id, err)
	}
	ns, _ := namespaces.Namespace(ctx)
	return task, f.shimOf(m.cfg.State, ns, id)
}

func (f *fixture) bundle(ns, id string) string { return filepath.Join(f.cfg.State, ns, id) }

// shimProc is a shim's serving process, held by a pidfd so that signals
// and waits reach it and no process that later gets its pid.
type shimProc struct {
	pid, fd int
}

// shimOf opens the shim of a live task, from the pid its bundle records.
// It is stopped at the end of the test.
func (f *fixture) shimOf(state, ns, id string) *shimProc {
	f.t.Helper()
	data, err := os.ReadFile(filepath.Join(state, ns, id, "shim.pid"))
	if err != nil {
		f.t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		f.t.Fatal(err)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		f.t.Fatalf("shim of %s/%s (pid %d): %v", ns, id, pid, err)
	}
	p := &shimProc{pid: pid, fd: fd}
	f.procs = append(f.procs, p)
	return p
}

// stop kills the process and reaps it. A fake shim's serving process is
// the test process's child by then (see TestMain), so is hull's, which
// the manager launched itself; the manager reaps that one too, and
// whichever of the two waits first gets it (ECHILD for the other).
func (p *shimProc) stop(t *testing.T) {
	defer unix.Close(p.fd)
	p.kill(unix.SIGKILL)
	if !p.exited(10 * time.Second) {
		t.Errorf("shim pid %d survived SIGKILL", p.pid)
		return
	}
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PIDFD, p.fd, &info, unix.WEXITED, nil); err != nil && !errors.Is(err, unix.ECHILD) {
		t.Errorf("reap shim %d: %v", p.pid, err)
	}
}

// fakeShimByPidFile opens the last fake shim started for ns/id, from the
// pid its start command wrote beside the socket, when the bundle is gone.
// The process is the test process's unreaped child, so its pid is its own.
func (f *fixture) fakeShimByPidFile(ns, id string) *shimProc {
	f.t.Helper()
	data, err := os.ReadFile(fakeSocket(ns, f.cfg.Address, id) + ".pid")
	if err != nil {
		f.t.Fatal(err)
	}
	pid, err := strconv.Atoi(string(data))
	if err != nil {
		f.t.Fatal(err)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		f.t.Fatalf("fake shim of %s/%s (pid %d): %v", ns, id, pid, err)
	}
	p := &shimProc{pid: pid, fd: fd}
	f.procs = append(f.procs, p)
	return p
}

func (p *shimProc) kill(sig unix.Signal) {
	unix.PidfdSendSignal(p.fd, sig, nil, 0)
}

// stopped waits until the process is stopped by a signal: a signal is
// delivered some time after it is sent, and until then a SIGSTOPped shim
// still answers. The shim is this process's child (the test process is
// the shims' subreaper), so waitid on its pidfd reports the stop; WNOWAIT
// leaves the state for others to see.
func (p *shimProc) stopped(t *testing.T) {
	t.Helper()
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PIDFD, p.fd, &info, unix.WSTOPPED|unix.WNOWAIT, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatalf("wait for shim %d to stop: %v", p.pid, err)
		}
		return
	}
}

// exited waits up to timeout for the process to exit; a pidfd becomes
// readable then.
func (p *shimProc) exited(timeout time.Duration) bool {
	fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(timeout.Milliseconds()))
		if err == unix.EINTR {
			continue
		}
		return err == nil && n == 1
	}
}

// parentOf returns the parent pid of pid, or 0 if it is gone.
func parentOf(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces and parentheses: fields start
	// after the last ')'.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	if len(fields) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}

// reapShims kills and reaps the serving processes of the fake shims
// started with addresses in sockDir. Their start command exited, so they
// are children of the test process (the subreaper): a child's pid is not
// reused before its parent reaps it, so the parent check makes the kill by
// pid safe.
func reapShims(t *testing.T, sockDir string) {
	files, _ := filepath.Glob(filepath.Join(sockDir, "*.pid"))
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Error(err)
			continue
		}
		pid, err := strconv.Atoi(string(data))
		if err != nil || parentOf(pid) != os.Getpid() {
			continue // reaped already
		}
		unix.Kill(pid, unix.SIGKILL)
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
			t.Errorf("reap shim %d: %v", pid, err)
		}
	}
}

// recorder is an events.Publisher that keeps what it is given.
type recorder struct {
	mu      sync.Mutex
	events  []event
	changed chan struct{} // closed and replaced on every event
}

type event struct {
	ns, topic string
	ev        any
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{})} }

func (r *recorder) Publish(ctx context.Context, topic string, ev any) error {
	ns, _ := namespaces.Namespace(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{ns: ns, topic: topic, ev: ev})
	close(r.changed)
	r.changed = make(chan struct{})
	return nil
}

// all returns the events so far.
func (r *recorder) all() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// find returns the event of topic about container id in ns, if any.
func (r *recorder) find(ns, topic, id string) (event, bool) {
	for _, e := range r.all() {
		if e.ns == ns && e.topic == topic && eventContainer(e.ev) == id {
			return e, true
		}
	}
	return event{}, false
}

// wait returns the event of topic about container id in ns, waiting up to
// ten seconds for it.
func (r *recorder) wait(t *testing.T, ns, topic, id string) event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		changed := r.changed
		r.mu.Unlock()
		if e, ok := r.find(ns, topic, id); ok {
			return e
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("no %s event for %s/%s; got %v", topic, ns, id, r.all())
		}
	}
}

func eventContainer(ev any) string {
	switch e := ev.(type) {
	case *eventtypes.TaskExit:
		return e.ContainerID
	case *eventtypes.TaskDelete:
		return e.ContainerID
	}
	return ""
}

// exitStatus is the status an exit or delete event carries.
func exitStatus(ev any) uint32 {
	switch e := ev.(type) {
	case *eventtypes.TaskExit:
		return e.ExitStatus
	case *eventtypes.TaskDelete:
		return e.ExitStatus
	}
	return 0
}
