package client_test

import (
	"os"
	"testing"

	"github.com/hullrt/hull/internal/hulltest"
)

// TestMain removes the binaries hulltest built for this package's tests.
func TestMain(m *testing.M) {
	code := m.Run()
	hulltest.RemoveBuilds()
	os.Exit(code)
}
