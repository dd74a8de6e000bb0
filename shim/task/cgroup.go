package task

import (
	"fmt"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"

	"github.com/hullrt/hull/shim/cgroup"
	"github.com/hullrt/hull/shim/events"
)

// watchOOM starts the OOM watcher of the container's cgroup; it returns
// nil when there is nothing to watch (the failure is logged, not fatal:
// the container runs without OOM events).
func watchOOM(ct *Container) func() {
	pid := ct.init.Pid()
	cg, err := cgroup.Load(pid)
	if err != nil {
		ct.log.Warn("no cgroup for OOM events", "id", ct.ID, "pid", pid, "error", err)
		return nil
	}
	stop, err := cg.WatchOOM(func() {
		ct.log.Info("OOM", "id", ct.ID)
		ct.events.Publish(events.TopicOOM, &eventstypes.TaskOOM{ContainerID: ct.ID})
	})
	if err != nil {
		ct.log.Warn("no OOM events", "id", ct.ID, "error", err)
		return nil
	}
	return stop
}

// Stats reads the container's cgroup metrics. A cgroup that cannot be
// read is an error (NotFound when it is gone), not an empty message, so
// the caller learns why.
func (ct *Container) Stats() (proto.Message, error) {
	if _, _, ok := ct.init.Exit(); ok {
		return nil, fmt.Errorf("container %q has exited: %w", ct.ID, errdefs.ErrNotFound)
	}
	cg, err := cgroup.Load(ct.init.Pid())
	if err != nil {
		return nil, fmt.Errorf("cgroup of container %q: %w", ct.ID, err)
	}
	m, err := cg.Metrics()
	if err != nil {
		return nil, fmt.Errorf("metrics of container %q: %w", ct.ID, err)
	}
	return m, nil
}
