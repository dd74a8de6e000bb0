package integration

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
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

	eventstypes "github.com/containerd/containerd/api/events"
	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/testimage"
)

// eventSink is a fake daemon events service: what a shim forwards to
// TTRPC_ADDRESS.
type eventSink struct {
	mu     sync.Mutex
	topics []string
	envs   []*types.Envelope
	// arrived is signalled after each event, for waitTopic.
	arrived chan struct{}
}

func (s *eventSink) Forward(ctx context.Context, r *eventsapi.ForwardRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	s.topics = append(s.topics, r.Envelope.Topic)
	s.envs = append(s.envs, r.Envelope)
	s.mu.Unlock()
	select {
	case s.arrived <- struct{}{}:
	default:
	}
	return &emptypb.Empty{}, nil
}

// waitTopic returns once an event of topic has arrived, woken by each
// arrival rather than polling.
func (s *eventSink) waitTopic(t *testing.T, topic string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		for _, tp := range s.seen() {
			if tp == topic {
				return
			}
		}
		select {
		case <-s.arrived:
		case <-deadline:
			t.Fatalf("no %s event within %s; events %v", topic, timeout, s.seen())
		}
	}
}

func (s *eventSink) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.topics...)
}

// directShim is what hulld's runtime manager does: a state directory laid
// out like containerd's, bundles made by hand, the shim started with
// start and driven over ttrpc.
type directShim struct {
	bin, state, address, ns string
	events                  *eventSink
	eventsAddr              string
}

func newDirectShim(t *testing.T) *directShim {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("root only")
	}
	hulltest.RequireTools(t, "runc")
	d := &directShim{
		bin:   hulltest.Build(t, "containerd-shim-hull-v2", "github.com/hullrt/hull/cmd/containerd-shim-hull-v2"),
		state: filepath.Join(t.TempDir(), "state"), ns: "direct", events: &eventSink{arrived: make(chan struct{}, 1)},
	}
	d.address = filepath.Join(d.state, "fake.sock")
	d.eventsAddr = d.address + ".ttrpc"
	os.MkdirAll(d.state, 0o711)
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	eventsapi.RegisterTTRPCEventsService(srv, d.events)
	l, err := net.Listen("unix", d.eventsAddr)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { srv.Close() })
	return d
}

// bundle writes a bundle for id with a busybox rootfs and spec edited by
// edit, where containerd would put it.
func (d *directShim) bundle(t *testing.T, id string, edit func(*specs.Spec)) string {
	t.Helper()
	b := filepath.Join(d.state, "io.containerd.runtime.v2.task", d.ns, id)
	rootfs := filepath.Join(b, "rootfs")
	if err := os.MkdirAll(rootfs, 0o711); err != nil {
		t.Fatal(err)
	}
	files, err := testimage.BusyboxFiles()
	if err != nil {
		t.Fatalf("busybox test image (make test installs busybox-static): %v", err)
	}
	for _, f := range files {
		p := filepath.Join(rootfs, f.Name)
		switch f.Type {
		case tar.TypeDir:
			os.MkdirAll(p, 0o755)
		case tar.TypeSymlink:
			os.Symlink(f.Linkname, p)
		default:
			mode := os.FileMode(f.Mode)
			if mode == 0 {
				mode = 0o644
			}
			os.WriteFile(p, f.Data, mode)
		}
	}
	if out, err := exec.Command("runc", "spec", "--bundle", b).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v\n%s", err, out)
	}
	raw, _ := os.ReadFile(filepath.Join(b, "config.json"))
	var spec specs.Spec
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	spec.Process.Terminal = false
	spec.Root.Readonly = false
	spec.Linux.CgroupsPath = "/hulltest-" + d.ns + "/" + id
	if edit != nil {
		edit(&spec)
	}
	raw, _ = json.Marshal(&spec)
	if err := os.WriteFile(filepath.Join(b, "config.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(b) })
	return b
}

// start runs the start subcommand in bundle and returns the address it
// printed.
func (d *directShim) start(t *testing.T, bundle, id string) string {
	t.Helper()
	cmd := exec.Command(d.bin, "-namespace", d.ns, "-address", d.address, "-publish-binary", "/bin/true", "-id", id, "-debug", "start")
	cmd.Dir = bundle
	cmd.Env = append(os.Environ(), "TTRPC_ADDRESS="+d.eventsAddr, "NAMESPACE="+d.ns)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("shim start: %v\n%s", err, out)
	}
	addr := strings.TrimSpace(string(out))
	if !strings.HasPrefix(addr, "unix:///") {
		t.Fatalf("shim start printed %q", out)
	}
	if b, _ := os.ReadFile(filepath.Join(bundle, "address")); string(b) != addr {
		t.Fatalf("address file %q, printed %q", b, addr)
	}
	return addr
}

