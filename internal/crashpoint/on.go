//go:build hullcrash

package crashpoint

import (
	"fmt"
	"os"
	"sync"
	"syscall"
)

// Enabled reports whether this binary honours HULL_CRASHPOINT.
const Enabled = true

// target is read once: the environment of a test binary does not change.
var target = sync.OnceValues(func() (string, int64) {
	name, n, _ := parse(os.Getenv(EnvVar))
	return name, n
})

var (
	mu   sync.Mutex
	hits = map[string]int64{}
)

func hit(name string) {
	want, n := target()
	if want == "" || want != name {
		return
	}
	mu.Lock()
	hits[name]++
	now := hits[name]
	mu.Unlock()
	if now != n {
		return
	}
	fmt.Fprintf(os.Stderr, "crashpoint %s: pid %d kills itself\n", name, os.Getpid())
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way
}
