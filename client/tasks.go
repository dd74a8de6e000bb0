package client

import (
	"context"
	"fmt"
	"syscall"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hullrt/hull/client/cio"
	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/internal/protoconv"
)

// UnknownExitStatus is the exit code reported when the real one is not
// known: the wait failed or was cancelled.
const UnknownExitStatus = 255

// ExitStatus is how a process ended.
type ExitStatus struct {
	// Code is the exit code, or 128+signal for a process killed by a
	// signal; UnknownExitStatus when Err is set.
	Code     uint32
	ExitedAt time.Time
	// Err is why the exit is unknown: the wait failed or its context
	// ended.
	Err error
}

// Result returns the fields of s, for the common one-line unpacking.
func (s ExitStatus) Result() (uint32, time.Time, error) { return s.Code, s.ExitedAt, s.Err }

// ProcessStatus is the state of a task or exec process.
type ProcessStatus string

// The states of a process, as containerd names them.
const (
	Created ProcessStatus = "created"
	Running ProcessStatus = "running"
	Stopped ProcessStatus = "stopped"
	Paused  ProcessStatus = "paused"
	Pausing ProcessStatus = "pausing"
	Unknown ProcessStatus = "unknown"
)

// Status is the state of a process with its exit, once stopped.
type Status struct {
	Status     ProcessStatus
	ExitStatus uint32
	ExitTime   time.Time
}

func processStatusFromProto(s task.Status) ProcessStatus {
	switch s {
	case task.Status_CREATED:
		return Created
	case task.Status_RUNNING:
		return Running
	case task.Status_STOPPED:
		return Stopped
	case task.Status_PAUSED:
		return Paused
	case task.Status_PAUSING:
		return Pausing
	}
	return Unknown
}

// statusOf returns the state the daemon reports for p.
func statusOf(p *task.Process) Status {
	return Status{Status: processStatusFromProto(p.GetStatus()), ExitStatus: p.GetExitStatus(), ExitTime: protoconv.FromTime(p.GetExitedAt())}
}

// Process is a process of a task: the task's init process (Task) or an
// exec'd one.
type Process interface {
	// ID is the container id for the task itself, the exec id otherwise.
	ID() string
	// Pid is the process id on the host; 0 before the process started,
	// for execs.
	Pid() uint32
	// Start starts the process.
	Start(ctx context.Context) error
	// Delete removes the stopped process and closes its IO, once the
	// output is copied to the end.
	Delete(ctx context.Context, opts ...ProcessDeleteOpts) (ExitStatus, error)
	// Kill sends signal to the process.
	Kill(ctx context.Context, signal syscall.Signal, opts ...KillOpts) error
	// Wait returns a channel that gets the process's exit status (see
	// Task.Wait).
	Wait(ctx context.Context) (<-chan ExitStatus, error)
	// CloseIO closes the process's stdin in the shim (WithStdinCloser).
	CloseIO(ctx context.Context, opts ...IOCloserOpts) error
	// ResizePty resizes the process's terminal.
	ResizePty(ctx context.Context, width, height uint32) error
	// IO is the client's side of the process's stdio.
	IO() cio.IO
	// Status returns the process's state.
	Status(ctx context.Context) (Status, error)
}

// TaskService returns the daemon's raw tasks API client, for calls the
// Task type does not wrap.
func (c *Client) TaskService() tasksapi.TasksClient { return c.services.Tasks }

// getTask returns the daemon's view of a process.
func (c *Client) getTask(ctx context.Context, containerID, execID string) (*task.Process, error) {
	resp, err := c.TaskService().Get(ctx, &tasksapi.GetRequest{ContainerID: containerID, ExecID: execID})
	if err != nil {
		return nil, err
	}
	return resp.Process, nil
}

// TaskInfo is what NewTaskOpts set up for a new task.
type TaskInfo struct {
	// RootFS, when set, is mounted as the root filesystem instead of the
	// container's snapshot.
	RootFS []mount.Mount
	// Options are the runtime's task options; nil sends the container's
	// runtime options.
	Options any
	// RuntimePath runs this shim binary instead of the one the runtime
	// name resolves to.
	RuntimePath string
	// Runtime is the container's runtime name, for options that depend
	// on it.
	Runtime string
}

