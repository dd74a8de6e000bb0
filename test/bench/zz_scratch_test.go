package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/testimage"
)

func BenchmarkZZScratchProfile(b *testing.B) {
	if os.Getenv("SCRATCH") == "" {
		b.Skip()
	}
	dir := b.TempDir()
	dbg := filepath.Join(dir, "debug.sock")
	hull := hulltest.Start(b, hulltest.Options{Config: fmt.Sprintf("version = 3\n[debug]\n  address = %q\n", dbg), Args: []string{"--log-level", "info"}})
	img := testimage.New([]string{"/hello"}, []testimage.File{{Name: "hello", Mode: 0o755, Data: []byte("#!/bin/sh\necho hello\n")}})
	fill(b, nsCtx("default"), dial(b, hull.Address), img, 10000, 8)
	prof := exec.Command("curl", "-s", "--unix-socket", dbg, "-o", "/tmp/hull-ls.pprof", "http://x/debug/pprof/profile?seconds=8")
	if err := prof.Start(); err != nil {
		b.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	w, own, d, err := cmdCPU(hull.PID(), "ctr", "--address", hull.Address, "images", "ls")
	fmt.Println(w, own, d, err)
	prof.Wait()
	cp := exec.Command("cp", hulltest.Binary(b), "/tmp/hulld-prof-bin")
	cp.Run()
}
