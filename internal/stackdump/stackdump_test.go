package stackdump

import (
	"bytes"
	"strings"
	"testing"
)

// parked blocks until its channel closes, so that its stack is in a dump.
func parked(ch chan struct{}) { <-ch }

func TestAllHoldsEveryGoroutine(t *testing.T) {
	ch := make(chan struct{})
	defer close(ch)
	const n = 1000 // more stacks than the first 64 KiB buffer holds
	for range n {
		go parked(ch)
	}
	var got int
	for range 1000 {
		got = strings.Count(string(All(1<<30)), "stackdump.parked(")
		if got == n {
			break
		}
	}
	if got != n {
		t.Fatalf("%d parked goroutines in the dump, want %d", got, n)
	}
	d := All(1 << 30)
	if len(d) <= 64<<10 {
		t.Fatalf("a dump of %d bytes does not test a buffer grown past its first 64 KiB", len(d))
	}
	if !bytes.Contains(d, []byte("stackdump.TestAllHoldsEveryGoroutine(")) {
		t.Fatalf("the calling goroutine is not in the dump:\n%.2000s", d)
	}
}

func TestAllStopsAtLimit(t *testing.T) {
	ch := make(chan struct{})
	defer close(ch)
	for range 200 {
		go parked(ch)
	}
	if d := All(4096); len(d) != 4096 {
		t.Fatalf("%d bytes with a limit of 4096, want the limit (200 goroutines' stacks are more)", len(d))
	}
}
