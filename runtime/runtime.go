// Package runtime is hulld's runtime manager (the io.containerd.runtime.v2.task
// plugin): it turns a container record into a running task by writing a
// bundle, starting the container's shim with the shim v2 bootstrap protocol
// and talking to it over ttrpc.
//
// The shim, not hulld, parents the container. The manager therefore keeps
// nothing it cannot rebuild from disk: every bundle under the state directory
// names its shim's socket, so a restarted hulld reconnects to live shims,
// cleans up after dead ones (running the shim binary's "delete" command) and
// publishes the exits it missed. A reconciler does the same on a timer, so a
// shim whose task is gone, or a task whose shim is gone, never lingers.
//
// Shims are found the way containerd finds them: runtime
// "io.containerd.runc.v2" is the binary containerd-shim-runc-v2 on PATH (or
// next to hulld), unless the configuration names a binary for it. Both task
// API versions are spoken: v2, and v3 when the shim's bootstrap output says
// so; their messages are the same on the wire, only the service name differs.
package runtime

import (
	"time"

	"github.com/containerd/typeurl/v2"

	"github.com/hullrt/hull/core/mount"
)

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
