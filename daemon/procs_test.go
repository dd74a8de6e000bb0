package daemon

import (
	"sync"
	"testing"
	"time"
)

// fakeProcs records what the governor sets GOMAXPROCS to, without touching
// the test binary's own.
type fakeProcs struct {
	mu  sync.Mutex
	cur int
	log []int
}

func (f *fakeProcs) set(n int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.cur
	if n > 0 {
		f.cur = n
		f.log = append(f.log, n)
	}
	return old
}

func (f *fakeProcs) get() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur
}

func testGovernor(linger time.Duration) (*procGovernor, *fakeProcs) {
	f := &fakeProcs{cur: 4}
	return &procGovernor{light: 1, heavy: 4, linger: linger, set: f.set}, f
}

func TestProcGovernorRaisesDuringHeavyCallsAndLowersAfter(t *testing.T) {
	g, f := testGovernor(20 * time.Millisecond)
	g.start()
	if f.get() != 1 {
		t.Fatalf("after start: GOMAXPROCS %d, want 1", f.get())
	}
	done1 := g.enter()
	done2 := g.enter()
	if f.get() != 4 {
		t.Fatalf("during heavy calls: %d, want 4", f.get())
	}
	done1()
	done1() // a second call of the same done func must not count twice
	time.Sleep(60 * time.Millisecond)
	if f.get() != 4 {
		t.Fatalf("with one heavy call still in flight: %d, want 4", f.get())
	}
	done2()
	deadline := time.Now().Add(2 * time.Second)
	for f.get() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("GOMAXPROCS stayed %d after the last heavy call ended, want 1", f.get())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestProcGovernorLingersAcrossABurst(t *testing.T) {
	g, f := testGovernor(time.Hour)
	g.start()
	for i := 0; i < 5; i++ {
		g.enter()()
	}
	// One raise, no lowering in between: the layers of one pull do not
	// flip it back and forth.
	if want := []int{1, 4}; len(f.log) != 2 || f.log[0] != want[0] || f.log[1] != want[1] {
		t.Fatalf("GOMAXPROCS set to %v, want %v", f.log, want)
	}
	g.stop()
	if f.get() != 4 {
		t.Fatalf("after stop: %d, want 4", f.get())
	}
	g.enter()()
	if f.get() != 4 {
		t.Fatalf("a stopped governor lowered GOMAXPROCS to %d", f.get())
	}
}

func TestProcGovernorOffWhenNothingToLower(t *testing.T) {
	if g := newProcGovernor(1<<20, time.Second); g != nil {
		t.Fatalf("light_procs above the CPU count gave a governor: %+v", g)
	}
	var g *procGovernor // a nil governor is a no-op
	g.start()
	g.enter()()
	g.stop()
}
