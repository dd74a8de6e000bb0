package runc

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/hullrt/hull/shim/reaper"
)

// TestCgroupCommandsOutliveTheirCaller: runc kill, delete, pause, resume
// and update run to their end when the call that asked for them goes away
// (hulld dying mid-call cancels the request): killed between its freeze
// and its thaw, runc would leave the container frozen for good.
func TestCgroupCommandsOutliveTheirCaller(t *testing.T) {
	dir := t.TempDir()
	gate, done := filepath.Join(dir, "gate"), filepath.Join(dir, "done")
	// A runtime that waits for the gate (as runc between freeze and
	// thaw), then says it finished.
	bin := filepath.Join(dir, "runc")
	script := "#!/bin/sh\nwhile [ ! -e " + gate + " ]; do sleep 0.01; done\necho \"$*\" >> " + done + "\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	rp := reaper.New(nil)
	t.Cleanup(rp.Background())
	r := &Runc{Binary: bin, Reaper: rp}
	for name, call := range map[string]func(context.Context) error{
		"kill":   func(ctx context.Context) error { return r.Kill(ctx, "c1", 9, true) },
		"delete": func(ctx context.Context) error { return r.Delete(ctx, "c1", true) },
		"pause":  func(ctx context.Context) error { return r.Pause(ctx, "c1") },
		"resume": func(ctx context.Context) error { return r.Resume(ctx, "c1") },
		"update": func(ctx context.Context) error { return r.Update(ctx, "c1", []byte("{}")) },
	} {
		os.Remove(gate)
		os.Remove(done)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- call(ctx) }()
		cancel() // the caller is gone
		if err := os.WriteFile(gate, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := os.Stat(done); err != nil {
			t.Errorf("runc %s was stopped when its caller went away: %v", name, err)
		}
	}
}
