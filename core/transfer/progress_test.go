package transfer

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

type recorder struct {
	mu  sync.Mutex
	got []Progress
}

func (r *recorder) send(p Progress) {
	r.mu.Lock()
	r.got = append(r.got, p)
	r.mu.Unlock()
}

func (r *recorder) events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.got {
		out = append(out, p.Name+":"+p.Event)
	}
	return out
}

func TestCoalescerKeepsLatestPerJobAndStepOrder(t *testing.T) {
	var r recorder
	// An interval no test waits for: only the unnamed step and close
	// flush.
	c := newCoalescer(r.send, time.Hour)
	c.add(Progress{Event: "Resolving"})
	for i := range 3 {
		name := fmt.Sprintf("layer-%d", i)
		for _, ev := range []string{"waiting", "downloading", "complete"} {
			c.add(Progress{Name: name, Event: ev})
		}
	}
	c.add(Progress{Event: "Unpacking"})
	c.add(Progress{Name: "layer-0", Event: "extracted"})
	// "already exists" stays even when a later state follows it in the
	// same interval: the client learns the blob was there already.
	for _, ev := range []string{"waiting", "already exists", "extracted"} {
		c.add(Progress{Name: "layer-3", Event: ev})
	}
	// A blob downloaded and extracted within one interval is reported
	// once, extracted, as containerd reports it.
	for _, ev := range []string{"waiting", "downloading", "complete", "extracted"} {
		c.add(Progress{Name: "layer-4", Event: ev})
	}
	c.close()
	c.add(Progress{Name: "layer-9", Event: "late"})
	want := []string{":Resolving", "layer-0:complete", "layer-1:complete", "layer-2:complete", ":Unpacking", "layer-0:extracted", "layer-3:already exists", "layer-3:extracted", "layer-4:extracted"}
	if got := r.events(); !slices.Equal(got, want) {
		t.Fatalf("sent %q, want %q", got, want)
	}
}

func TestCoalescerFlushesAfterInterval(t *testing.T) {
	var r recorder
	c := newCoalescer(r.send, 10*time.Millisecond)
	defer c.close()
	c.add(Progress{Name: "layer-0", Event: "downloading", Progress: 1})
	c.add(Progress{Name: "layer-0", Event: "downloading", Progress: 2})
	deadline := time.Now().Add(10 * time.Second)
	for len(r.events()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("nothing sent within 10s of an event, with an interval of 10ms")
		}
		time.Sleep(time.Millisecond)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) != 1 || r.got[0].Progress != 2 {
		t.Fatalf("sent %+v, want the latest state of layer-0 alone", r.got)
	}
}
