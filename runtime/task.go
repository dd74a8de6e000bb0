package runtime

import (
	"context"
	"fmt"
	"sync"
	"time"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/internal/protoconv"
)

// Task is a container's running (or exited) task, served by its shim.
type Task struct {
	Namespace, ID string
	// Runtime is the runtime name the task was created with.
	Runtime string
	// Pid is the init process's pid on the host.
	Pid uint32

	bundle *bundle
	binary string
	shim   *shimConn

	mu sync.Mutex
	// dead is set when the shim went away without being asked to: the
	// task then answers from this exit, recorded at cleanup.
	dead *Exit
	// deadReason says why, for logs and errors.
	deadReason string
	// deadc is closed once dead is set.
	deadc chan struct{}
	// cleaning is set by the one cleanup of a dead shim's task.
	cleaning bool
}

func newTask(ns, id, runtime string, b *bundle, binary string, shim *shimConn) *Task {
	return &Task{Namespace: ns, ID: id, Runtime: runtime, bundle: b, binary: binary, shim: shim, deadc: make(chan struct{})}
}

func (t *Task) call(ctx context.Context, method string, req, resp any) error {
	if exit, reason := t.deadExit(); exit != nil {
		return fmt.Errorf("task %q: %s: %w", t.ID, reason, errdefs.ErrNotFound)
	}
	return t.shim.call(ctx, t.Namespace, method, req, resp)
}

func (t *Task) deadExit() (*Exit, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dead, t.deadReason
}

// Start starts the init process (execID "") or an exec'd process and
// returns its pid.
func (t *Task) Start(ctx context.Context, execID string) (uint32, error) {
	var resp taskv2.StartResponse
	if err := t.call(ctx, "Start", &taskv2.StartRequest{ID: t.ID, ExecID: execID}, &resp); err != nil {
		return 0, err
	}
	return resp.Pid, nil
}

// State reports a process's state. A task whose shim died reports stopped
// with the exit its cleanup found.
func (t *Task) State(ctx context.Context, execID string) (State, error) {
	if exit, _ := t.deadExit(); exit != nil {
		if execID != "" {
			return State{}, fmt.Errorf("process %q of task %q: the task's shim is gone: %w", execID, t.ID, errdefs.ErrNotFound)
		}
		return State{ID: t.ID, Pid: t.Pid, Status: StatusStopped, ExitStatus: exit.Status, ExitedAt: exit.ExitedAt}, nil
	}
	var resp taskv2.StateResponse
	if err := t.call(ctx, "State", &taskv2.StateRequest{ID: t.ID, ExecID: execID}, &resp); err != nil {
		if t.shim.isClosed() && execID == "" && t.waitDead(ctx) != nil {
			return t.State(ctx, "")
		}
		return State{}, err
	}
	return State{
		ID: t.ID, ExecID: resp.ExecID, Pid: resp.Pid, Status: statusFromProto(resp.Status),
		IO:         IO{Stdin: resp.Stdin, Stdout: resp.Stdout, Stderr: resp.Stderr, Terminal: resp.Terminal},
		ExitStatus: resp.ExitStatus, ExitedAt: protoconv.FromTime(resp.ExitedAt),
	}, nil
}

func statusFromProto(s tasktypes.Status) Status {
	switch s {
	case tasktypes.Status_CREATED:
		return StatusCreated
	case tasktypes.Status_RUNNING:
		return StatusRunning
	case tasktypes.Status_STOPPED:
		return StatusStopped
	case tasktypes.Status_PAUSED:
		return StatusPaused
	case tasktypes.Status_PAUSING:
		return StatusPausing
	}
	return StatusUnknown
}

// StatusToProto maps a Status to the API's enum.
func StatusToProto(s Status) tasktypes.Status {
	switch s {
	case StatusCreated:
		return tasktypes.Status_CREATED
	case StatusRunning:
		return tasktypes.Status_RUNNING
	case StatusStopped:
		return tasktypes.Status_STOPPED
	case StatusPaused:
		return tasktypes.Status_PAUSED
	case StatusPausing:
		return tasktypes.Status_PAUSING
	}
	return tasktypes.Status_UNKNOWN
}

// Kill signals the init process (execID "") or an exec'd process; all
// signals every process of the container.
func (t *Task) Kill(ctx context.Context, execID string, signal uint32, all bool) error {
	return t.call(ctx, "Kill", &taskv2.KillRequest{ID: t.ID, ExecID: execID, Signal: signal, All: all}, &emptypb.Empty{})
}

