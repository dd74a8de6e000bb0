// Package shims is hulld's runtime manager (the io.containerd.runtime.v2.task
// plugin), the implementation of core/runtime's Runtime: it turns a
// container record into a running task by writing a bundle, starting the
// container's shim with the shim v2 bootstrap protocol and talking to it over
// ttrpc.
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
package shims
