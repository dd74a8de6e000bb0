package shims

// This file is a fake shim v2: the test binary itself, run under a name
// that starts with "containerd-shim-" (a symlink to it), acts as a shim
// instead of running tests. It speaks the real protocols, so the manager
// is tested against processes and sockets as it meets them in production,
// only without runc, root or a container:
//
//	<shim> -namespace N -address A -publish-binary P -id ID start
//	    listens on <dir of A>/<N>-<ID>, hands the listener to a serving
//	    process of its own (fd 3, as shim/launch does), writes shim.pid in
//	    the bundle and <dir of A>/<N>-<ID>.pid for the tests' cleanup, and
//	    prints the address: bare, or as the spec annotation fakeBootstrap
//	    says (see fakeStart). It keeps its stdin in the bundle's
//	    fakeStdinFile and counts its runs in fakeStartsFile. With
//	    annotation fakeGroup the socket is the group's, and a group shim
//	    that answers is reused.
//	<shim> ... -bundle B delete
//	    prints a DeleteResponse with exit status fakeDeleteStatus.
//	<shim> ... -socket S            (no subcommand)
//	    serves the task API on fd 3; this is also how hulld launches its
//	    own shim (see startShim), so a symlink named containerd-shim-hull-v2
//	    takes that path.
//
// The serving process keeps its tasks in memory: Create gives a pid, Kill
// makes the init process exit (Wait returns), Shutdown exits once no task
// is left. Nothing is a real process but the shim itself.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hullrt/hull/internal/errgrpc"
)

// Spec annotations that steer the fake shim, set by tests in config.json.
const (
	// fakeBootstrap is how start reads its input and answers:
	//	"v3"       JSON bootstrap of task API v3
	//	"proto"    as a containerd 2.3+ shim: refuses to start without
	//	           bootstrap parameters, answers a binary BootstrapResult
	//	"legacy"   as containerd 1.6's runc shim: refuses stdin that is
	//	           not runc options, answers the bare address
	//	"proto-v4" a binary BootstrapResult of task API version 4
	//	"garbage"  prints fakeGarbage
	//	"v3-on-v2" JSON saying v3, but serves containerd.task.v2.Task only
	// The last three start the serving process first, as a shim would.
	fakeBootstrap   = "test.hull/bootstrap"
	fakeStartError  = "test.hull/start-error"  // start fails with this on stderr
	fakeCreateError = "test.hull/create-error" // the Create call fails with this
	// fakeGroup puts tasks with the same value in one shim: start prints
	// the address of the group's shim when it answers, as hull's and
	// containerd's runc shims do for a pod's containers.
	fakeGroup = "test.hull/group"
)

// Files the fake start writes in the bundle.
const (
	fakeStdinFile  = "fake-stdin"  // what start read on stdin
	fakeStartsFile = "fake-starts" // a line per start run
)

// fakeGarbage is what a "garbage" shim prints at start.
const fakeGarbage = "Segmentation fault (core dumped)\n\x00\xff"

// fakeDeleteStatus is the exit status the delete command reports; the
// manager's own fallback is 255, so tests can tell that delete ran.
const fakeDeleteStatus = 137

// fakeShimMain runs the fake shim with the command line args and returns its
// exit code.
func fakeShimMain(args []string) int {
	fs := flag.NewFlagSet("fake-shim", flag.ContinueOnError)
	ns := fs.String("namespace", "", "")
	address := fs.String("address", "", "")
	fs.String("publish-binary", "", "")
	id := fs.String("id", "", "")
	fs.String("bundle", "", "")
	fs.Bool("debug", false, "")
	fs.String("socket", "", "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	switch fs.Arg(0) {
	case "start":
		err = fakeStart(*ns, *address, *id, args)
	case "delete":
		err = fakeDelete(*ns, *address, *id)
	case "":
		err = fakeServe(*ns)
	default:
		err = fmt.Errorf("unknown command %q", fs.Arg(0))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake shim:", err)
		return 1
	}
	return 0
}

func fakeSocket(ns, address, id string) string {
	return filepath.Join(filepath.Dir(address), ns+"-"+id)
}

// bundleAnnotations reads the spec annotations of the bundle in dir.
func bundleAnnotations(dir string) map[string]string {
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	data, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	json.Unmarshal(data, &spec)
	return spec.Annotations
}

