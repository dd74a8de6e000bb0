package integration

import (
	"os"
	"testing"

	"github.com/hullrt/hull/internal/hulltest"
)

// TestMain removes the test binaries and, as the only package of the
// module whose tests run containerd's shims and ctr, the directories they
// make at their fixed defaults under /run/containerd.
func TestMain(m *testing.M) {
	cleanup := hulltest.RemoveContainerdDefaultsMade()
	code := m.Run()
	cleanup()
	hulltest.RemoveBuilds()
	os.Exit(code)
}