func dialShim(t *testing.T, addr string) *ttrpc.Client {
	t.Helper()
	conn, err := net.Dial("unix", strings.TrimPrefix(addr, "unix://"))
	if err != nil {
		t.Fatal(err)
	}
	c := ttrpc.NewClient(conn)
	t.Cleanup(func() { c.Close() })
	return c
}

// shimWantCode fails the test at once unless err has code.
func shimWantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if st, _ := status.FromError(err); err == nil || st.Code() != code {
		t.Fatalf("%s: got %v, want code %v", what, err, code)
	}
}

func mkfifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestShimDirectTTRPC(t *testing.T) {
	d := newDirectShim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// oomScoreAdj lower than the shim may set: clamped, and the
	// container starts.
	bundle := d.bundle(t, "c1", func(s *specs.Spec) {
		adj := -999
		s.Process.OOMScoreAdj = &adj
		s.Process.Args = []string{"sh", "-c", "cat /proc/self/oom_score_adj; echo out; echo err >&2; exit 5"}
	})
	addr := d.start(t, bundle, "c1")
	sock := strings.TrimPrefix(addr, "unix://")
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket %s: %v %v", sock, fi.Mode(), err)
	}
	if di, _ := os.Stat(filepath.Dir(sock)); di.Mode().Perm() != 0o700 {
		t.Fatalf("socket dir mode %v", di.Mode().Perm())
	}
	// The v2 protocol, as containerd 1.6 speaks it.
	c := taskv2.NewTTRPCTaskClient(dialShim(t, addr))
	fifoDir := t.TempDir()
	stdout, stderr := filepath.Join(fifoDir, "out"), filepath.Join(fifoDir, "err")
	mkfifo(t, stdout)
	mkfifo(t, stderr)
	outR, _ := os.OpenFile(stdout, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	errR, _ := os.OpenFile(stderr, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	defer outR.Close()
	defer errR.Close()
	cr, err := c.Create(ctx, &taskv2.CreateTaskRequest{ID: "c1", Bundle: bundle, Stdout: stdout, Stderr: stderr})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if cr.Pid == 0 {
		t.Fatal("create returned pid 0")
	}
	st, err := c.State(ctx, &taskv2.StateRequest{ID: "c1"})
	if err != nil || st.Status != tasktypes.Status_CREATED || st.Pid != cr.Pid {
		t.Fatalf("state after create: %v %v", st, err)
	}
	if _, err := c.Start(ctx, &taskv2.StartRequest{ID: "c1"}); err != nil {
		t.Fatalf("start: %v", err)
	}
	wr, err := c.Wait(ctx, &taskv2.WaitRequest{ID: "c1"})
	if err != nil || wr.ExitStatus != 5 {
		t.Fatalf("wait: %v %v", wr, err)
	}
	outB := readAllNonblock(outR)
	if outB != "0\nout\n" {
		t.Errorf("stdout %q (oom_score_adj should be the shim's own, 0)", outB)
	}
	if errB := readAllNonblock(errR); errB != "err\n" {
		t.Errorf("stderr %q", errB)
	}
	var spec specs.Spec
	raw, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	json.Unmarshal(raw, &spec)
	if spec.Process.OOMScoreAdj == nil || *spec.Process.OOMScoreAdj != 0 {
		t.Errorf("config.json oomScoreAdj not clamped: %v", spec.Process.OOMScoreAdj)
	}
	_, err = c.Kill(ctx, &taskv2.KillRequest{ID: "c1", Signal: 9})
	shimWantCode(t, "kill of an exited task", err, codes.NotFound)
	_, err = c.Checkpoint(ctx, &taskv2.CheckpointTaskRequest{ID: "c1"})
	shimWantCode(t, "checkpoint", err, codes.Unimplemented)
	if !strings.Contains(err.Error(), "CRIU") {
		t.Errorf("checkpoint error %v does not say why", err)
	}
	dr, err := c.Delete(ctx, &taskv2.DeleteRequest{ID: "c1"})
	if err != nil || dr.ExitStatus != 5 || dr.Pid != cr.Pid {
		t.Fatalf("delete: %v %v", dr, err)
	}
	_, err = c.State(ctx, &taskv2.StateRequest{ID: "c1"})
	shimWantCode(t, "state after delete", err, codes.NotFound)
	c.Shutdown(ctx, &taskv2.ShutdownRequest{ID: "c1"})
	waitGone(t, bundle, sock)
	want := []string{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"}
	if got := d.events.seen(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("events %v, want %v", got, want)
	}
	d.events.mu.Lock()
	for _, e := range d.events.envs {
		if e.Namespace != d.ns {
			t.Errorf("event %s in namespace %q", e.Topic, e.Namespace)
		}
		if e.Topic == "/tasks/exit" {
			v, err := typeurl.UnmarshalAny(e.Event)
			if ex, ok := v.(*eventstypes.TaskExit); err != nil || !ok || ex.ExitStatus != 5 || ex.ContainerID != "c1" {
				t.Errorf("exit event %v %v", v, err)
			}
		}
	}
	d.events.mu.Unlock()
}

// TestShimDirectGroupExec runs two containers of one group in one shim
// (the v3 protocol), with execs.
func TestShimDirectGroupExec(t *testing.T) {
	d := newDirectShim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	group := func(s *specs.Spec) {
		s.Annotations = map[string]string{"io.containerd.runc.v2.group": "g1"}
		s.Process.Args = []string{"sleep", "1000"}
	}
	b1, b2 := d.bundle(t, "g1a", group), d.bundle(t, "g1b", group)
	a1, a2 := d.start(t, b1, "g1a"), d.start(t, b2, "g1b")
	if a1 != a2 {
		t.Fatalf("one group, two shims: %s %s", a1, a2)
	}
	c := taskv3.NewTTRPCTaskClient(dialShim(t, a1))
	for _, b := range []struct{ id, bundle string }{{"g1a", b1}, {"g1b", b2}} {
		if _, err := c.Create(ctx, &taskv3.CreateTaskRequest{ID: b.id, Bundle: b.bundle}); err != nil {
			t.Fatalf("create %s: %v", b.id, err)
		}
		if _, err := c.Start(ctx, &taskv3.StartRequest{ID: b.id}); err != nil {
			t.Fatalf("start %s: %v", b.id, err)
		}
	}
	cn1, _ := c.Connect(ctx, &taskv3.ConnectRequest{ID: "g1a"})
	cn2, _ := c.Connect(ctx, &taskv3.ConnectRequest{ID: "g1b"})
	if cn1.ShimPid != cn2.ShimPid || cn1.TaskPid == cn2.TaskPid {
		t.Fatalf("connect: %v %v", cn1, cn2)
	}
	_, err := c.Delete(ctx, &taskv3.DeleteRequest{ID: "g1a"})
	shimWantCode(t, "delete of a running task", err, codes.FailedPrecondition)

	spec := specs.Process{Args: []string{"sh", "-c", "exit 4"}, Cwd: "/", Env: []string{"PATH=/bin"}}
	sb, _ := json.Marshal(spec)
	anySpec := &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: sb}
	if _, err := c.Exec(ctx, &taskv3.ExecProcessRequest{ID: "g1a", ExecID: "e1", Spec: anySpec}); err != nil {
		t.Fatalf("exec: %v", err)
	}
	_, err = c.Exec(ctx, &taskv3.ExecProcessRequest{ID: "g1a", ExecID: "e1", Spec: anySpec})
	shimWantCode(t, "duplicate exec", err, codes.AlreadyExists)
	if _, err := c.Start(ctx, &taskv3.StartRequest{ID: "g1a", ExecID: "e1"}); err != nil {
		t.Fatalf("start exec: %v", err)
	}
	wr, err := c.Wait(ctx, &taskv3.WaitRequest{ID: "g1a", ExecID: "e1"})
	if err != nil || wr.ExitStatus != 4 {
		t.Fatalf("wait exec: %v %v", wr, err)
	}
	if _, err := c.Delete(ctx, &taskv3.DeleteRequest{ID: "g1a", ExecID: "e1"}); err != nil {
		t.Fatalf("delete exec: %v", err)
	}
	pids, err := c.Pids(ctx, &taskv3.PidsRequest{ID: "g1b"})
	if err != nil || len(pids.Processes) != 1 || pids.Processes[0].Pid != cn2.TaskPid {
		t.Fatalf("pids: %v %v", pids, err)
	}
	if _, err := c.Stats(ctx, &taskv3.StatsRequest{ID: "g1b"}); err != nil {
		t.Fatalf("stats: %v", err)
	}
	for _, id := range []string{"g1a", "g1b"} {
		if _, err := c.Kill(ctx, &taskv3.KillRequest{ID: id, Signal: 9}); err != nil {
			t.Fatalf("kill %s: %v", id, err)
		}
		if wr, err := c.Wait(ctx, &taskv3.WaitRequest{ID: id}); err != nil || wr.ExitStatus != 137 {
			t.Fatalf("wait %s: %v %v", id, wr, err)
		}
		if _, err := c.Delete(ctx, &taskv3.DeleteRequest{ID: id}); err != nil {
			t.Fatalf("delete %s: %v", id, err)
		}
		// The first Shutdown leaves the shim serving the other container.
		c.Shutdown(ctx, &taskv3.ShutdownRequest{ID: id})
	}
	waitGone(t, b1, strings.TrimPrefix(a1, "unix://"))
}

// TestShimDirectDelete is the daemon cleaning up after a shim that died:
// the delete subcommand removes the runc container and unmounts.
func TestShimDirectDelete(t *testing.T) {
	d := newDirectShim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bundle := d.bundle(t, "dead", func(s *specs.Spec) { s.Process.Args = []string{"sleep", "1000"} })
	addr := d.start(t, bundle, "dead")
	c := taskv3.NewTTRPCTaskClient(dialShim(t, addr))
	if _, err := c.Create(ctx, &taskv3.CreateTaskRequest{ID: "dead", Bundle: bundle}); err != nil {
		t.Fatal(err)
	}
	cn, err := c.Connect(ctx, &taskv3.ConnectRequest{ID: "dead"})
	if err != nil {
		t.Fatal(err)
	}
	syscall.Kill(int(cn.ShimPid), syscall.SIGKILL)
	cmd := exec.Command(d.bin, "-namespace", d.ns, "-address", d.address, "-publish-binary", "/bin/true", "-id", "dead", "-bundle", bundle, "delete")
	cmd.Dir = bundle
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	var dr taskv2.DeleteResponse
	if err := protoUnmarshal(out, &dr); err != nil || dr.ExitStatus != 137 || dr.ExitedAt == nil {
		t.Fatalf("delete response %v %v", &dr, err)
	}
	// delete killed the container's init (runc delete --force): it ends.
	if !waitPidExit(int(cn.TaskPid), 10*time.Second) {
		t.Fatalf("the container's init %d outlived the shim's delete", cn.TaskPid)
	}
	if out, err := exec.Command("runc", "--root", filepath.Join(d.state, "runc", d.ns), "state", "dead").CombinedOutput(); err == nil {
		t.Fatalf("runc still knows the container:\n%s", out)
	}
	waitGone(t, bundle, strings.TrimPrefix(addr, "unix://"))
}

// waitGone waits for the shim serving sock to exit (its pid is in the
// socket's bundle file shim.pid, written by start), then checks that it
// removed its socket.
func waitGone(t *testing.T, bundle, sock string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(bundle, "shim.pid"))
	if err != nil {
		t.Fatalf("shim.pid of %s: %v", bundle, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("shim.pid of %s holds %q", bundle, b)
	}
	if !waitPidExit(pid, 10*time.Second) {
		t.Fatalf("shim %d still runs", pid)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("shim socket %s still there after the shim exited: %v", sock, err)
	}
}

// waitPidExit waits for pid (not necessarily a child) to exit, through a
// pidfd that becomes readable then; false if it still runs after timeout.
// A zombie has exited; a pid that no longer exists has too.
func waitPidExit(pid int, timeout time.Duration) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return errors.Is(err, unix.ESRCH)
	}
	defer unix.Close(fd)
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(left/time.Millisecond)+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err == nil && n == 1
	}
}