func fakeStart(ns, address, id string, args []string) error {
	ann := bundleAnnotations(".")
	stdin, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	if err := os.WriteFile(fakeStdinFile, stdin, 0o600); err != nil {
		return err
	}
	starts, err := os.OpenFile(fakeStartsFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	fmt.Fprintln(starts, "start")
	starts.Close()
	if msg := ann[fakeStartError]; msg != "" {
		return fmt.Errorf("%s", msg)
	}
	mode := ann[fakeBootstrap]
	switch mode {
	case "proto":
		var p bootapi.BootstrapParams
		if proto.Unmarshal(stdin, &p) != nil || p.InstanceID != id || p.Namespace != ns {
			return errors.New("bootstrap parameters do not match command-line arguments: shim was started through the deprecated API")
		}
	case "legacy":
		var a anypb.Any
		if len(stdin) > 0 && (proto.Unmarshal(stdin, &a) != nil || !a.MessageIs(&runcoptions.Options{})) {
			return fmt.Errorf("type with url %s: not found", a.TypeUrl)
		}
	}
	path := fakeSocket(ns, address, id)
	if g := ann[fakeGroup]; g != "" {
		path = fakeSocket(ns, address, "group-"+g)
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			_, err = fmt.Println(path)
			return err
		}
	}
	os.Remove(path) // a shim of an earlier task of this id that exited
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return err
	}
	l.SetUnlinkOnClose(false) // the serving process owns it now
	lf, err := l.File()
	if err != nil {
		return err
	}
	serveArgs := append(args[:len(args)-1:len(args)-1], "-socket", path) // drop "start"
	cmd := exec.Command(os.Args[0], serveArgs...)
	cmd.ExtraFiles = []*os.File{lf}
	// Its own session, as real shims: the manager's signals must not
	// reach it. Stdio stays /dev/null, so start's stdout pipe closes when
	// start exits.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	if err := os.WriteFile("shim.pid", []byte(pid), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(path+".pid", []byte(pid), 0o600); err != nil {
		return err
	}
	switch mode {
	case "v3", "v3-on-v2":
		return json.NewEncoder(os.Stdout).Encode(bootstrap{Version: 3, Address: "unix://" + path, Protocol: "ttrpc"})
	case "proto", "proto-v4":
		v := int32(3)
		if mode == "proto-v4" {
			v = 4
		}
		out, err := proto.Marshal(&bootapi.BootstrapResult{Version: v, Address: "unix://" + path, Protocol: "ttrpc"})
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(out)
		return err
	case "garbage":
		_, err = fmt.Print(fakeGarbage)
		return err
	}
	_, err = fmt.Println(path)
	return err
}

func fakeDelete(ns, address, id string) error {
	os.Remove(fakeSocket(ns, address, id))
	out, err := proto.Marshal(&taskv2.DeleteResponse{ExitStatus: fakeDeleteStatus, ExitedAt: timestamppb.Now()})
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(out)
	return err
}

// fakeServe serves the task API, as versions 2 and 3, on the listener
// passed as fd 3 until Shutdown finds no task left. The socket file stays:
// the delete command, or the next start of the id, removes it.
func fakeServe(ns string) error {
	lf := os.NewFile(3, "listener")
	l, err := net.FileListener(lf)
	if err != nil {
		return err
	}
	// FileListener serves a duplicate: closing the original now makes
	// the socket stop answering once Shutdown closes the listener.
	lf.Close()
	s := &fakeTasks{ns: ns, tasks: map[string]*fakeTask{}, done: make(chan struct{})}
	srv, err := ttrpc.NewServer()
	if err != nil {
		return err
	}
	services := []string{"containerd.task.v2.Task", "containerd.task.v3.Task"}
	if bundleAnnotations(".")[fakeBootstrap] == "v3-on-v2" {
		services = services[:1]
	}
	for _, name := range services {
		srv.RegisterService(name, s.desc())
	}
	go srv.Serve(context.Background(), l)
	<-s.done
	// Like a shim exiting: Shutdown's answer may be lost, which callers
	// expect. (ttrpc's graceful Shutdown polls for idle connections every
	// 200ms, which every Delete of every test would wait for.)
	return srv.Close()
}

type fakeTask struct {
	pid        uint32
	status     tasktypes.Status
	exitStatus uint32
	exitedAt   time.Time
	exited     chan struct{}
}

// fakeTasks is the fake's task service.
type fakeTasks struct {
	ns      string // the only namespace the shim serves, as its -namespace
	mu      sync.Mutex
	tasks   map[string]*fakeTask
	lastPid uint32
	done    chan struct{}
	closing sync.Once
}

// method adapts a handler to ttrpc: it decodes the request, checks that the
// caller sent the shim's namespace (the manager must, as containerd does)
// and returns errors with the gRPC code of their errdefs class.
func method[Req, Resp any](s *fakeTasks, f func(context.Context, *Req) (Resp, error)) ttrpc.Method {
	return func(ctx context.Context, unmarshal func(any) error) (any, error) {
		req := new(Req)
		if err := unmarshal(req); err != nil {
			return nil, err
		}
		md, _ := ttrpc.GetMetadata(ctx)
		if got, _ := md.Get("containerd-namespace-ttrpc"); len(got) != 1 || got[0] != s.ns {
			return nil, errgrpc.ToGRPC(fmt.Errorf("call in namespace %v to the shim of namespace %q: %w", got, s.ns, errdefs.ErrFailedPrecondition))
		}
		resp, err := f(ctx, req)
		return resp, errgrpc.ToGRPC(err)
	}
}

