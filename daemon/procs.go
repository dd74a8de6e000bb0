package daemon

import (
	"runtime"
	"sync"
	"time"
)

// heavyMethods are the calls whose work is CPU-bound in hulld itself
// (hashing, decompressing, compressing, extracting), for which every CPU
// helps; everything else is a small metadata call.
var heavyMethods = map[string]bool{
	"/containerd.services.content.v1.Content/Write": true,
	"/containerd.services.diff.v1.Diff/Apply":       true,
	"/containerd.services.diff.v1.Diff/Diff":        true,
}

// procGovernor runs hulld on few Go processors (GOMAXPROCS) while it only
// answers small calls, and on all of them while a heavy call is in flight.
//
// Why: a stream of small calls (ctr images ls makes six per image, a kubelet
// polls constantly) is a ping-pong between client and daemon. With several
// Ps, every hand-off between gRPC's reader, the handler and the writer
// goroutine wakes another OS thread, which spins looking for work and then
// sleeps again: about a third of hulld's CPU went to futex and nanosleep.
// With one P those hand-offs are run-queue operations on the same thread,
// and blocking syscalls (fsync, file I/O) still release the P to others.
type procGovernor struct {
	light, heavy int
	linger       time.Duration

	mu      sync.Mutex
	active  int
	lowered bool
	timer   *time.Timer
	set     func(int) int // runtime.GOMAXPROCS; replaced in tests
}

// newProcGovernor returns a governor that lowers GOMAXPROCS to light between
// heavy calls and restores heavy (the value at start) during them, lingering
// after the last heavy call so that a burst (the layers of one pull) does not
// flip it back and forth. It returns nil, which is a valid no-op governor,
// when light would not lower anything.
func newProcGovernor(light int, linger time.Duration) *procGovernor {
	heavy := runtime.GOMAXPROCS(0)
	if light <= 0 || light >= heavy {
		return nil
	}
	return &procGovernor{light: light, heavy: heavy, linger: linger, set: runtime.GOMAXPROCS}
}

// start lowers GOMAXPROCS for the first time; call it once the plugins have
// sized their worker pools from the full count.
func (g *procGovernor) start() {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lowerLocked()
}

// enter marks a heavy call in flight; the returned func ends it.
func (g *procGovernor) enter() func() {
	if g == nil {
		return func() {}
	}
	g.mu.Lock()
	g.active++
	g.raiseLocked()
	g.mu.Unlock()
	var once sync.Once
	return func() { once.Do(g.exit) }
}

// raiseLocked cancels a pending lowering and restores the full count.
func (g *procGovernor) raiseLocked() {
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
	if g.lowered {
		g.set(g.heavy)
		g.lowered = false
	}
}

func (g *procGovernor) exit() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.active--
	if g.active > 0 {
		return
	}
	g.timer = time.AfterFunc(g.linger, g.lower)
}

func (g *procGovernor) lower() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lowerLocked()
	g.timer = nil
}

// lowerLocked sets the light count unless a heavy call is in flight or it
// is set already.
func (g *procGovernor) lowerLocked() {
	if g.active == 0 && !g.lowered {
		g.set(g.light)
		g.lowered = true
	}
}

// stop restores the full count, for a daemon that is shutting down (its
// close path hashes and syncs, and tests run several daemons in a process).
func (g *procGovernor) stop() {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.raiseLocked()
	g.active = 1 << 30 // nothing lowers it again
}
