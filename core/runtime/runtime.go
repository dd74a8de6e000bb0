// Package runtime defines what hulld's tasks service needs from a runtime:
// a Runtime creates, finds, lists and deletes the tasks of containers, and a
// Task is one container's running (or exited) process tree. The shim manager
// in core/runtime/shims is the implementation hulld ships; the interfaces
// are here so that the tasks service, the CRI plugin and tests depend on the
// behaviour, not on that manager.
//
// Every method acts in the namespace carried by its context.
package runtime

import (
	"context"
	"time"

	"github.com/containerd/typeurl/v2"

	"github.com/hullrt/hull/core/mount"
)

// Runtime runs the tasks of containers.
type Runtime interface {
	// Create starts the task of container id from opts; AlreadyExists if
	// the container has one.
	Create(ctx context.Context, id string, opts CreateOpts) (Task, error)
	// Get returns the task of container id; NotFound if it has none.
	Get(ctx context.Context, id string) (Task, error)
	// Tasks lists the namespace's tasks, sorted by container id.
	Tasks(ctx context.Context) ([]Task, error)
	// Delete removes the task of container id, whose init process must
	// have exited, and returns how it ended.
	Delete(ctx context.Context, id string) (Exit, error)
}

// Task is a container's task. Methods taking an execID act on the init
// process when it is empty and on that exec'd process otherwise.
type Task interface {
	// ID is the container's id.
	ID() string
	// Namespace is the namespace the task lives in.
	Namespace() string
	// Pid is the init process's pid on the host.
	Pid() uint32
	// RuntimeName is the runtime the task was created with, such as
	// "io.containerd.runc.v2".
	RuntimeName() string

	// Start runs a created process and returns its pid.
	Start(ctx context.Context, execID string) (uint32, error)
	// State reports a process's state.
	State(ctx context.Context, execID string) (State, error)
	// Kill signals a process; all signals every process of the container.
	Kill(ctx context.Context, execID string, signal uint32, all bool) error
	// Exec adds a process described by spec (a runtime-spec Process) to
	// the container; Start runs it.
	Exec(ctx context.Context, execID string, io IO, spec typeurl.Any) error
	// ResizePty resizes a process's terminal.
	ResizePty(ctx context.Context, execID string, width, height uint32) error
	// CloseIO closes a process's stdin.
	CloseIO(ctx context.Context, execID string, stdin bool) error
	// Pause freezes every process of the task; Resume thaws them.
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	// Pids lists the task's processes.
	Pids(ctx context.Context) ([]ProcessInfo, error)
	// Update changes the task's resources (a runtime-spec LinuxResources)
	// and annotations.
	Update(ctx context.Context, resources typeurl.Any, annotations map[string]string) error
	// Stats returns the task's cgroup statistics as the runtime encodes
	// them (containerd's cgroups v1 or v2 Metrics).
	Stats(ctx context.Context) (typeurl.Any, error)
	// Wait blocks until a process exits and returns how.
	Wait(ctx context.Context, execID string) (Exit, error)
	// DeleteProcess removes an exited exec'd process (execID must not be
	// empty: the init process goes with Runtime.Delete).
	DeleteProcess(ctx context.Context, execID string) (Exit, error)
}

// ProcessInfo is one process of a task.
type ProcessInfo struct {
	Pid uint32
	// Info is what the runtime knows of the process beyond its pid (for
	// runc shims, the exec id of exec'd processes); nil if nothing.
	Info typeurl.Any
}

// Status is the state of a task or process, as containerd names it.
type Status string

// The statuses a process goes through.
const (
	StatusUnknown Status = "unknown"
	StatusCreated Status = "created"
	StatusRunning Status = "running"
	StatusStopped Status = "stopped"
	StatusPaused  Status = "paused"
	StatusPausing Status = "pausing"
)

// IO names the stdio of a process: FIFO paths or URIs (file://, binary://)
// the shim opens; empty means none.
type IO struct {
	Stdin, Stdout, Stderr string
	Terminal              bool
}

// CreateOpts is what a task is created from.
type CreateOpts struct {
	// Runtime names the shim, e.g. "io.containerd.runc.v2".
	Runtime string
	// RuntimePath, when set, is the shim binary to run, overriding Runtime's.
	RuntimePath string
	// Spec is the OCI runtime spec as JSON, written to the bundle's
	// config.json.
	Spec []byte
	// Rootfs is mounted by the shim at the bundle's rootfs directory.
	Rootfs []mount.Mount
	IO     IO
	// Options are the runtime's options (runc options for the runc and hull
	// shims); nil for none.
	Options typeurl.Any
}

// State is a process's state as its shim reports it.
type State struct {
	ID, ExecID string
	Pid        uint32
	Status     Status
	IO         IO
	ExitStatus uint32
	ExitedAt   time.Time
}

// Exit is how a process ended.
type Exit struct {
	Pid      uint32
	Status   uint32
	ExitedAt time.Time
}
