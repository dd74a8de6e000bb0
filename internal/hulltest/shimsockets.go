package hulltest

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// RuncShimSocketDir is where Debian's containerd-shim-runc-v2 (1.6) puts its
// sockets whatever the daemon's state directory: it cannot be told
// otherwise. A shim that is killed, as tests and benchmarks do to the shims
// of a daemon they stop, leaves its socket file behind.
const RuncShimSocketDir = "/run/containerd/s"

// cleanShimSockets removes, when t ends, the sockets that appeared in
// RuncShimSocketDir during t and that nobody listens on any more: the
// leftovers of the runc shims t's daemons started. Sockets that were there
// before, and those of shims still alive (a containerd of the host's, or a
// parallel test's), are left alone.
func cleanShimSockets(t testing.TB) {
	before := map[string]bool{}
	entries, _ := os.ReadDir(RuncShimSocketDir)
	for _, e := range entries {
		before[e.Name()] = true
	}
	t.Cleanup(func() { removeDeadSockets(before) })
}

// removeDeadShimSockets removes the sockets in RuncShimSocketDir that
// nobody listens on and returns how many live ones are left.
func removeDeadShimSockets() (live int) { return removeDeadSockets(nil) }

// removeDeadSockets removes the sockets in RuncShimSocketDir, but those
// named in keep, that nobody listens on, and counts the live ones.
func removeDeadSockets(keep map[string]bool) (live int) {
	entries, _ := os.ReadDir(RuncShimSocketDir)
	for _, e := range entries {
		if keep[e.Name()] || e.Type()&fs.ModeSocket == 0 {
			continue
		}
		p := filepath.Join(RuncShimSocketDir, e.Name())
		c, err := net.DialTimeout("unix", p, time.Second)
		if err == nil {
			c.Close()
			live++
			continue
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			os.Remove(p)
		}
	}
	return live
}
