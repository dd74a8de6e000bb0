package shims

import (
	"github.com/hullrt/hull/core/runtime"

	"context"
	"fmt"
	"sync"
	"time"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/internal/protoconv"
)

// Task is a container's running (or exited) task, served by its shim. It
// implements runtime.Task.
type Task struct {
	ns, id string
	// runtime is the runtime name the task was created with.
	runtime string
	// pid is the init process's pid on the host, set once the shim
	// created it (before the task is visible to others).
	pid uint32

	bundle *bundle
	binary string
	shim   *shimConn

	mu sync.Mutex
	// dead is set when the shim went away without being asked to: the
	// task then answers from this exit, recorded at cleanup.
	dead *runtime.Exit
	// deadReason says why, for logs and errors.
	deadReason string
	// deadc is closed once dead is set.
	deadc chan struct{}
	// cleaning is set by the one cleanup of a dead shim's task.
	cleaning bool
}

func newTask(ns, id, rtName string, b *bundle, binary string, shim *shimConn) *Task {
	return &Task{ns: ns, id: id, runtime: rtName, bundle: b, binary: binary, shim: shim, deadc: make(chan struct{})}
}

// ID is the container's id.
func (t *Task) ID() string { return t.id }

// Namespace is the namespace the task lives in.
func (t *Task) Namespace() string { return t.ns }

// Pid is the init process's pid on the host.
func (t *Task) Pid() uint32 { return t.pid }

// RuntimeName is the runtime the task was created with.
func (t *Task) RuntimeName() string { return t.runtime }

func (t *Task) call(ctx context.Context, method string, req, resp any) error {
	if exit, reason := t.deadExit(); exit != nil {
		return fmt.Errorf("task %q: %s: %w", t.id, reason, errdefs.ErrNotFound)
	}
	return t.shim.call(ctx, t.ns, method, req, resp)
}

func (t *Task) deadExit() (*runtime.Exit, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dead, t.deadReason
}

// Start starts the init process (execID "") or an exec'd process and
// returns its pid.
func (t *Task) Start(ctx context.Context, execID string) (uint32, error) {
	var resp taskv2.StartResponse
	if err := t.call(ctx, "Start", &taskv2.StartRequest{ID: t.id, ExecID: execID}, &resp); err != nil {
		return 0, err
	}
	return resp.Pid, nil
}

// State reports a process's state. A task whose shim died reports stopped
// with the exit its cleanup found.
func (t *Task) State(ctx context.Context, execID string) (runtime.State, error) {
	if exit, _ := t.deadExit(); exit != nil {
		if execID != "" {
			return runtime.State{}, fmt.Errorf("process %q of task %q: the task's shim is gone: %w", execID, t.id, errdefs.ErrNotFound)
		}
		return runtime.State{ID: t.id, Pid: t.pid, Status: runtime.StatusStopped, ExitStatus: exit.Status, ExitedAt: exit.ExitedAt}, nil
	}
	var resp taskv2.StateResponse
	if err := t.call(ctx, "State", &taskv2.StateRequest{ID: t.id, ExecID: execID}, &resp); err != nil {
		if t.shim.isClosed() && execID == "" && t.waitDead(ctx) != nil {
			return t.State(ctx, "")
		}
		return runtime.State{}, err
	}
	return runtime.State{
		ID: t.id, ExecID: resp.ExecID, Pid: resp.Pid, Status: statusFromProto(resp.Status),
		IO:         runtime.IO{Stdin: resp.Stdin, Stdout: resp.Stdout, Stderr: resp.Stderr, Terminal: resp.Terminal},
		ExitStatus: resp.ExitStatus, ExitedAt: protoconv.FromTime(resp.ExitedAt),
	}, nil
}

func statusFromProto(s tasktypes.Status) runtime.Status {
	switch s {
	case tasktypes.Status_CREATED:
		return runtime.StatusCreated
	case tasktypes.Status_RUNNING:
		return runtime.StatusRunning
	case tasktypes.Status_STOPPED:
		return runtime.StatusStopped
	case tasktypes.Status_PAUSED:
		return runtime.StatusPaused
	case tasktypes.Status_PAUSING:
		return runtime.StatusPausing
	}
	return runtime.StatusUnknown
}

// Kill signals the init process (execID "") or an exec'd process; all
// signals every process of the container.
func (t *Task) Kill(ctx context.Context, execID string, signal uint32, all bool) error {
	return t.call(ctx, "Kill", &taskv2.KillRequest{ID: t.id, ExecID: execID, Signal: signal, All: all}, &emptypb.Empty{})
}

