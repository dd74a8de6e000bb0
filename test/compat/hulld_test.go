package compat

import (
	"runtime"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hullrt/hull/internal/hulltest"
)

// startHulld starts a hulld (see buildHulld) on a temporary root,
// state and socket of its own; it is stopped, and its directories removed,
// when t ends.
//
// The calling goroutine stays locked to its OS thread until then. hulltest
// starts hulld with Pdeathsig, which the kernel sends when the thread that
// forked it ends, not the process; and containerd's mount.All, for overlay
// options too long for one page (the suite's 128-layer case), mounts from a
// goroutine that locks its thread, changes that thread's working directory
// and ends without unlocking, which makes the Go runtime end the thread. If
// that thread was the one that had forked hulld, hulld was killed mid-suite
// (connection refused in every case after). A thread locked here cannot be
// taken by another goroutine. t's function must call startHulld itself:
// the parallel subtests of the suites run after the function returns, but
// on the same goroutine's watch, and t's cleanups (hulld's stop, then the
// unlock registered first) run on it after them.
func startHulld(t *testing.T) *hulltest.Daemon {
	t.Helper()
	buildHulld(t)
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	return hulltest.Start(t, hulltest.Options{})
}

// dial connects to hulld's socket as containerd's client does, a unix
// address through grpc's own resolver, closed when t ends.
func dial(t *testing.T, address string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