// NewTaskOpts sets up a new task.
type NewTaskOpts func(ctx context.Context, client *Client, info *TaskInfo) error

// WithRootFS mounts mounts as the task's root filesystem instead of the
// container's snapshot.
func WithRootFS(mounts []mount.Mount) NewTaskOpts {
	return func(_ context.Context, _ *Client, info *TaskInfo) error {
		info.RootFS = mounts
		return nil
	}
}

// WithTaskOptions sends options (encoded with typeurl unless it is a
// typeurl.Any) as the runtime's task options.
func WithTaskOptions(options any) NewTaskOpts {
	return func(_ context.Context, _ *Client, info *TaskInfo) error {
		info.Options = options
		return nil
	}
}

// WithRuntimePath runs the shim binary at path.
func WithRuntimePath(path string) NewTaskOpts {
	return func(_ context.Context, _ *Client, info *TaskInfo) error {
		info.RuntimePath = path
		return nil
	}
}

// Task is the running instance of a container: its init process, plus the
// processes exec'd in it. A Task is safe for concurrent use.
type Task struct {
	client      *Client
	containerID string
	pid         uint32
	io          cio.IO
}

var _ Process = (*Task)(nil)

// NewTask creates the container's task: the shim and the init process,
// created but not started (Start starts it). The root filesystem is the
// container's snapshot (its mounts, from the snapshotter) unless WithRootFS
// says otherwise; stdio are what ioCreate makes (nil: none). Runtime
// options are the container's own unless WithTaskOptions gives others.
//
// To never miss the exit, call Wait before Start.
func (ct *Container) NewTask(ctx context.Context, ioCreate cio.Creator, opts ...NewTaskOpts) (*Task, error) {
	rec, err := ct.Info(ctx)
	if err != nil {
		return nil, err
	}
	info := TaskInfo{Runtime: rec.Runtime.Name}
	for _, o := range opts {
		if err := o(ctx, ct.client, &info); err != nil {
			return nil, err
		}
	}
	req := &tasksapi.CreateTaskRequest{ContainerID: ct.id, RuntimePath: info.RuntimePath}
	switch {
	case info.RootFS != nil:
		req.Rootfs = protoconv.MountsToProto(info.RootFS)
	case rec.SnapshotKey != "":
		ms, err := ct.client.SnapshotService(rec.Snapshotter).Mounts(ctx, rec.SnapshotKey)
		if err != nil {
			return nil, fmt.Errorf("container %q: mounts of snapshot %q: %w", ct.id, rec.SnapshotKey, err)
		}
		req.Rootfs = protoconv.MountsToProto(ms)
	}
	options := info.Options
	if options == nil && rec.Runtime.Options != nil {
		options = rec.Runtime.Options
	}
	if options != nil {
		a, err := toAny(options)
		if err != nil {
			return nil, fmt.Errorf("container %q: task options: %w", ct.id, err)
		}
		req.Options = typeurl.MarshalProto(a)
	}
	if ioCreate == nil {
		ioCreate = cio.NullIO
	}
	pio, err := ioCreate(ct.id)
	if err != nil {
		return nil, err
	}
	cfg := pio.Config()
	req.Stdin, req.Stdout, req.Stderr, req.Terminal = cfg.Stdin, cfg.Stdout, cfg.Stderr, cfg.Terminal
	resp, err := ct.client.TaskService().Create(ctx, req)
	if err != nil {
		pio.Cancel()
		pio.Close()
		return nil, err
	}
	return &Task{client: ct.client, containerID: ct.id, pid: resp.Pid, io: pio}, nil
}

