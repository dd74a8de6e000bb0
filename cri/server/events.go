package server

import (
	"context"
	"sync"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// watchExits follows task exits and OOMs of the CRI's namespace: an exit
// is recorded in the container's status (and the pod's state) and its
// task deleted, as the kubelet expects a stopped container to hold no
// process or shim resources.
func (s *Service) watchExits() error {
	ctx := s.ctx
	evs, errs := s.client.EventService().Subscribe(ctx, `topic=="/tasks/exit"`, `topic=="/tasks/oom"`)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			select {
			case env, ok := <-evs:
				if !ok {
					if err := <-errs; err != nil && ctx.Err() == nil {
						s.log.Error("CRI: task event stream ended; exits are no longer recorded", "error", err)
					}
					return
				}
				if env.Namespace != s.cfg.Namespace || env.Event == nil {
					continue
				}
				v, err := typeurl.UnmarshalAny(env.Event)
				if err != nil {
					continue
				}
				switch e := v.(type) {
				case *apievents.TaskExit:
					s.handleExit(e)
				case *apievents.TaskOOM:
					if c, err := s.containers.get(e.ContainerID); err == nil && c.rec.ID == e.ContainerID {
						c.stMu.Lock()
						c.oomKilled = true
						c.stMu.Unlock()
					}
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return nil
}

func (s *Service) handleExit(e *apievents.TaskExit) {
	if e.ID != "" && e.ID != e.ContainerID {
		return // an exec's exit
	}
	at := time.Now()
	if e.ExitedAt != nil {
		at = e.ExitedAt.AsTime()
	}
	if c, err := s.containers.get(e.ContainerID); err == nil && c.rec.ID == e.ContainerID {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.finishContainer(c, int32(e.ExitStatus), at)
		}()
		return
	}
	if sb, err := s.sandboxes.get(e.ContainerID); err == nil && sb.rec.ID == e.ContainerID {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			ctx := s.nsCtx(s.ctx)
			wasReady := sb.isReady()
			sb.markExited()
			s.deleteTask(ctx, sb.rec.ID)
			if wasReady {
				s.hub.sandboxEvent(sb, runtime.ContainerEventType_CONTAINER_STOPPED_EVENT, s)
			}
		}()
	}
}

// finishContainer records a container's exit, then deletes its task and
// closes its output once the output is drained.
func (s *Service) finishContainer(c *container, code int32, at time.Time) {
	reason := c.exitReason(code)
	ctx := s.nsCtx(s.ctx)
	s.deleteTask(ctx, c.rec.ID)
	c.stMu.RLock()
	cio := c.io
	c.stMu.RUnlock()
	if cio != nil {
		// The shim closed the FIFOs when the process exited (or deleting
		// the task did); what is left in them goes to the log first.
		waitTimeout(cio.Wait, 5*time.Second)
	}
	s.recordExit(c, code, at, reason, "")
}

// exitReason is the kubelet's word for an exit with code: OOMKilled when
// the OOM event came first, else Completed or Error.
func (c *container) exitReason(code int32) string {
	c.stMu.RLock()
	defer c.stMu.RUnlock()
	switch {
	case c.oomKilled:
		return "OOMKilled"
	case code != 0:
		return "Error"
	}
	return "Completed"
}

// recordExit writes the exit down once and wakes whoever waits for it.
func (s *Service) recordExit(c *container, code int32, at time.Time, reason, msg string) {
	c.stMu.Lock()
	if c.st.FinishedAt != 0 {
		c.stMu.Unlock()
		return
	}
	st := c.st
	st.FinishedAt, st.ExitCode, st.Reason, st.Message, st.Starting = at.UnixNano(), code, reason, msg, false
	if st.StartedAt == 0 {
		st.StartedAt = st.FinishedAt
	}
	if err := writeStatus(statusPath(c.dir), st); err != nil {
		s.log.Warn("CRI: cannot record a container's exit", "id", c.rec.ID, "error", err)
	}
	c.st = st
	exited := c.exited
	cio := c.io
	c.io = nil
	c.stMu.Unlock()
	if cio != nil {
		cio.Close()
	}
	if exited != nil {
		close(exited)
	}
	s.hub.containerEvent(c, runtime.ContainerEventType_CONTAINER_STOPPED_EVENT, s)
}

// deleteTask deletes id's task, once: the exit handler and a stop may both
// try, and the second must find the work done rather than fail on a
// deletion in progress.
func (s *Service) deleteTask(ctx context.Context, id string) error {
	unlock := s.taskLocks.lock(id)
	defer unlock()
	ctr, err := s.client.LoadContainer(ctx, id)
	if err != nil {
		return ignoreNotFound(err)
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return ignoreNotFound(err)
	}
	if _, err := task.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
		s.log.Warn("CRI: cannot delete an exited task", "id", id, "error", err)
		return err
	}
	return nil
}

