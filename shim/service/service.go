// Package service is the shim's ttrpc task service: containerd's
// containerd.task.v2.Task and containerd.task.v3.Task, which carry the same
// messages, served by one implementation. A shim may serve several
// containers (a group sharing one shim), each created by its own Create.
package service

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"

	eventstypes "github.com/containerd/containerd/api/events"
	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/runc/options"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/internal/crashpoint"
	"github.com/hullrt/hull/internal/errgrpc"
	"github.com/hullrt/hull/shim/events"
	"github.com/hullrt/hull/shim/reaper"
	"github.com/hullrt/hull/shim/stdio"
	"github.com/hullrt/hull/shim/task"
)

// Config is what the service needs from the shim's start-up.
type Config struct {
	Namespace string
	Events    task.Publisher
	Reaper    *reaper.Reaper
	Monitor   *task.Monitor
	Log       *slog.Logger
	// Options are the runc options the shim was started with (from
	// start's stdin); a Create's own options take precedence.
	Options *options.Options
}

// Service implements the task API over the shim's containers.
type Service struct {
	cfg    Config
	minOOM int

	mu         sync.Mutex
	containers map[string]*task.Container
	// inCgroup is the ShimCgroup the shim has joined, "" before.
	inCgroup string
	done     chan struct{}
	doneOnce sync.Once
}

// New returns the service.
func New(cfg Config) *Service {
	return &Service{cfg: cfg, minOOM: task.OwnOOMScoreAdj(), containers: map[string]*task.Container{}, done: make(chan struct{})}
}

// Done is closed when a Shutdown found no container left: the shim may
// exit.
func (s *Service) Done() <-chan struct{} { return s.done }

var _ taskv2.TTRPCTaskService = (*Service)(nil)

