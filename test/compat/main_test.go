package compat

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hullrt/hull/internal/hulltest"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// TestMain removes the hulld that buildHulld built, if any, what
// hulltest built and the directories containerd's shims made at their
// fixed defaults under /run/containerd.
func TestMain(m *testing.M) {
	cleanup := hulltest.RemoveContainerdDefaultsMade()
	code := m.Run()
	cleanup()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	hulltest.RemoveBuilds()
	os.Exit(code)
}

// buildHulld makes sure HULLD_BIN names a hulld, which internal/hulltest
// then starts. Unless the caller named one, it builds hulld from the main
// module, once per test process, so the daemon under test is built with the
// main module's dependencies, as `make build` builds it, and not with the
// versions this module's containerd requirement would select (which is
// what building it from here would do).
func buildHulld(t *testing.T) {
	t.Helper()
	if os.Getenv("HULLD_BIN") != "" && binDir == "" {
		return
	}
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "hull-compat-bin-")
		if binErr != nil {
			return
		}
		bin := filepath.Join(binDir, "hulld")
		cmd := exec.Command("go", "build", "-trimpath", "-tags", "urfave_cli_no_docs,grpcnotrace", "-o", bin, "./cmd/hulld")
		cmd.Dir = filepath.Join("..", "..")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("build hulld: %v\n%s", err, out)
			return
		}
		binErr = os.Setenv("HULLD_BIN", bin)
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
}
