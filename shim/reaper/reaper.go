// Package reaper owns the wait4 calls of the shim. The shim is the child
// subreaper of its containers, so the processes it must reap are of two
// kinds: runc invocations it started itself (whose status a caller waits for)
// and container processes reparented to it (whose exits become task exits).
// Only one loop may call wait4(-1): a second waiter (os/exec's Cmd.Wait)
// would steal statuses. Start registers a child under the same lock the loop
// takes before dispatching, so an exit can never be reaped before its waiter
// is known.
package reaper

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"sync"

	"golang.org/x/sys/unix"
)

// Exit is the end of a process the reaper collected.
type Exit struct {
	Pid    int
	Status int
}

// Reaper dispatches the exits of the shim's children.
type Reaper struct {
	mu      sync.Mutex
	waiters map[int]chan int
	// OnExit receives the exits of processes no Start call waits for: the
	// container processes. It is called from the reaper goroutine, in order.
	onExit func(Exit)
}

// New returns a reaper whose unclaimed exits go to onExit.
func New(onExit func(Exit)) *Reaper {
	return &Reaper{waiters: map[int]chan int{}, onExit: onExit}
}

// SetSubreaper makes the calling process the child subreaper, so that the
// container process that runc create leaves behind becomes our child when
// runc exits.
func SetSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// Background runs the reap loop in a goroutine of its own until the
// returned function is called; that function returns once the loop has
// ended, so that the caller's own waits (os/exec's) after it cannot have a
// status taken by the loop.
func (r *Reaper) Background() (stop func()) {
	ch, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		r.run(ch)
	}()
	return func() {
		close(ch)
		<-done
	}
}

// run reaps children on every SIGCHLD until stop is closed.
func (r *Reaper) run(stop <-chan struct{}) {
	ch := make(chan os.Signal, 32)
	signal.Notify(ch, unix.SIGCHLD)
	defer signal.Stop(ch)
	r.reap() // children that exited before Notify
	for {
		select {
		case <-stop:
			return
		case <-ch:
			r.reap()
		}
	}
}

func (r *Reaper) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		st := ExitStatus(ws)
		r.mu.Lock()
		w, ok := r.waiters[pid]
		delete(r.waiters, pid)
		r.mu.Unlock()
		if ok {
			w <- st
			continue
		}
		if r.onExit != nil {
			r.onExit(Exit{Pid: pid, Status: st})
		}
	}
}

// ExitStatus turns a wait status into the number a shell would report:
// the exit code, or 128+signal for a process killed by a signal.
func ExitStatus(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// Start starts cmd and returns a function that waits for its exit status.
// cmd's Stdin, Stdout and Stderr must be nil or *os.File: os/exec would
// otherwise start copying goroutines that only Cmd.Wait ends, and Cmd.Wait
// must not be called.
func (r *Reaper) Start(cmd *exec.Cmd) (wait func() int, err error) {
	ch := make(chan int, 1)
	r.mu.Lock()
	if err := cmd.Start(); err != nil {
		r.mu.Unlock()
		return nil, err
	}
	r.waiters[cmd.Process.Pid] = ch
	r.mu.Unlock()
	return func() int {
		st := <-ch
		cmd.Process.Release()
		return st
	}, nil
}
