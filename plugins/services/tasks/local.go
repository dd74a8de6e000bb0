package tasks

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	api "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/core/filters"
	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/mount/manager"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/core/runtime"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/internal/protoconv"
)

// Local is the tasks service in process: containerd's TasksClient over a
// runtime, so that the client library drives it exactly as it drives hulld's
// socket. A task is created from its container record: spec, runtime and,
// when the request carries no rootfs, the mounts of the container's
// snapshot. Errors are errdefs classes; the gRPC adapter maps them.
type Local struct {
	runtime      runtime.Runtime
	containers   containers.Store
	snapshotters Snapshotters
	// mounts activates what a rootfs needs of the daemon (formatted
	// mounts, loop devices) before the shim sees it; nil for none.
	mounts manager.Activator
}

// Snapshotters finds the snapshotter a container's record names.
type Snapshotters interface {
	Snapshotter(name string) (snapshots.Snapshotter, error)
}

// NewLocal returns the tasks service over rt, reading container records
// from cs and rootfs mounts from sn.
func NewLocal(rt runtime.Runtime, cs containers.Store, sn Snapshotters) *Local {
	return &Local{runtime: rt, containers: cs, snapshotters: sn}
}

// WithMountManager makes Create activate each task's rootfs through m, as
// containerd 2.2 does, and Delete deactivate it.
func (s *Local) WithMountManager(m manager.Activator) *Local {
	s.mounts = m
	return s
}

var _ api.TasksClient = (*Local)(nil)

func (s *Local) Create(ctx context.Context, req *api.CreateTaskRequest, _ ...grpc.CallOption) (_ *api.CreateTaskResponse, retErr error) {
	if req.Checkpoint != nil {
		return nil, fmt.Errorf("restoring task %q from a checkpoint needs CRIU support, which hull does not have yet: %w", req.ContainerID, errdefs.ErrNotImplemented)
	}
	c, err := s.containers.Get(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	var spec []byte
	if c.Spec != nil {
		spec = c.Spec.GetValue()
	}
	rootfs := protoconv.MountsFromProto(req.Rootfs)
	if len(rootfs) == 0 && c.SnapshotKey != "" {
		if rootfs, err = s.rootfs(ctx, c); err != nil {
			return nil, err
		}
	}
	rootfs, owned, err := s.activate(ctx, req.ContainerID, rootfs)
	if err != nil {
		return nil, err
	}
	if owned {
		defer func() {
			if retErr != nil {
				s.deactivate(ctx, req.ContainerID)
			}
		}()
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
		return nil, err
	}
	return &api.CreateTaskResponse{ContainerID: req.ContainerID, Pid: t.Pid()}, nil
}

// activate has the mount manager perform what rootfs needs of the daemon,
// under the task's ID and with a back reference to the container (so gc
// keeps the activation while the container exists), and returns the mounts
// left for the shim. A rootfs that needs nothing (NotImplemented) goes to
// the shim as it is; an activation left by an earlier task of the
// container is used again, as containerd does. owned says whether this
// call made the activation.
func (s *Local) activate(ctx context.Context, id string, rootfs []mount.Mount) (_ []mount.Mount, owned bool, _ error) {
	if s.mounts == nil || len(rootfs) == 0 {
		return rootfs, false, nil
	}
	info, err := s.mounts.Activate(ctx, id, rootfs, manager.WithLabels(map[string]string{"containerd.io/gc.bref.container": id}))
	switch {
	case err == nil:
		return info.System, true, nil
	case errdefs.IsNotImplemented(err):
		return rootfs, false, nil
	case errdefs.IsAlreadyExists(err):
		if info, err = s.mounts.Info(ctx, id); err != nil {
			return nil, false, fmt.Errorf("rootfs of task %q: activation already there: %w", id, err)
		}
		return info.System, false, nil
	}
	return nil, false, fmt.Errorf("rootfs of task %q: %w", id, err)
}

// deactivate undoes the task's activation, if it has one; a failure is
// logged, and gc retries once the container is gone.
func (s *Local) deactivate(ctx context.Context, id string) {
	if s.mounts == nil {
		return
	}
	if err := s.mounts.Deactivate(context.WithoutCancel(ctx), id); err != nil && !errdefs.IsNotFound(err) {
		slog.Warn("tasks: deactivate rootfs mounts", "namespace", namespaceOf(ctx), "id", id, "error", err)
	}
}

func namespaceOf(ctx context.Context) string {
	ns, _ := namespaces.Namespace(ctx)
	return ns
}

func (s *Local) rootfs(ctx context.Context, c containers.Container) ([]mount.Mount, error) {
	sn, err := s.snapshotters.Snapshotter(c.Snapshotter)
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", c.ID, err)
	}
	ms, err := sn.Mounts(ctx, c.SnapshotKey)
	if err != nil {
		return nil, fmt.Errorf("rootfs of container %q: snapshot %q in %s: %w", c.ID, c.SnapshotKey, c.Snapshotter, err)
	}
	return ms, nil
}