// keyedLocks are mutexes by id, made on demand and dropped when free.
type keyedLocks struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	mu    sync.Mutex
	users int
}

func (k *keyedLocks) lock(id string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedLock{}
	}
	l := k.locks[id]
	if l == nil {
		l = &keyedLock{}
		k.locks[id] = l
	}
	l.users++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.locks, id)
		}
		k.mu.Unlock()
	}
}

func waitTimeout(wait func(), d time.Duration) {
	done := make(chan struct{})
	go func() {
		wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// eventHub fans container events out to GetContainerEvents streams (the
// kubelet's evented PLEG). A subscriber that cannot keep up loses events
// rather than slowing the runtime; the kubelet relists anyway.
type eventHub struct {
	mu     sync.Mutex
	subs   map[chan *runtime.ContainerEventResponse]struct{}
	closed bool
}

func newEventHub() *eventHub {
	return &eventHub{subs: map[chan *runtime.ContainerEventResponse]struct{}{}}
}

func (h *eventHub) subscribe() (chan *runtime.ContainerEventResponse, func()) {
	ch := make(chan *runtime.ContainerEventResponse, 256)
	h.mu.Lock()
	if h.closed {
		close(ch)
	} else {
		h.subs[ch] = struct{}{}
	}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[ch]; ok {
			delete(h.subs, ch)
			close(ch)
		}
	}
}

func (h *eventHub) publish(ev *runtime.ContainerEventResponse) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

func (h *eventHub) has() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs) > 0
}

func (h *eventHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for ch := range h.subs {
		delete(h.subs, ch)
		close(ch)
	}
}

func (h *eventHub) sandboxEvent(sb *sandbox, t runtime.ContainerEventType, s *Service) {
	if !h.has() {
		return
	}
	ev := &runtime.ContainerEventResponse{ContainerId: sb.rec.ID, ContainerEventType: t, CreatedAt: nowNano(),
		PodSandboxStatus: s.sandboxStatus(sb)}
	for _, c := range s.containersOf(sb.rec.ID) {
		ev.ContainersStatuses = append(ev.ContainersStatuses, s.containerStatus(c))
	}
	h.publish(ev)
}

func (h *eventHub) containerEvent(c *container, t runtime.ContainerEventType, s *Service) {
	if !h.has() {
		return
	}
	ev := &runtime.ContainerEventResponse{ContainerId: c.rec.ID, ContainerEventType: t, CreatedAt: nowNano()}
	if sb, err := s.sandboxes.get(c.rec.SandboxID); err == nil {
		ev.PodSandboxStatus = s.sandboxStatus(sb)
		for _, o := range s.containersOf(sb.rec.ID) {
			ev.ContainersStatuses = append(ev.ContainersStatuses, s.containerStatus(o))
		}
	}
	h.publish(ev)
}

// GetContainerEvents streams container and pod events until the client
// goes or hulld stops.
func (s *Service) GetContainerEvents(r *runtime.GetEventsRequest, stream grpc.ServerStreamingServer[runtime.ContainerEventResponse]) error {
	ch, cancel := s.hub.subscribe()
	defer cancel()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return nil
			}
			if err := stream.Send(ev); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}