// readAllNonblock reads what a non-blocking FIFO holds until its writer
// closed it, waiting in poll(2) for data or the hang-up.
func readAllNonblock(f *os.File) string {
	var out []byte
	buf := make([]byte, 4096)
	deadline := time.Now().Add(5 * time.Second)
	fd := int(f.Fd())
	for {
		n, err := unix.Read(fd, buf)
		if n > 0 {
			out = append(out, buf[:n]...)
			continue
		}
		if n == 0 && err == nil {
			return string(out) // EOF: the shim closed its end
		}
		left := time.Until(deadline)
		if left <= 0 || !errors.Is(err, unix.EAGAIN) {
			return string(out)
		}
		unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(left/time.Millisecond)+1)
	}
}

func protoUnmarshal(b []byte, m *taskv2.DeleteResponse) error { return proto.Unmarshal(b, m) }

// TestShimDirectOOM: a process killed by the memory limit shows up as a
// /tasks/oom event, and its metrics count the OOM kill.
func TestShimDirectOOM(t *testing.T) {
	d := newDirectShim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bundle := d.bundle(t, "oom", func(s *specs.Spec) {
		limit, swap := int64(16<<20), int64(16<<20)
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit, Swap: &swap}}
		// The first sh holds the cgroup open for Stats; the second
		// grows until the kernel kills it.
		s.Process.Args = []string{"sh", "-c", `sh -c 'a=$(head -c 64000000 /dev/zero | tr "\0" a); echo survived' ; sleep 1000`}
	})
	addr := d.start(t, bundle, "oom")
	c := taskv3.NewTTRPCTaskClient(dialShim(t, addr))
	if _, err := c.Create(ctx, &taskv3.CreateTaskRequest{ID: "oom", Bundle: bundle}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Start(ctx, &taskv3.StartRequest{ID: "oom"}); err != nil {
		t.Fatal(err)
	}
	d.events.waitTopic(t, "/tasks/oom", 20*time.Second)
	c.Kill(ctx, &taskv3.KillRequest{ID: "oom", Signal: 9})
	c.Wait(ctx, &taskv3.WaitRequest{ID: "oom"})
	if _, err := c.Delete(ctx, &taskv3.DeleteRequest{ID: "oom"}); err != nil {
		t.Fatal(err)
	}
	c.Shutdown(ctx, &taskv3.ShutdownRequest{ID: "oom"})
	waitGone(t, bundle, strings.TrimPrefix(addr, "unix://"))
}