// Exec adds a process described by spec (a runtime-spec Process in an Any)
// to the container; Start runs it.
func (t *Task) Exec(ctx context.Context, execID string, io IO, spec *anypb.Any) error {
	return t.call(ctx, "Exec", &taskv2.ExecProcessRequest{
		ID: t.ID, ExecID: execID, Terminal: io.Terminal, Stdin: io.Stdin, Stdout: io.Stdout, Stderr: io.Stderr, Spec: spec,
	}, &emptypb.Empty{})
}

// ResizePty resizes a process's terminal.
func (t *Task) ResizePty(ctx context.Context, execID string, width, height uint32) error {
	return t.call(ctx, "ResizePty", &taskv2.ResizePtyRequest{ID: t.ID, ExecID: execID, Width: width, Height: height}, &emptypb.Empty{})
}

// CloseIO closes a process's stdin.
func (t *Task) CloseIO(ctx context.Context, execID string, stdin bool) error {
	return t.call(ctx, "CloseIO", &taskv2.CloseIORequest{ID: t.ID, ExecID: execID, Stdin: stdin}, &emptypb.Empty{})
}

// Pause freezes every process of the task.
func (t *Task) Pause(ctx context.Context) error {
	return t.call(ctx, "Pause", &taskv2.PauseRequest{ID: t.ID}, &emptypb.Empty{})
}

// Resume thaws a paused task.
func (t *Task) Resume(ctx context.Context) error {
	return t.call(ctx, "Resume", &taskv2.ResumeRequest{ID: t.ID}, &emptypb.Empty{})
}

// Pids lists the task's processes.
func (t *Task) Pids(ctx context.Context) ([]*tasktypes.ProcessInfo, error) {
	var resp taskv2.PidsResponse
	if err := t.call(ctx, "Pids", &taskv2.PidsRequest{ID: t.ID}, &resp); err != nil {
		return nil, err
	}
	return resp.Processes, nil
}

// Update changes the task's resources (a runtime-spec LinuxResources in an
// Any) and annotations.
func (t *Task) Update(ctx context.Context, resources *anypb.Any, annotations map[string]string) error {
	return t.call(ctx, "Update", &taskv2.UpdateTaskRequest{ID: t.ID, Resources: resources, Annotations: annotations}, &emptypb.Empty{})
}

// Stats returns the task's cgroup statistics as the shim encodes them.
func (t *Task) Stats(ctx context.Context) (*anypb.Any, error) {
	var resp taskv2.StatsResponse
	if err := t.call(ctx, "Stats", &taskv2.StatsRequest{ID: t.ID}, &resp); err != nil {
		return nil, err
	}
	return resp.Stats, nil
}

// Wait blocks until the process exits and returns how. If the shim dies
// meanwhile, Wait returns the exit recorded by the cleanup.
func (t *Task) Wait(ctx context.Context, execID string) (Exit, error) {
	if exit, _ := t.deadExit(); exit != nil && execID == "" {
		return *exit, nil
	}
	var resp taskv2.WaitResponse
	err := t.call(ctx, "Wait", &taskv2.WaitRequest{ID: t.ID, ExecID: execID}, &resp)
	if err != nil {
		if t.shim.isClosed() && execID == "" {
			if exit := t.waitDead(ctx); exit != nil {
				return *exit, nil
			}
		}
		return Exit{}, err
	}
	return Exit{Status: resp.ExitStatus, ExitedAt: protoconv.FromTime(resp.ExitedAt)}, nil
}

// waitDead gives the cleanup of a crashed shim a moment to record the exit.
func (t *Task) waitDead(ctx context.Context) *Exit {
	timer := time.NewTimer(15 * time.Second)
	defer timer.Stop()
	select {
	case <-t.deadc:
		exit, _ := t.deadExit()
		return exit
	case <-ctx.Done():
	case <-timer.C:
	}
	return nil
}

// DeleteProcess removes an exited exec'd process and returns its exit.
func (t *Task) DeleteProcess(ctx context.Context, execID string) (Exit, error) {
	if execID == "" {
		return Exit{}, fmt.Errorf("DeleteProcess needs an exec id; use Delete for the task: %w", errdefs.ErrInvalidArgument)
	}
	var resp taskv2.DeleteResponse
	if err := t.call(ctx, "Delete", &taskv2.DeleteRequest{ID: t.ID, ExecID: execID}, &resp); err != nil {
		return Exit{}, err
	}
	return Exit{Pid: resp.Pid, Status: resp.ExitStatus, ExitedAt: protoconv.FromTime(resp.ExitedAt)}, nil
}