// Task loads the container's existing task; NotFound if it has none.
// attach, when not nil, connects to the task's stdio (cio.NewAttach).
func (ct *Container) Task(ctx context.Context, attach cio.Attach) (*Task, error) {
	p, err := ct.client.getTask(ctx, ct.id, "")
	if err != nil {
		return nil, err
	}
	t := &Task{client: ct.client, containerID: ct.id, pid: p.Pid}
	if attach != nil {
		if t.io, err = attach(cio.Config{Terminal: p.Terminal, Stdin: p.Stdin, Stdout: p.Stdout, Stderr: p.Stderr}); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// ID is the container's id.
func (t *Task) ID() string { return t.containerID }

// Pid is the init process's pid.
func (t *Task) Pid() uint32 { return t.pid }

// IO is the client's side of the init process's stdio; nil for a task
// loaded without attaching.
func (t *Task) IO() cio.IO { return t.io }

// Start starts the init process. On failure the IO is closed: the process
// will never use it.
func (t *Task) Start(ctx context.Context) error {
	resp, err := t.client.TaskService().Start(ctx, &tasksapi.StartRequest{ContainerID: t.containerID})
	if err != nil {
		if t.io != nil {
			t.io.Cancel()
			t.io.Close()
		}
		return err
	}
	t.pid = resp.Pid
	return nil
}

// wait runs the Wait call in a goroutine, which ends when the process
// exits or ctx ends, and delivers the result on a channel of one.
func (c *Client) wait(ctx context.Context, containerID, execID string) <-chan ExitStatus {
	ch := make(chan ExitStatus, 1)
	go func() {
		defer close(ch)
		resp, err := c.TaskService().Wait(ctx, &tasksapi.WaitRequest{ContainerID: containerID, ExecID: execID})
		if err != nil {
			ch <- ExitStatus{Code: UnknownExitStatus, Err: err}
			return
		}
		ch <- ExitStatus{Code: resp.ExitStatus, ExitedAt: protoconv.FromTime(resp.ExitedAt)}
	}()
	return ch
}

// Wait returns a channel that gets the init process's exit status once it
// exits, then is closed. Errors of the wait (no such task, ctx ended)
// arrive as the status's Err. Wait may be called before Start, and should
// be, to be sure to see a quick exit. The output may still be in flight
// when the exit arrives: Delete waits for it.
func (t *Task) Wait(ctx context.Context) (<-chan ExitStatus, error) {
	return t.client.wait(ctx, t.containerID, ""), nil
}

// KillInfo is what KillOpts set up.
type KillInfo struct {
	// All signals every process of the container, not just the init
	// process.
	All bool
	// ExecID signals this exec instead of the init process.
	ExecID string
}

// KillOpts configures Kill.
type KillOpts func(ctx context.Context, info *KillInfo) error

// WithKillAll signals every process of the container.
func WithKillAll(_ context.Context, info *KillInfo) error {
	info.All = true
	return nil
}

// WithKillExecID signals the exec execID.
func WithKillExecID(execID string) KillOpts {
	return func(_ context.Context, info *KillInfo) error {
		info.ExecID = execID
		return nil
	}
}

func (c *Client) kill(ctx context.Context, containerID, execID string, signal syscall.Signal, opts []KillOpts) error {
	info := KillInfo{ExecID: execID}
	for _, o := range opts {
		if err := o(ctx, &info); err != nil {
			return err
		}
	}
	_, err := c.TaskService().Kill(ctx, &tasksapi.KillRequest{ContainerID: containerID, ExecID: info.ExecID, Signal: uint32(signal), All: info.All})
	return err
}

// Kill sends signal to the init process (or, with options, to every
// process or to an exec).
func (t *Task) Kill(ctx context.Context, signal syscall.Signal, opts ...KillOpts) error {
	return t.client.kill(ctx, t.containerID, "", signal, opts)
}

// ProcessDeleteOpts runs before a process is deleted.
type ProcessDeleteOpts func(ctx context.Context, p Process) error

// WithProcessKill kills a process that still runs (SIGKILL, every process
// of the container for a task) and waits for it before it is deleted.
func WithProcessKill(ctx context.Context, p Process) error {
	// An exited process needs no kill: asking is one cheap call, while a
	// kill runs the runtime (runc kill) for nothing.
	if st, err := p.Status(ctx); err == nil && st.Status == Stopped {
		return nil
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	exited, err := p.Wait(wctx)
	if errdefs.IsNotFound(err) {
		return nil // gone already: the delete says so
	}
	if err != nil {
		return err
	}
	var opts []KillOpts
	if _, isTask := p.(*Task); isTask {
		opts = append(opts, WithKillAll)
	}
	if err := p.Kill(ctx, syscall.SIGKILL, opts...); err != nil {
		// Gone, or never started (an exec whose start failed): no
		// exit will come, and the delete needs none.
		if errdefs.IsNotFound(err) || errdefs.IsFailedPrecondition(err) {
			return nil
		}
		return err
	}
	select {
	case st := <-exited:
		if st.Err != nil && !errdefs.IsNotFound(st.Err) {
			return st.Err
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// finishIO waits for the output and closes pio; the shim has closed its
// ends once the process is deleted, so the wait ends.
func finishIO(pio cio.IO) error {
	if pio == nil {
		return nil
	}
	pio.Cancel()
	pio.Wait()
	return pio.Close()
}

// Delete deletes the stopped task (the shim and its state) and then, once
// its output is copied, closes its IO. A running or paused task is
// FailedPrecondition unless WithProcessKill is given.
func (t *Task) Delete(ctx context.Context, opts ...ProcessDeleteOpts) (ExitStatus, error) {
	for _, o := range opts {
		if err := o(ctx, t); err != nil {
			return ExitStatus{}, err
		}
	}
	st, err := t.Status(ctx)
	if err != nil && !errdefs.IsNotFound(err) {
		return ExitStatus{}, err
	}
	if st.Status == Running || st.Status == Paused || st.Status == Pausing {
		return ExitStatus{}, fmt.Errorf("task %q is %s: it must be stopped before deletion: %w", t.containerID, st.Status, errdefs.ErrFailedPrecondition)
	}
	resp, err := t.client.TaskService().Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: t.containerID})
	if errdefs.IsNotFound(err) {
		// Deleted already: by another client, or by a delete whose answer
		// was lost when hulld died. Nothing writes to the IO any more, so
		// its FIFOs go rather than stay behind for ever.
		finishIO(t.io)
		t.io = nil
	}
	if err != nil {
		return ExitStatus{}, err
	}
	if err := finishIO(t.io); err != nil {
		return ExitStatus{}, fmt.Errorf("task %q: close io: %w", t.containerID, err)
	}
	return ExitStatus{Code: resp.ExitStatus, ExitedAt: protoconv.FromTime(resp.ExitedAt)}, nil
}

// Status returns the init process's state.
func (t *Task) Status(ctx context.Context) (Status, error) {
	p, err := t.client.getTask(ctx, t.containerID, "")
	if err != nil {
		return Status{Status: Unknown}, err
	}
	return statusOf(p), nil
}

// Pause freezes every process of the task.
func (t *Task) Pause(ctx context.Context) error {
	_, err := t.client.TaskService().Pause(ctx, &tasksapi.PauseTaskRequest{ContainerID: t.containerID})
	return err
}

// Resume thaws a paused task.
func (t *Task) Resume(ctx context.Context) error {
	_, err := t.client.TaskService().Resume(ctx, &tasksapi.ResumeTaskRequest{ContainerID: t.containerID})
	return err
}

// ProcessInfo is one process of a task, as Pids reports it.
type ProcessInfo struct {
	Pid uint32
	// Info is runtime specific (for runc, the exec id of the process, if
	// it is an exec), still encoded; nil if none.
	Info typeurl.Any
}

// Pids lists the processes of the task.
func (t *Task) Pids(ctx context.Context) ([]ProcessInfo, error) {
	resp, err := t.client.TaskService().ListPids(ctx, &tasksapi.ListPidsRequest{ContainerID: t.containerID})
	if err != nil {
		return nil, err
	}
	out := make([]ProcessInfo, 0, len(resp.Processes))
	for _, p := range resp.Processes {
		out = append(out, ProcessInfo{Pid: p.Pid, Info: protoconv.AnyFromProto(p.Info)})
	}
	return out, nil
}

// IOCloseInfo is what IOCloserOpts set up.
type IOCloseInfo struct {
	// Stdin closes the process's stdin, so it reads EOF.
	Stdin bool
}

// IOCloserOpts configures CloseIO.
type IOCloserOpts func(*IOCloseInfo)

// WithStdinCloser closes stdin.
func WithStdinCloser(r *IOCloseInfo) { r.Stdin = true }

func (c *Client) closeIO(ctx context.Context, containerID, execID string, opts []IOCloserOpts) error {
	var info IOCloseInfo
	for _, o := range opts {
		o(&info)
	}
	_, err := c.TaskService().CloseIO(ctx, &tasksapi.CloseIORequest{ContainerID: containerID, ExecID: execID, Stdin: info.Stdin})
	return err
}

// CloseIO closes the init process's stdin in the shim (WithStdinCloser),
// for a process that reads until EOF while the client's stdin stays open.
func (t *Task) CloseIO(ctx context.Context, opts ...IOCloserOpts) error {
	return t.client.closeIO(ctx, t.containerID, "", opts)
}

// ResizePty resizes the init process's terminal.
func (t *Task) ResizePty(ctx context.Context, width, height uint32) error {
	_, err := t.client.TaskService().ResizePty(ctx, &tasksapi.ResizePtyRequest{ContainerID: t.containerID, Width: width, Height: height})
	return err
}

// UpdateTaskInfo is what UpdateTaskOpts set up.
type UpdateTaskInfo struct {
	// Resources are the new resource limits (*specs.LinuxResources).
	Resources any
	// Annotations are passed to the runtime.
	Annotations map[string]string
}

// UpdateTaskOpts configures Update.
type UpdateTaskOpts func(ctx context.Context, client *Client, info *UpdateTaskInfo) error

// WithResources sets the task's new resource limits.
func WithResources(resources *specs.LinuxResources) UpdateTaskOpts {
	return func(_ context.Context, _ *Client, info *UpdateTaskInfo) error {
		info.Resources = resources
		return nil
	}
}

// WithTaskAnnotations passes annotations to the runtime with an update.
func WithTaskAnnotations(annotations map[string]string) UpdateTaskOpts {
	return func(_ context.Context, _ *Client, info *UpdateTaskInfo) error {
		info.Annotations = annotations
		return nil
	}
}

// Update changes the resources of the running task.
func (t *Task) Update(ctx context.Context, opts ...UpdateTaskOpts) error {
	var info UpdateTaskInfo
	for _, o := range opts {
		if err := o(ctx, t.client, &info); err != nil {
			return err
		}
	}
	req := &tasksapi.UpdateTaskRequest{ContainerID: t.containerID, Annotations: info.Annotations}
	if info.Resources != nil {
		a, err := toAny(info.Resources)
		if err != nil {
			return fmt.Errorf("task %q: resources: %w", t.containerID, err)
		}
		req.Resources = typeurl.MarshalProto(a)
	}
	_, err := t.client.TaskService().Update(ctx, req)
	return err
}

// Metrics returns the task's resource usage (for Linux, a cgroups stats
// message in Data).
func (t *Task) Metrics(ctx context.Context) (*types.Metric, error) {
	resp, err := t.client.TaskService().Metrics(ctx, &tasksapi.MetricsRequest{Filters: []string{"id==" + t.containerID}})
	if err != nil {
		return nil, err
	}
	for _, m := range resp.Metrics {
		if m.ID == t.containerID {
			return m, nil
		}
	}
	return nil, fmt.Errorf("no metrics for task %q: %w", t.containerID, errdefs.ErrNotFound)
}

// CheckpointTaskInfo is what CheckpointTaskOpts set up.
type CheckpointTaskInfo struct {
	// ParentCheckpoint is the checkpoint to make an incremental one on.
	ParentCheckpoint string
	// Options are runtime specific checkpoint options.
	Options any
}

// CheckpointTaskOpts configures Checkpoint.
type CheckpointTaskOpts func(*CheckpointTaskInfo) error

// Checkpoint checkpoints the task and returns the descriptors of the
// blobs written. hulld does not implement it (errdefs.ErrNotImplemented).
func (t *Task) Checkpoint(ctx context.Context, opts ...CheckpointTaskOpts) ([]ocispec.Descriptor, error) {
	var info CheckpointTaskInfo
	for _, o := range opts {
		if err := o(&info); err != nil {
			return nil, err
		}
	}
	req := &tasksapi.CheckpointTaskRequest{ContainerID: t.containerID, ParentCheckpoint: info.ParentCheckpoint}
	if info.Options != nil {
		a, err := toAny(info.Options)
		if err != nil {
			return nil, fmt.Errorf("task %q: checkpoint options: %w", t.containerID, err)
		}
		req.Options = typeurl.MarshalProto(a)
	}
	resp, err := t.client.TaskService().Checkpoint(ctx, req)
	if err != nil {
		return nil, err
	}
	out := make([]ocispec.Descriptor, 0, len(resp.Descriptors))
	for _, d := range resp.Descriptors {
		out = append(out, protoconv.DescFromProto(d))
	}
	return out, nil
}

// Exec creates (but does not start) a process in the task from spec, with
// stdio from ioCreate (nil: none). execID must be unique in the task.
func (t *Task) Exec(ctx context.Context, execID string, spec *specs.Process, ioCreate cio.Creator) (Process, error) {
	if execID == "" {
		return nil, fmt.Errorf("task %q: exec id must not be empty: %w", t.containerID, errdefs.ErrInvalidArgument)
	}
	if spec == nil {
		return nil, fmt.Errorf("task %q: exec %q: no process spec: %w", t.containerID, execID, errdefs.ErrInvalidArgument)
	}
	a, err := typeurl.MarshalAny(spec)
	if err != nil {
		return nil, fmt.Errorf("task %q: exec %q: encode process spec: %w", t.containerID, execID, err)
	}
	if ioCreate == nil {
		ioCreate = cio.NullIO
	}
	pio, err := ioCreate(execID)
	if err != nil {
		return nil, err
	}
	cfg := pio.Config()
	_, err = t.client.TaskService().Exec(ctx, &tasksapi.ExecProcessRequest{
		ContainerID: t.containerID, ExecID: execID,
		Stdin: cfg.Stdin, Stdout: cfg.Stdout, Stderr: cfg.Stderr, Terminal: cfg.Terminal,
		Spec: typeurl.MarshalProto(a),
	})
	if err != nil {
		pio.Cancel()
		pio.Close()
		return nil, err
	}
	return &process{task: t, id: execID, io: pio}, nil
}

// LoadProcess returns the existing exec execID of the task; attach, when
// not nil, connects to its stdio.
func (t *Task) LoadProcess(ctx context.Context, execID string, attach cio.Attach) (Process, error) {
	p, err := t.client.getTask(ctx, t.containerID, execID)
	if err != nil {
		return nil, err
	}
	proc := &process{task: t, id: execID, pid: p.Pid}
	if attach != nil {
		if proc.io, err = attach(cio.Config{Terminal: p.Terminal, Stdin: p.Stdin, Stdout: p.Stdout, Stderr: p.Stderr}); err != nil {
			return nil, err
		}
	}
	return proc, nil
}

// process is an exec'd process of a task.
type process struct {
	task *Task
	id   string
	pid  uint32
	io   cio.IO
}

func (p *process) ID() string      { return p.id }
func (p *process) Pid() uint32     { return p.pid }
func (p *process) IO() cio.IO      { return p.io }
func (p *process) client() *Client { return p.task.client }

func (p *process) Start(ctx context.Context) error {
	resp, err := p.client().TaskService().Start(ctx, &tasksapi.StartRequest{ContainerID: p.task.containerID, ExecID: p.id})
	if err != nil {
		if p.io != nil {
			p.io.Cancel()
			p.io.Close()
		}
		return err
	}
	p.pid = resp.Pid
	return nil
}

func (p *process) Wait(ctx context.Context) (<-chan ExitStatus, error) {
	return p.client().wait(ctx, p.task.containerID, p.id), nil
}

func (p *process) Kill(ctx context.Context, signal syscall.Signal, opts ...KillOpts) error {
	return p.client().kill(ctx, p.task.containerID, p.id, signal, opts)
}

func (p *process) CloseIO(ctx context.Context, opts ...IOCloserOpts) error {
	return p.client().closeIO(ctx, p.task.containerID, p.id, opts)
}

func (p *process) ResizePty(ctx context.Context, width, height uint32) error {
	_, err := p.client().TaskService().ResizePty(ctx, &tasksapi.ResizePtyRequest{ContainerID: p.task.containerID, ExecID: p.id, Width: width, Height: height})
	return err
}

func (p *process) Status(ctx context.Context) (Status, error) {
	pr, err := p.client().getTask(ctx, p.task.containerID, p.id)
	if err != nil {
		return Status{Status: Unknown}, err
	}
	return statusOf(pr), nil
}

// Delete deletes the stopped exec and closes its IO once the output is
// copied; a running one is FailedPrecondition unless WithProcessKill is
// given.
func (p *process) Delete(ctx context.Context, opts ...ProcessDeleteOpts) (ExitStatus, error) {
	for _, o := range opts {
		if err := o(ctx, p); err != nil {
			return ExitStatus{}, err
		}
	}
	st, err := p.Status(ctx)
	if err != nil && !errdefs.IsNotFound(err) {
		return ExitStatus{}, err
	}
	if st.Status == Running || st.Status == Paused || st.Status == Pausing {
		return ExitStatus{}, fmt.Errorf("exec %q of task %q is %s: it must be stopped before deletion: %w", p.id, p.task.containerID, st.Status, errdefs.ErrFailedPrecondition)
	}
	resp, err := p.client().TaskService().DeleteProcess(ctx, &tasksapi.DeleteProcessRequest{ContainerID: p.task.containerID, ExecID: p.id})
	if err != nil {
		return ExitStatus{}, err
	}
	if err := finishIO(p.io); err != nil {
		return ExitStatus{}, fmt.Errorf("exec %q: close io: %w", p.id, err)
	}
	return ExitStatus{Code: resp.ExitStatus, ExitedAt: protoconv.FromTime(resp.ExitedAt)}, nil
}

// TaskState is one process as the daemon lists it.
type TaskState struct {
	ContainerID string
	// ExecID is empty for a task's init process.
	ExecID string
	Pid    uint32
	Status Status
	// Stdio are the paths the process was given.
	Stdio cio.Config
}

// Tasks lists the daemon's tasks in the namespace of ctx. filter uses
// containerd's filter syntax; containerd itself ignores it, so callers
// that depend on it check the result.
func (c *Client) Tasks(ctx context.Context, filter string) ([]TaskState, error) {
	resp, err := c.TaskService().List(ctx, &tasksapi.ListTasksRequest{Filter: filter})
	if err != nil {
		return nil, err
	}
	out := make([]TaskState, 0, len(resp.Tasks))
	for _, p := range resp.Tasks {
		cid, eid := taskIDsOf(p)
		out = append(out, TaskState{
			ContainerID: cid, ExecID: eid, Pid: p.Pid,
			Status: statusOf(p),
			Stdio:  cio.Config{Terminal: p.Terminal, Stdin: p.Stdin, Stdout: p.Stdout, Stderr: p.Stderr},
		})
	}
	return out, nil
}

// taskIDsOf returns the container and exec ids of a listed process.
// containerd (1.x) lists a task's init process with its container id as
// ID and no ContainerID; an exec would carry both.
func taskIDsOf(p *task.Process) (containerID, execID string) {
	if p.ContainerID == "" {
		return p.ID, ""
	}
	if p.ID == p.ContainerID {
		return p.ContainerID, ""
	}
	return p.ContainerID, p.ID
}
