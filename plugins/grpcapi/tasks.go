package grpcapi

import (
	"context"
	"fmt"
	"strings"
	"time"

	api "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/core/filters"
	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/internal/errgrpc"
	"github.com/hullrt/hull/internal/protoconv"
	"github.com/hullrt/hull/runtime"
)

// tasksService adapts the runtime manager to containerd's tasks API. A
// task is created from its container record: spec, runtime and, when the
// request carries no rootfs, the mounts of the container's snapshot.
type tasksService struct {
	api.UnimplementedTasksServer
	runtime     *runtime.Manager
	containers  containers.Store
	snapshotter func(name string) (snapshots.Snapshotter, error)
}

func (s *tasksService) RegisterGRPC(g *grpc.Server) { api.RegisterTasksServer(g, s) }

func (s *tasksService) Create(ctx context.Context, req *api.CreateTaskRequest) (*api.CreateTaskResponse, error) {
	if req.Checkpoint != nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("restoring task %q from a checkpoint needs CRIU support, which hull does not have yet: %w", req.ContainerID, errdefs.ErrNotImplemented))
	}
	c, err := s.containers.Get(ctx, req.ContainerID)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	var spec []byte
	if c.Spec != nil {
		spec = c.Spec.GetValue()
	}
	rootfs := protoconv.MountsFromProto(req.Rootfs)
	if len(rootfs) == 0 && c.SnapshotKey != "" {
		if rootfs, err = s.rootfs(ctx, c); err != nil {
			return nil, errgrpc.ToGRPC(err)
		}
	}
	opts := runtime.CreateOpts{
		Runtime: c.Runtime.Name, RuntimePath: req.RuntimePath, Spec: spec, Rootfs: rootfs,
		IO:      runtime.IO{Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr, Terminal: req.Terminal},
		Options: c.Runtime.Options,
	}
	if req.Options != nil {
		opts.Options = req.Options
	}
	t, err := s.runtime.Create(ctx, req.ContainerID, opts)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.CreateTaskResponse{ContainerID: req.ContainerID, Pid: t.Pid}, nil
}

func (s *tasksService) rootfs(ctx context.Context, c containers.Container) ([]mount.Mount, error) {
	sn, err := s.snapshotter(c.Snapshotter)
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", c.ID, err)
	}
	ms, err := sn.Mounts(ctx, c.SnapshotKey)
	if err != nil {
		return nil, fmt.Errorf("rootfs of container %q: snapshot %q in %s: %w", c.ID, c.SnapshotKey, c.Snapshotter, err)
	}
	return ms, nil
}

func (s *tasksService) task(ctx context.Context, id string) (*runtime.Task, error) {
	t, err := s.runtime.Get(ctx, id)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return t, nil
}

func (s *tasksService) Start(ctx context.Context, req *api.StartRequest) (*api.StartResponse, error) {
	t, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	pid, err := t.Start(ctx, req.ExecID)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.StartResponse{Pid: pid}, nil
}

func (s *tasksService) Delete(ctx context.Context, req *api.DeleteTaskRequest) (*api.DeleteResponse, error) {
	exit, err := s.runtime.Delete(ctx, req.ContainerID)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.DeleteResponse{ID: req.ContainerID, Pid: exit.Pid, ExitStatus: exit.Status, ExitedAt: protoconv.ToTime(exit.ExitedAt)}, nil
}

func (s *tasksService) DeleteProcess(ctx context.Context, req *api.DeleteProcessRequest) (*api.DeleteResponse, error) {
	t, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	exit, err := t.DeleteProcess(ctx, req.ExecID)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.DeleteResponse{ID: req.ExecID, Pid: exit.Pid, ExitStatus: exit.Status, ExitedAt: protoconv.ToTime(exit.ExitedAt)}, nil
}

func processToProto(containerID string, st runtime.State) *tasktypes.Process {
	id := st.ExecID
	if id == "" {
		id = containerID
	}
	p := &tasktypes.Process{
		ContainerID: containerID, ID: id, Pid: st.Pid, Status: runtime.StatusToProto(st.Status),
		Stdin: st.IO.Stdin, Stdout: st.IO.Stdout, Stderr: st.IO.Stderr, Terminal: st.IO.Terminal,
		ExitStatus: st.ExitStatus,
	}
	if !st.ExitedAt.IsZero() {
		p.ExitedAt = protoconv.ToTime(st.ExitedAt)
	}
	return p
}

func (s *tasksService) Get(ctx context.Context, req *api.GetRequest) (*api.GetResponse, error) {
	t, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	st, err := t.State(ctx, req.ExecID)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.GetResponse{Process: processToProto(req.ContainerID, st)}, nil
}

// taskFields are the filter fields of List and Metrics.
func taskFields(t *runtime.Task, st *runtime.State) filters.AdapterFunc {
	return func(fp []string) (string, bool) {
		if len(fp) != 1 {
			return "", false
		}
		switch fp[0] {
		case "id", "container_id":
			return t.ID, true
		case "runtime":
			return t.Runtime, t.Runtime != ""
		case "status":
			if st == nil {
				return "", false
			}
			return string(st.Status), true
		case "pid":
			if st == nil {
				return "", false
			}
			return fmt.Sprint(st.Pid), true
		}
		return "", false
	}
}

