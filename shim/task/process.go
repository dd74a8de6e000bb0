// Package task holds a container's task as the shim runs it: the init
// process that runc create/start makes, the exec processes added to it, and
// the bookkeeping that turns reaped exits into process states, in the
// order the daemon must see them.
package task

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"sync"
	"time"

	tasktypes "github.com/containerd/containerd/api/types/task"

	"github.com/hullrt/hull/shim/reaper"
	"github.com/hullrt/hull/shim/stdio"
)

// ioDrainTimeout bounds how long an exit waits for the process's output to
// reach the client: a background child that keeps stdout open must not keep
// the exit from being reported.
const ioDrainTimeout = 2 * time.Second

// Process is the init process or one exec process of a container.
type Process struct {
	// ID is the exec ID; "" for the init process.
	ID  string
	cfg stdio.Config
	// spec is the exec's runtime-spec Process in JSON.
	spec []byte

	mu       sync.Mutex
	io       *stdio.IO
	pid      int
	started  bool
	starting chan struct{} // closed once the start event is queued
	status   int
	exitedAt time.Time
	// gone is set when the process is known to be ending: reaped, or
	// sent SIGKILL; its exit may be recorded only later (after its
	// output drains), and nothing may join it in between.
	gone   bool
	exited chan struct{} // closed once the exit is recorded
	// onExit publishes the exit; set by the container.
	onExit func(p *Process)
}

func newProcess(id string, cfg stdio.Config, spec []byte, onExit func(*Process)) *Process {
	return &Process{ID: id, cfg: cfg, spec: spec, exited: make(chan struct{}), onExit: onExit}
}

// Pid is the process's pid, 0 before it exists.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

// Config is where the process's streams go.
func (p *Process) Config() stdio.Config { return p.cfg }

// Exit returns the exit status and time, and whether the process has
// exited.
func (p *Process) Exit() (status int, at time.Time, ok bool) {
	select {
	case <-p.exited:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.status, p.exitedAt, true
	default:
		return 0, time.Time{}, false
	}
}

// Wait blocks until the process has exited or ctx ends.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Status is the process's state as the task API reports it (without
// pause, which is the container's).
func (p *Process) Status() tasktypes.Status {
	if _, _, ok := p.Exit(); ok {
		return tasktypes.Status_STOPPED
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return tasktypes.Status_RUNNING
	}
	return tasktypes.Status_CREATED
}

// markGone records that the process is ending (see gone).
func (p *Process) markGone() {
	p.mu.Lock()
	p.gone = true
	p.mu.Unlock()
}

// isGone reports whether the process has exited or is ending.
func (p *Process) isGone() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gone
}

// beginStart marks a start in progress, so that an exit reaped before the
// start event is queued waits for it; the returned function ends it.
func (p *Process) beginStart() func() {
	ch := make(chan struct{})
	p.mu.Lock()
	p.starting = ch
	p.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// exit records the process's end. It returns at once: draining the output
// and publishing happen in a goroutine, so the reaper never waits.
func (p *Process) exit(status int) {
	at := time.Now()
	p.markGone()
	go func() {
		p.mu.Lock()
		io, starting := p.io, p.starting
		p.mu.Unlock()
		if io != nil {
			io.Wait(ioDrainTimeout)
		}
		if starting != nil {
			<-starting
		}
		p.mu.Lock()
		select {
		case <-p.exited:
			p.mu.Unlock()
			return
		default:
		}
		p.status, p.exitedAt = status, at
		close(p.exited)
		p.mu.Unlock()
		if p.onExit != nil {
			p.onExit(p)
		}
	}()
}

// Monitor routes reaped exits to processes by pid. The pid of a container
// process is only known once runc create or exec has written its pid file,
// and the process may exit before that; such exits are held while a create
// or exec is in flight and matched when the pid is registered.
type Monitor struct {
	mu       sync.Mutex
	byPid    map[int]*Process
	inFlight int
	held     map[int]int // pid -> status of unclaimed exits
}

// NewMonitor returns an empty monitor.
func NewMonitor() *Monitor {
	return &Monitor{byPid: map[int]*Process{}, held: map[int]int{}}
}

// Exit is the reaper's callback for processes it did not start itself.
func (m *Monitor) Exit(e reaper.Exit) {
	m.mu.Lock()
	p, ok := m.byPid[e.Pid]
	if ok {
		delete(m.byPid, e.Pid)
	} else if m.inFlight > 0 {
		m.held[e.Pid] = e.Status
	}
	m.mu.Unlock()
	if ok {
		p.exit(e.Status)
	}
}

// begin marks a create or exec in flight; the returned function ends it.
func (m *Monitor) begin() func() {
	m.mu.Lock()
	m.inFlight++
	m.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			m.inFlight--
			if m.inFlight == 0 {
				// Nobody can claim them any more: they were children
				// of the container's processes, reparented to us.
				clear(m.held)
			}
			m.mu.Unlock()
		})
	}
}

// register binds pid to p, delivering an exit already held for it.
func (m *Monitor) register(pid int, p *Process) {
	p.mu.Lock()
	p.pid = pid
	p.mu.Unlock()
	m.mu.Lock()
	st, held := m.held[pid]
	if held {
		delete(m.held, pid)
	} else {
		m.byPid[pid] = p
	}
	m.mu.Unlock()
	if held {
		p.exit(st)
	}
}

// CloseStdin closes the process's stdin.
func (p *Process) CloseStdin() {
	p.mu.Lock()
	io := p.io
	p.mu.Unlock()
	if io != nil {
		io.CloseStdin()
	}
}

// Resize sets the size of the process's terminal.
func (p *Process) Resize(width, height uint32) error {
	p.mu.Lock()
	io := p.io
	p.mu.Unlock()
	if io == nil {
		return fmt.Errorf("process %q is not started: %w", p.ID, errdefs.ErrFailedPrecondition)
	}
	return io.Resize(width, height)
}
