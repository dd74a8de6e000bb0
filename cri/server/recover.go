package server

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/client/cio"
	"github.com/hullrt/hull/cri/containerio"
)

// recover rebuilds the pods and containers from their records after a
// restart: a pod is ready while its pause process runs; a container that
// exited while hulld was away gets the exit its shim kept, and a running
// one gets its output reattached where it left off.
func (s *Service) recover(ctx context.Context) error {
	recs, err := s.client.ContainerService().List(ctx, "labels."+kindLabel+"=="+kindSandbox)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		sb := &sandbox{exited: make(chan struct{})}
		if err := decodeExtension(rec.Extensions, sandboxExtension, recordTypeSandbox, &sb.rec); err != nil {
			s.log.Warn("CRI: pod record unreadable; left alone", "id", rec.ID, "error", err)
			continue
		}
		sb.config = &runtime.PodSandboxConfig{}
		if err := unmarshalConfig(sb.rec.Config, sb.config); err != nil {
			s.log.Warn("CRI: pod config unreadable; left alone", "id", rec.ID, "error", err)
			continue
		}
		sb.rootDir = filepath.Join(s.cfg.Root, "sandboxes", sb.rec.ID)
		sb.stateDir = filepath.Join(s.cfg.State, "sandboxes", sb.rec.ID)
		if err := readNetworkState(sb); err != nil {
			s.log.Warn("CRI: pod network state unreadable; the pod shows no IP", "id", rec.ID, "error", err)
		}
		if pid, running := s.taskRunning(ctx, rec.ID, nil); running {
			sb.ready, sb.pid = true, pid
		} else {
			sb.markExited()
			s.deleteTask(ctx, rec.ID)
		}
		s.sandboxNames.reserve(sb.rec.Name, sb.rec.ID)
		s.sandboxes.add(sb.rec.ID, sb)
	}
	recs, err = s.client.ContainerService().List(ctx, "labels."+kindLabel+"=="+kindContainer)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		c := &container{}
		if err := decodeExtension(rec.Extensions, containerExtension, recordTypeCtr, &c.rec); err != nil {
			s.log.Warn("CRI: container record unreadable; left alone", "id", rec.ID, "error", err)
			continue
		}
		c.config = &runtime.ContainerConfig{}
		if err := unmarshalConfig(c.rec.Config, c.config); err != nil {
			s.log.Warn("CRI: container config unreadable; left alone", "id", rec.ID, "error", err)
			continue
		}
		c.dir = filepath.Join(s.cfg.Root, "containers", c.rec.ID)
		c.ioDir = filepath.Join(s.cfg.State, "containers", c.rec.ID)
		st, err := readStatus(statusPath(c.dir))
		if err != nil && !os.IsNotExist(err) {
			s.log.Warn("CRI: container status unreadable; taken as created", "id", rec.ID, "error", err)
		}
		c.st = st
		c.stopSignal = parseSignal(c.rec.StopSignal)
		if sp, err := s.containerSpec(ctx, c.rec.ID); err == nil {
			c.user = containerUser(sp)
		}
		if lr := c.config.GetLinux().GetResources(); lr != nil {
			c.resources = &runtime.ContainerResources{Linux: lr}
		}
		s.recoverContainer(ctx, c)
		s.containerNames.reserve(c.rec.Name, c.rec.ID)
		s.containers.add(c.rec.ID, c)
	}
	return nil
}

// recoverContainer settles a container whose start or run spanned the
// restart.
func (s *Service) recoverContainer(ctx context.Context, c *container) {
	st := c.st
	switch {
	case st.FinishedAt != 0:
		return
	case st.Starting:
		// The start was cut short: what it made goes, and the container
		// is reported as having failed to start.
		s.deleteTask(ctx, c.rec.ID)
		c.st.Starting, c.st.FinishedAt, c.st.ExitCode, c.st.Reason = false, time.Now().UnixNano(), 128, "StartError"
		c.st.Message = "hulld restarted while the container was starting"
		writeStatus(statusPath(c.dir), c.st)
		return
	case st.StartedAt == 0:
		return
	}
	var cioOut *containerio.ContainerIO
	attach := func(cfg cio.Config) (cio.IO, error) {
		io, err := containerio.Reattach(cfg, s.ioOptions(c))
		if err != nil {
			return nil, err
		}
		cioOut = io
		return io, nil
	}
	ctr, err := s.client.LoadContainer(ctx, c.rec.ID)
	if err != nil {
		s.markLost(c, "the container record is gone")
		return
	}
	task, err := ctr.Task(ctx, attach)
	if err != nil {
		if errdefs.IsNotFound(err) {
			s.markLost(c, "the task was gone after hulld restarted")
		} else {
			s.markLost(c, "the task could not be loaded: "+err.Error())
		}
		return
	}
	c.exited = make(chan struct{})
	c.io = cioOut
	status, err := task.Status(ctx)
	if err != nil || status.Status == client.Stopped {
		code := int32(255)
		at := time.Now()
		if err == nil {
			code, at = int32(status.ExitStatus), status.ExitTime
		}
		reason := c.exitReason(code)
		if cioOut != nil {
			waitTimeout(cioOut.Wait, 5*time.Second)
		}
		s.deleteTask(ctx, c.rec.ID)
		s.recordExit(c, code, at, reason, "")
	}
}

// markLost records an exit hull cannot know the code of.
func (s *Service) markLost(c *container, why string) {
	s.recordExit(c, 255, time.Now(), "Unknown", why)
}

// taskRunning reports whether id's task runs, and its pid.
func (s *Service) taskRunning(ctx context.Context, id string, attach cio.Attach) (uint32, bool) {
	ctr, err := s.client.LoadContainer(ctx, id)
	if err != nil {
		return 0, false
	}
	task, err := ctr.Task(ctx, attach)
	if err != nil {
		return 0, false
	}
	st, err := task.Status(ctx)
	if err != nil || st.Status != client.Running {
		return 0, false
	}
	return task.Pid(), true
}
