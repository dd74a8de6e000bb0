package reaper

import (
	"bytes"
	"math"
	"os/exec"
	"testing"

	"github.com/hullrt/hull/internal/stackdump"
)

// TestBackgroundStopWaitsForTheLoop: while the loop runs, Start's waiters
// get their children's statuses; once the stop function returns the loop
// has ended, so that it cannot take the status of a child the caller then
// waits for itself (os/exec).
func TestBackgroundStopWaitsForTheLoop(t *testing.T) {
	for i := 0; i < 20; i++ {
		r := New(nil)
		stop := r.Background()
		wait, err := r.Start(exec.Command("sh", "-c", "exit 3"))
		if err != nil {
			t.Fatal(err)
		}
		if st := wait(); st != 3 {
			t.Fatalf("status %d through the reaper, want 3", st)
		}
		stop()
		if d := stackdump.All(math.MaxInt); bytes.Contains(d, []byte("reaper.(*Reaper).run(")) {
			t.Fatalf("the reap loop still runs after stop returned:\n%s", d)
		}
		err = exec.Command("sh", "-c", "exit 5").Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 5 {
			t.Fatalf("os/exec's wait after stop: %v, want exit status 5", err)
		}
	}
}