func (s *Service) container(id string) (*task.Container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

func (s *Service) process(id, execID string) (*task.Container, *task.Process, error) {
	c, err := s.container(id)
	if err != nil {
		return nil, nil, err
	}
	p, err := c.Process(execID)
	if err != nil {
		return nil, nil, err
	}
	return c, p, nil
}

// runcOptions decodes the containerd.runc.v1.Options of a request.
func runcOptions(a *anypb.Any) (*options.Options, error) {
	if a == nil || len(a.GetValue()) == 0 && a.GetTypeUrl() == "" {
		return nil, nil
	}
	var o options.Options
	if err := proto.Unmarshal(a.GetValue(), &o); err != nil {
		return nil, fmt.Errorf("runtime options of type %q: %w: %w", a.GetTypeUrl(), err, errdefs.ErrInvalidArgument)
	}
	return &o, nil
}

// Create creates the container's init process.
func (s *Service) Create(ctx context.Context, r *taskv2.CreateTaskRequest) (*taskv2.CreateTaskResponse, error) {
	opts, err := runcOptions(r.Options)
	if err != nil {
		return nil, err
	}
	if opts == nil {
		opts = s.cfg.Options
	}
	s.mu.Lock()
	if _, ok := s.containers[r.ID]; ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("container %q: %w", r.ID, errdefs.ErrAlreadyExists)
	}
	s.containers[r.ID] = nil // reserved while runc create runs
	s.mu.Unlock()
	if err := s.joinShimCgroup(opts); err != nil {
		s.mu.Lock()
		delete(s.containers, r.ID)
		s.mu.Unlock()
		return nil, fmt.Errorf("create %q: %w", r.ID, err)
	}
	mounts := make([]mount.Mount, 0, len(r.Rootfs))
	for _, m := range r.Rootfs {
		mounts = append(mounts, mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	c, err := task.Create(ctx, task.CreateConfig{
		ID: r.ID, Bundle: r.Bundle, Namespace: s.cfg.Namespace, Rootfs: mounts,
		Stdio:   stdio.Config{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
		Options: opts, MinOOMScoreAdj: s.minOOM,
		Reaper: s.cfg.Reaper, Monitor: s.cfg.Monitor, Events: s.cfg.Events, Log: s.cfg.Log,
	})
	if err == nil {
		crashpoint.Hit(crashpoint.ShimRuncCreated)
	}
	s.mu.Lock()
	if err != nil {
		delete(s.containers, r.ID)
	} else {
		s.containers[r.ID] = c
	}
	s.mu.Unlock()
	if err != nil {
		s.cfg.Log.Warn("create", "id", r.ID, "error", err)
		return nil, err
	}
	pid := uint32(c.Init().Pid())
	s.cfg.Events.Publish(events.TopicCreate, &eventstypes.TaskCreate{ContainerID: r.ID, Bundle: r.Bundle,
		Rootfs: r.Rootfs, IO: &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
		Checkpoint: r.Checkpoint, Pid: pid})
	s.cfg.Log.Debug("created", "id", r.ID, "pid", pid)
	return &taskv2.CreateTaskResponse{Pid: pid}, nil
}

// joinShimCgroup moves the shim into the options' ShimCgroup, once: the
// first container's options decide, as the options of start do for
// containerd's runc shim, which moves itself before it serves.
func (s *Service) joinShimCgroup(opts *options.Options) error {
	if opts == nil || opts.ShimCgroup == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inCgroup != "" {
		return nil
	}
	if err := joinCgroup(cgroupRoot, opts.ShimCgroup, os.Getpid()); err != nil {
		return err
	}
	s.inCgroup = opts.ShimCgroup
	return nil
}

// Start starts the init process or an exec.
func (s *Service) Start(ctx context.Context, r *taskv2.StartRequest) (*taskv2.StartResponse, error) {
	c, err := s.container(r.ID)
	if err != nil {
		return nil, err
	}
	p, err := c.Start(ctx, r.ExecID)
	if err != nil {
		return nil, err
	}
	return &taskv2.StartResponse{Pid: uint32(p.Pid())}, nil
}

// Delete deletes an exec, or the container when ExecID is empty.
func (s *Service) Delete(ctx context.Context, r *taskv2.DeleteRequest) (*taskv2.DeleteResponse, error) {
	c, err := s.container(r.ID)
	if err != nil {
		return nil, err
	}
	var p *task.Process
	if r.ExecID != "" {
		p, err = c.DeleteExec(r.ExecID)
	} else {
		p, err = c.Delete(ctx)
		if err == nil {
			s.mu.Lock()
			delete(s.containers, r.ID)
			s.mu.Unlock()
		}
	}
	if err != nil {
		return nil, err
	}
	status, at, _ := p.Exit()
	resp := &taskv2.DeleteResponse{Pid: uint32(p.Pid()), ExitStatus: uint32(status), ExitedAt: timestamppb.New(at)}
	if r.ExecID == "" {
		s.cfg.Events.Publish(events.TopicDelete, &eventstypes.TaskDelete{ContainerID: r.ID, Pid: resp.Pid,
			ExitStatus: resp.ExitStatus, ExitedAt: resp.ExitedAt, ID: r.ID})
	}
	return resp, nil
}

// Pids lists the container's processes.
func (s *Service) Pids(ctx context.Context, r *taskv2.PidsRequest) (*taskv2.PidsResponse, error) {
	c, err := s.container(r.ID)
	if err != nil {
		return nil, err
	}
	pids, execs, err := c.Pids(ctx)
	if err != nil {
		return nil, err
	}
	resp := &taskv2.PidsResponse{}
	for _, pid := range pids {
		pi := &tasktypes.ProcessInfo{Pid: uint32(pid)}
		if id, ok := execs[pid]; ok {
			if a, err := typeurl.MarshalAnyToProto(&options.ProcessDetails{ExecID: id}); err == nil {
				pi.Info = a
			}
		}
		resp.Processes = append(resp.Processes, pi)
	}
	return resp, nil
}

// Pause freezes the container.
func (s *Service) Pause(ctx context.Context, r *taskv2.PauseRequest) (*emptypb.Empty, error) {
	c, err := s.container(r.ID)
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, c.Pause(ctx)
}

// Resume thaws the container.
func (s *Service) Resume(ctx context.Context, r *taskv2.ResumeRequest) (*emptypb.Empty, error) {
	c, err := s.container(r.ID)
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, c.Resume(ctx)
}

// Checkpoint is not supported: it needs CRIU, which the shim does not
// drive yet.
func (s *Service) Checkpoint(ctx context.Context, r *taskv2.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, fmt.Errorf("checkpoint of %q: checkpoint needs CRIU support, which is not built into containerd-shim-hull-v2 yet: %w", r.ID, errdefs.ErrNotImplemented)
}

// Kill signals a process.
func (s *Service) Kill(ctx context.Context, r *taskv2.KillRequest) (*emptypb.Empty, error) {
	c, err := s.container(r.ID)
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, c.Kill(ctx, r.ExecID, int(r.Signal), r.All)
}

// Exec adds an exec process to the container.
func (s *Service) Exec(ctx context.Context, r *taskv2.ExecProcessRequest) (*emptypb.Empty, error) {
	c, err := s.container(r.ID)
	if err != nil {
		return nil, err
	}
	if r.Spec == nil || len(r.Spec.Value) == 0 {
		return nil, fmt.Errorf("exec %q of %q has no process spec: %w", r.ExecID, r.ID, errdefs.ErrInvalidArgument)
	}
	err = c.Exec(r.ExecID, stdio.Config{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal}, r.Spec.Value)
	return &emptypb.Empty{}, err
}

// ResizePty resizes a process's terminal.
func (s *Service) ResizePty(ctx context.Context, r *taskv2.ResizePtyRequest) (*emptypb.Empty, error) {
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, p.Resize(r.Width, r.Height)
}

// CloseIO closes a process's stdin.
func (s *Service) CloseIO(ctx context.Context, r *taskv2.CloseIORequest) (*emptypb.Empty, error) {
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if r.Stdin {
		p.CloseStdin()
	}
	return &emptypb.Empty{}, nil
}

// Update applies new resources to the container.
func (s *Service) Update(ctx context.Context, r *taskv2.UpdateTaskRequest) (*emptypb.Empty, error) {
	c, err := s.container(r.ID)
	if err != nil {
		return nil, err
	}
	if r.Resources == nil || len(r.Resources.Value) == 0 {
		return nil, fmt.Errorf("update of %q has no resources: %w", r.ID, errdefs.ErrInvalidArgument)
	}
	return &emptypb.Empty{}, c.Update(ctx, r.Resources.Value)
}

// Wait blocks until a process exits.
func (s *Service) Wait(ctx context.Context, r *taskv2.WaitRequest) (*taskv2.WaitResponse, error) {
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if err := p.Wait(ctx); err != nil {
		return nil, err
	}
	status, at, _ := p.Exit()
	return &taskv2.WaitResponse{ExitStatus: uint32(status), ExitedAt: timestamppb.New(at)}, nil
}

// Stats returns the container's cgroup metrics.
func (s *Service) Stats(ctx context.Context, r *taskv2.StatsRequest) (*taskv2.StatsResponse, error) {
	c, err := s.container(r.ID)
	if err != nil {
		return nil, err
	}
	m, err := c.Stats()
	if err != nil {
		return nil, err
	}
	a, err := typeurl.MarshalAnyToProto(m)
	if err != nil {
		return nil, err
	}
	return &taskv2.StatsResponse{Stats: a}, nil
}

// Connect returns the shim's and the init process's pids.
func (s *Service) Connect(ctx context.Context, r *taskv2.ConnectRequest) (*taskv2.ConnectResponse, error) {
	resp := &taskv2.ConnectResponse{ShimPid: uint32(os.Getpid())}
	if c, err := s.container(r.ID); err == nil {
		resp.TaskPid = uint32(c.Init().Pid())
	}
	return resp, nil
}

// Shutdown lets the shim exit once it serves no container.
func (s *Service) Shutdown(ctx context.Context, r *taskv2.ShutdownRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	n := len(s.containers)
	s.mu.Unlock()
	if n > 0 && !r.Now {
		return &emptypb.Empty{}, nil
	}
	s.doneOnce.Do(func() { close(s.done) })
	return &emptypb.Empty{}, nil
}

// State reports a process's state.
func (s *Service) State(ctx context.Context, r *taskv2.StateRequest) (*taskv2.StateResponse, error) {
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	cfg := p.Config()
	resp := &taskv2.StateResponse{ID: r.ID, Bundle: c.Bundle, Pid: uint32(p.Pid()), Status: c.Status(p),
		Stdin: cfg.Stdin, Stdout: cfg.Stdout, Stderr: cfg.Stderr, Terminal: cfg.Terminal, ExecID: r.ExecID}
	if status, at, ok := p.Exit(); ok {
		resp.ExitStatus, resp.ExitedAt = uint32(status), timestamppb.New(at)
	}
	return resp, nil
}

// Register serves svc on srv as both containerd.task.v2.Task and
// containerd.task.v3.Task. The two protocols' messages are identical on the
// wire, so the v2 types decode v3 requests as they are; the v2 package is
// the one used because the v3 package also holds gRPC stubs, which would
// link all of gRPC into the shim.
func Register(srv *ttrpc.Server, svc taskv2.TTRPCTaskService) {
	methods := map[string]ttrpc.Method{
		"State":      method(svc.State),
		"Create":     method(svc.Create),
		"Start":      method(svc.Start),
		"Delete":     method(svc.Delete),
		"Pids":       method(svc.Pids),
		"Pause":      method(svc.Pause),
		"Resume":     method(svc.Resume),
		"Checkpoint": method(svc.Checkpoint),
		"Kill":       method(svc.Kill),
		"Exec":       method(svc.Exec),
		"ResizePty":  method(svc.ResizePty),
		"CloseIO":    method(svc.CloseIO),
		"Update":     method(svc.Update),
		"Wait":       method(svc.Wait),
		"Stats":      method(svc.Stats),
		"Connect":    method(svc.Connect),
		"Shutdown":   method(svc.Shutdown),
	}
	for _, name := range []string{"containerd.task.v2.Task", "containerd.task.v3.Task"} {
		srv.RegisterService(name, &ttrpc.ServiceDesc{Methods: methods})
	}
}

// method adapts a typed handler to ttrpc, converting its error to a gRPC
// status with the errdefs kind's code.
func method[Req any, PReq interface {
	*Req
	proto.Message
}, Resp proto.Message](fn func(context.Context, PReq) (Resp, error)) ttrpc.Method {
	return func(ctx context.Context, unmarshal func(any) error) (any, error) {
		req := PReq(new(Req))
		if err := unmarshal(req); err != nil {
			return nil, err
		}
		resp, err := fn(ctx, req)
		if err != nil {
			return nil, errgrpc.ToGRPC(err)
		}
		return resp, nil
	}
}