// Exec adds a process described by spec (a runtime-spec Process in an Any)
// to the container; Start runs it.
func (t *Task) Exec(ctx context.Context, execID string, io runtime.IO, spec typeurl.Any) error {
	return t.call(ctx, "Exec", &taskv2.ExecProcessRequest{
		ID: t.id, ExecID: execID, Terminal: io.Terminal, Stdin: io.Stdin, Stdout: io.Stdout, Stderr: io.Stderr, Spec: typeurl.MarshalProto(spec),
	}, &emptypb.Empty{})
}

// ResizePty resizes a process's terminal.
func (t *Task) ResizePty(ctx context.Context, execID string, width, height uint32) error {
	return t.call(ctx, "ResizePty", &taskv2.ResizePtyRequest{ID: t.id, ExecID: execID, Width: width, Height: height}, &emptypb.Empty{})
}

// CloseIO closes a process's stdin.
func (t *Task) CloseIO(ctx context.Context, execID string, stdin bool) error {
	return t.call(ctx, "CloseIO", &taskv2.CloseIORequest{ID: t.id, ExecID: execID, Stdin: stdin}, &emptypb.Empty{})
}

// Pause freezes every process of the task.
func (t *Task) Pause(ctx context.Context) error {
	return t.call(ctx, "Pause", &taskv2.PauseRequest{ID: t.id}, &emptypb.Empty{})
}

// Resume thaws a paused task.
func (t *Task) Resume(ctx context.Context) error {
	return t.call(ctx, "Resume", &taskv2.ResumeRequest{ID: t.id}, &emptypb.Empty{})
}

// Pids lists the task's processes.
func (t *Task) Pids(ctx context.Context) ([]runtime.ProcessInfo, error) {
	var resp taskv2.PidsResponse
	if err := t.call(ctx, "Pids", &taskv2.PidsRequest{ID: t.id}, &resp); err != nil {
		return nil, err
	}
	out := make([]runtime.ProcessInfo, 0, len(resp.Processes))
	for _, p := range resp.Processes {
		pi := runtime.ProcessInfo{Pid: p.Pid}
		if p.Info != nil {
			pi.Info = p.Info
		}
		out = append(out, pi)
	}
	return out, nil
}

// Update changes the task's resources (a runtime-spec LinuxResources in an
// Any) and annotations.
func (t *Task) Update(ctx context.Context, resources typeurl.Any, annotations map[string]string) error {
	return t.call(ctx, "Update", &taskv2.UpdateTaskRequest{ID: t.id, Resources: typeurl.MarshalProto(resources), Annotations: annotations}, &emptypb.Empty{})
}

// Stats returns the task's cgroup statistics as the shim encodes them.
func (t *Task) Stats(ctx context.Context) (typeurl.Any, error) {
	var resp taskv2.StatsResponse
	if err := t.call(ctx, "Stats", &taskv2.StatsRequest{ID: t.id}, &resp); err != nil {
		return nil, err
	}
	if resp.Stats == nil {
		return nil, nil
	}
	return resp.Stats, nil
}

// Wait blocks until the process exits and returns how. If the shim dies
// meanwhile, Wait returns the exit recorded by the cleanup.
func (t *Task) Wait(ctx context.Context, execID string) (runtime.Exit, error) {
	if exit, _ := t.deadExit(); exit != nil && execID == "" {
		return *exit, nil
	}
	var resp taskv2.WaitResponse
	err := t.call(ctx, "Wait", &taskv2.WaitRequest{ID: t.id, ExecID: execID}, &resp)
	if err != nil {
		if t.shim.isClosed() && execID == "" {
			if exit := t.waitDead(ctx); exit != nil {
				return *exit, nil
			}
		}
		return runtime.Exit{}, err
	}
	return runtime.Exit{Status: resp.ExitStatus, ExitedAt: protoconv.FromTime(resp.ExitedAt)}, nil
}

// waitDead gives the cleanup of a crashed shim a moment to record the exit.
func (t *Task) waitDead(ctx context.Context) *runtime.Exit {
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
func (t *Task) DeleteProcess(ctx context.Context, execID string) (runtime.Exit, error) {
	if execID == "" {
		return runtime.Exit{}, fmt.Errorf("DeleteProcess needs an exec id; use Delete for the task: %w", errdefs.ErrInvalidArgument)
	}
	var resp taskv2.DeleteResponse
	if err := t.call(ctx, "Delete", &taskv2.DeleteRequest{ID: t.id, ExecID: execID}, &resp); err != nil {
		return runtime.Exit{}, err
	}
	return runtime.Exit{Pid: resp.Pid, Status: resp.ExitStatus, ExitedAt: protoconv.FromTime(resp.ExitedAt)}, nil
}