func (s *Local) task(ctx context.Context, id string) (runtime.Task, error) {
	t, err := s.runtime.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return t, nil
}

func (s *Local) Start(ctx context.Context, req *api.StartRequest, _ ...grpc.CallOption) (*api.StartResponse, error) {
	t, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	pid, err := t.Start(ctx, req.ExecID)
	if err != nil {
		return nil, err
	}
	return &api.StartResponse{Pid: pid}, nil
}

func (s *Local) Delete(ctx context.Context, req *api.DeleteTaskRequest, _ ...grpc.CallOption) (*api.DeleteResponse, error) {
	exit, err := s.runtime.Delete(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	s.deactivate(ctx, req.ContainerID)
	return &api.DeleteResponse{ID: req.ContainerID, Pid: exit.Pid, ExitStatus: exit.Status, ExitedAt: protoconv.ToTime(exit.ExitedAt)}, nil
}

func (s *Local) DeleteProcess(ctx context.Context, req *api.DeleteProcessRequest, _ ...grpc.CallOption) (*api.DeleteResponse, error) {
	t, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	exit, err := t.DeleteProcess(ctx, req.ExecID)
	if err != nil {
		return nil, err
	}
	return &api.DeleteResponse{ID: req.ExecID, Pid: exit.Pid, ExitStatus: exit.Status, ExitedAt: protoconv.ToTime(exit.ExitedAt)}, nil
}

func processToProto(containerID string, st runtime.State) *tasktypes.Process {
	id := st.ExecID
	if id == "" {
		id = containerID
	}
	p := &tasktypes.Process{
		ContainerID: containerID, ID: id, Pid: st.Pid, Status: statusToProto(st.Status),
		Stdin: st.IO.Stdin, Stdout: st.IO.Stdout, Stderr: st.IO.Stderr, Terminal: st.IO.Terminal,
		ExitStatus: st.ExitStatus,
	}
	if !st.ExitedAt.IsZero() {
		p.ExitedAt = protoconv.ToTime(st.ExitedAt)
	}
	return p
}

func (s *Local) Get(ctx context.Context, req *api.GetRequest, _ ...grpc.CallOption) (*api.GetResponse, error) {
	t, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	st, err := t.State(ctx, req.ExecID)
	if err != nil {
		return nil, err
	}
	return &api.GetResponse{Process: processToProto(req.ContainerID, st)}, nil
}

// taskFields are the filter fields of List and Metrics.
func taskFields(t runtime.Task, st *runtime.State) filters.AdapterFunc {
	return func(fp []string) (string, bool) {
		if len(fp) != 1 {
			return "", false
		}
		switch fp[0] {
		case "id", "container_id":
			return t.ID(), true
		case "runtime":
			return t.RuntimeName(), t.RuntimeName() != ""
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

func (s *Local) List(ctx context.Context, req *api.ListTasksRequest, _ ...grpc.CallOption) (*api.ListTasksResponse, error) {
	f, err := filters.ParseAll(nonEmpty(req.Filter)...)
	if err != nil {
		return nil, err
	}
	ts, err := s.runtime.Tasks(ctx)
	if err != nil {
		return nil, err
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
			st = runtime.State{ID: t.ID(), Pid: t.Pid(), Status: runtime.StatusUnknown}
		}
		if !f.Match(taskFields(t, &st)) {
			continue
		}
		resp.Tasks = append(resp.Tasks, processToProto(t.ID(), st))
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

func (s *Local) Kill(ctx context.Context, req *api.KillRequest, _ ...grpc.CallOption) (*emptypb.Empty, error) {
	t, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	if err := t.Kill(ctx, req.ExecID, req.Signal, req.All); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (s *Local) Exec(ctx context.Context, req *api.ExecProcessRequest, _ ...grpc.CallOption) (*emptypb.Empty, error) {
	if req.ExecID == "" {
		return nil, fmt.Errorf("exec in task %q: exec id must not be empty: %w", req.ContainerID, errdefs.ErrInvalidArgument)
	}
	if req.Spec == nil {
		return nil, fmt.Errorf("exec %q in task %q: process spec is missing: %w", req.ExecID, req.ContainerID, errdefs.ErrInvalidArgument)
	}
	t, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	io := runtime.IO{Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr, Terminal: req.Terminal}
	if err := t.Exec(ctx, req.ExecID, io, req.Spec); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (s *Local) ResizePty(ctx context.Context, req *api.ResizePtyRequest, _ ...grpc.CallOption) (*emptypb.Empty, error) {
	t, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	if err := t.ResizePty(ctx, req.ExecID, req.Width, req.Height); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (s *Local) CloseIO(ctx context.Context, req *api.CloseIORequest, _ ...grpc.CallOption) (*emptypb.Empty, error) {
	t, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	if err := t.CloseIO(ctx, req.ExecID, req.Stdin); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (s *Local) Pause(ctx context.Context, req *api.PauseTaskRequest, _ ...grpc.CallOption) (*emptypb.Empty, error) {
	t, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	if err := t.Pause(ctx); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (s *Local) Resume(ctx context.Context, req *api.ResumeTaskRequest, _ ...grpc.CallOption) (*emptypb.Empty, error) {
	t, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	if err := t.Resume(ctx); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (s *Local) ListPids(ctx context.Context, req *api.ListPidsRequest, _ ...grpc.CallOption) (*api.ListPidsResponse, error) {
	t, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	ps, err := t.Pids(ctx)
	if err != nil {
		return nil, err
	}
	resp := &api.ListPidsResponse{Processes: make([]*tasktypes.ProcessInfo, 0, len(ps))}
	for _, p := range ps {
		resp.Processes = append(resp.Processes, &tasktypes.ProcessInfo{Pid: p.Pid, Info: typeurl.MarshalProto(p.Info)})
	}
	return resp, nil
}

func (s *Local) Checkpoint(ctx context.Context, req *api.CheckpointTaskRequest, _ ...grpc.CallOption) (*api.CheckpointTaskResponse, error) {
	if _, err := s.task(ctx, req.ContainerID); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("checkpoint of task %q needs CRIU support, which hull does not have yet: %w", req.ContainerID, errdefs.ErrNotImplemented)
}

func (s *Local) Update(ctx context.Context, req *api.UpdateTaskRequest, _ ...grpc.CallOption) (*emptypb.Empty, error) {
	t, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	// A request without resources must reach the runtime as a nil
	// interface, not as an interface holding a nil pointer.
	var resources typeurl.Any
	if req.Resources != nil {
		resources = req.Resources
	}
	if err := t.Update(ctx, resources, req.Annotations); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (s *Local) Metrics(ctx context.Context, req *api.MetricsRequest, _ ...grpc.CallOption) (*api.MetricsResponse, error) {
	f, err := filters.ParseAll(nonEmpty(req.Filters...)...)
	if err != nil {
		return nil, err
	}
	ts, err := s.runtime.Tasks(ctx)
	if err != nil {
		return nil, err
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
			return nil, err
		}
		resp.Metrics = append(resp.Metrics, &types.Metric{Timestamp: protoconv.ToTime(time.Now()), ID: t.ID(), Data: typeurl.MarshalProto(stats)})
	}
	return resp, nil
}

func (s *Local) Wait(ctx context.Context, req *api.WaitRequest, _ ...grpc.CallOption) (*api.WaitResponse, error) {
	t, err := s.task(ctx, req.ContainerID)
	if err != nil {
		return nil, err
	}
	exit, err := t.Wait(ctx, req.ExecID)
	if err != nil {
		return nil, err
	}
	return &api.WaitResponse{ExitStatus: exit.Status, ExitedAt: protoconv.ToTime(exit.ExitedAt)}, nil
}

// statusToProto maps a Status to the API's enum.
func statusToProto(s runtime.Status) tasktypes.Status {
	switch s {
	case runtime.StatusCreated:
		return tasktypes.Status_CREATED
	case runtime.StatusRunning:
		return tasktypes.Status_RUNNING
	case runtime.StatusStopped:
		return tasktypes.Status_STOPPED
	case runtime.StatusPaused:
		return tasktypes.Status_PAUSED
	case runtime.StatusPausing:
		return tasktypes.Status_PAUSING
	}
	return tasktypes.Status_UNKNOWN
}