func (s *tasksService) List(ctx context.Context, req *api.ListTasksRequest) (*api.ListTasksResponse, error) {
	f, err := filters.ParseAll(nonEmpty(req.Filter)...)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	ts, err := s.runtime.Tasks(ctx)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	resp := &api.ListTasksResponse{}
	for _, t := range ts {
		// One shim that hangs (stopped, or stuck) must not hang the
		// listing of every task: it is listed with status unknown.
		sctx, cancel := context.WithTimeout(ctx, listStateTimeout)
		st, err := t.State(sctx, "")
		cancel()
		if err != nil {
			// A task that vanished between the list and its state is
			// not listed.
			if errdefs.IsNotFound(err) {
				continue
			}
			st = runtime.State{ID: t.ID, Pid: t.Pid, Status: runtime.StatusUnknown}
		}
		if !f.Match(taskFields(t, &st)) {
			continue
		}
		resp.Tasks = append(resp.Tasks, processToProto(t.ID, st))
	}
	return resp, nil
}

// listStateTimeout bounds how long List waits for one shim's answer.
const listStateTimeout = 2 * time.Second

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if strings.TrimSpace(s) != "" {
			out = append(out, s)
		}
	}
	return out
}

func (s *tasksService) Kill(ctx context.Context, req *api.KillRequest) (*emptypb.Empty, error) {
	t, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	if err := t.Kill(ctx, req.ExecID, req.Signal, req.All); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *tasksService) Exec(ctx context.Context, req *api.ExecProcessRequest) (*emptypb.Empty, error) {
	if req.ExecID == "" {
		return nil, errgrpc.ToGRPC(fmt.Errorf("exec in task %q: exec id must not be empty: %w", req.ContainerID, errdefs.ErrInvalidArgument))
	}
	if req.Spec == nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("exec %q in task %q: process spec is missing: %w", req.ExecID, req.ContainerID, errdefs.ErrInvalidArgument))
	}
	t, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	io := runtime.IO{Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr, Terminal: req.Terminal}
	if err := t.Exec(ctx, req.ExecID, io, req.Spec); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *tasksService) ResizePty(ctx context.Context, req *api.ResizePtyRequest) (*emptypb.Empty, error) {
	t, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	if err := t.ResizePty(ctx, req.ExecID, req.Width, req.Height); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *tasksService) CloseIO(ctx context.Context, req *api.CloseIORequest) (*emptypb.Empty, error) {
	t, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	if err := t.CloseIO(ctx, req.ExecID, req.Stdin); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *tasksService) Pause(ctx context.Context, req *api.PauseTaskRequest) (*emptypb.Empty, error) {
	t, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	if err := t.Pause(ctx); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *tasksService) Resume(ctx context.Context, req *api.ResumeTaskRequest) (*emptypb.Empty, error) {
	t, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	if err := t.Resume(ctx); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *tasksService) ListPids(ctx context.Context, req *api.ListPidsRequest) (*api.ListPidsResponse, error) {
	t, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	ps, err := t.Pids(ctx)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.ListPidsResponse{Processes: ps}, nil
}

func (s *tasksService) Checkpoint(ctx context.Context, req *api.CheckpointTaskRequest) (*api.CheckpointTaskResponse, error) {
	if _, err := s.task(ctx, req.ContainerID); err != nil {
		return nil, err
	}
	return nil, errgrpc.ToGRPC(fmt.Errorf("checkpoint of task %q needs CRIU support, which hull does not have yet: %w", req.ContainerID, errdefs.ErrNotImplemented))
}

func (s *tasksService) Update(ctx context.Context, req *api.UpdateTaskRequest) (*emptypb.Empty, error) {
	t, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	if err := t.Update(ctx, req.Resources, req.Annotations); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *tasksService) Metrics(ctx context.Context, req *api.MetricsRequest) (*api.MetricsResponse, error) {
	f, err := filters.ParseAll(nonEmpty(req.Filters...)...)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	ts, err := s.runtime.Tasks(ctx)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	resp := &api.MetricsResponse{}
	for _, t := range ts {
		if !f.Match(taskFields(t, nil)) {
			continue
		}
		stats, err := t.Stats(ctx)
		if err != nil {
			if errdefs.IsNotFound(err) {
				continue
			}
			return nil, errgrpc.ToGRPC(err)
		}
		resp.Metrics = append(resp.Metrics, &types.Metric{Timestamp: protoconv.ToTime(time.Now()), ID: t.ID, Data: stats})
	}
	return resp, nil
}

func (s *tasksService) Wait(ctx context.Context, req *api.WaitRequest) (*api.WaitResponse, error) {
	t, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	exit, err := t.Wait(ctx, req.ExecID)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.WaitResponse{ExitStatus: exit.Status, ExitedAt: protoconv.ToTime(exit.ExitedAt)}, nil
}