// desc lists the methods the fake serves; ttrpc answers Unimplemented for
// the others.
func (s *fakeTasks) desc() *ttrpc.ServiceDesc {
	return &ttrpc.ServiceDesc{Methods: map[string]ttrpc.Method{
		"Create":   method(s, s.create),
		"Start":    method(s, s.start),
		"State":    method(s, s.state),
		"Kill":     method(s, s.kill),
		"Wait":     method(s, s.wait),
		"Delete":   method(s, s.delete),
		"Pids":     method(s, s.pids),
		"Connect":  method(s, s.connect),
		"Shutdown": method(s, s.shutdown),
	}}
}

func (s *fakeTasks) get(id string) (*fakeTask, error) {
	t, ok := s.tasks[id]
	if !ok {
		return nil, fmt.Errorf("fake shim has no task %q: %w", id, errdefs.ErrNotFound)
	}
	return t, nil
}

func (s *fakeTasks) create(_ context.Context, r *taskv2.CreateTaskRequest) (*taskv2.CreateTaskResponse, error) {
	if msg := bundleAnnotations(r.Bundle)[fakeCreateError]; msg != "" {
		return nil, fmt.Errorf("%s: %w", msg, errdefs.ErrInvalidArgument)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tasks[r.ID]; ok {
		return nil, fmt.Errorf("fake shim has task %q: %w", r.ID, errdefs.ErrAlreadyExists)
	}
	s.lastPid++
	t := &fakeTask{pid: 1000 + s.lastPid, status: tasktypes.Status_CREATED, exited: make(chan struct{})}
	s.tasks[r.ID] = t
	return &taskv2.CreateTaskResponse{Pid: t.pid}, nil
}

func (s *fakeTasks) start(_ context.Context, r *taskv2.StartRequest) (*taskv2.StartResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	if t.status != tasktypes.Status_CREATED {
		return nil, fmt.Errorf("task %q is %v: %w", r.ID, t.status, errdefs.ErrFailedPrecondition)
	}
	t.status = tasktypes.Status_RUNNING
	return &taskv2.StartResponse{Pid: t.pid}, nil
}

func (s *fakeTasks) state(_ context.Context, r *taskv2.StateRequest) (*taskv2.StateResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	resp := &taskv2.StateResponse{ID: r.ID, Pid: t.pid, Status: t.status, ExitStatus: t.exitStatus}
	if !t.exitedAt.IsZero() {
		resp.ExitedAt = timestamppb.New(t.exitedAt)
	}
	return resp, nil
}

// kill makes the init process exit as if by the signal.
func (s *fakeTasks) kill(_ context.Context, r *taskv2.KillRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	if t.status == tasktypes.Status_STOPPED {
		return nil, fmt.Errorf("task %q: process already finished: %w", r.ID, errdefs.ErrNotFound)
	}
	t.status, t.exitStatus, t.exitedAt = tasktypes.Status_STOPPED, 128+r.Signal, time.Now()
	close(t.exited)
	return &emptypb.Empty{}, nil
}

func (s *fakeTasks) wait(ctx context.Context, r *taskv2.WaitRequest) (*taskv2.WaitResponse, error) {
	s.mu.Lock()
	t, err := s.get(r.ID)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	select {
	case <-t.exited:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return &taskv2.WaitResponse{ExitStatus: t.exitStatus, ExitedAt: timestamppb.New(t.exitedAt)}, nil
}

func (s *fakeTasks) delete(_ context.Context, r *taskv2.DeleteRequest) (*taskv2.DeleteResponse, error) {
	if r.ExecID != "" {
		return nil, fmt.Errorf("fake shim has no exec process %q: %w", r.ExecID, errdefs.ErrNotFound)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	if t.status != tasktypes.Status_STOPPED {
		return nil, fmt.Errorf("task %q is %v: %w", r.ID, t.status, errdefs.ErrFailedPrecondition)
	}
	delete(s.tasks, r.ID)
	return &taskv2.DeleteResponse{Pid: t.pid, ExitStatus: t.exitStatus, ExitedAt: timestamppb.New(t.exitedAt)}, nil
}

func (s *fakeTasks) pids(_ context.Context, r *taskv2.PidsRequest) (*taskv2.PidsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	return &taskv2.PidsResponse{Processes: []*tasktypes.ProcessInfo{{Pid: t.pid}}}, nil
}

func (s *fakeTasks) connect(_ context.Context, r *taskv2.ConnectRequest) (*taskv2.ConnectResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	return &taskv2.ConnectResponse{ShimPid: uint32(os.Getpid()), TaskPid: t.pid}, nil
}

// shutdown ends the shim once it serves no task, as real shims do.
func (s *fakeTasks) shutdown(_ context.Context, _ *taskv2.ShutdownRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.tasks) == 0 {
		s.closing.Do(func() { close(s.done) })
	}
	return &emptypb.Empty{}, nil
}
