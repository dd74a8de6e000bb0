package bootstrap

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDumpStacks: the stacks go to one file per shim in the bundle, a
// second dump replaces the first, and the log gets one short line that
// names the file instead of the stacks themselves.
func TestDumpStacks(t *testing.T) {
	bundle := t.TempDir()
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	dumpStacks(bundle, log)
	dumpStacks(bundle, log)

	path := filepath.Join(bundle, fmt.Sprintf("shim.%d.stacks.log", os.Getpid()))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "goroutine ") || !strings.Contains(string(data), "TestDumpStacks") {
		t.Fatalf("dump holds no goroutine stacks:\n%.500s", data)
	}
	ents, _ := os.ReadDir(bundle)
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("bundle holds %v, want the one dump file", names)
	}
	lines := strings.Split(strings.TrimSpace(logged.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log has %d lines, want one a dump:\n%s", len(lines), logged.String())
	}
	for _, l := range lines {
		if !strings.Contains(l, "path="+path) || strings.Contains(l, "goroutine 1 [") || len(l) > 400 {
			t.Errorf("log line does not just name the dump: %q", l)
		}
	}
}

// TestDumpStacksUnwritable: a bundle the dump cannot be written to is
// logged as an error, with no file left behind.
func TestDumpStacksUnwritable(t *testing.T) {
	var logged bytes.Buffer
	dumpStacks(filepath.Join(t.TempDir(), "gone"), slog.New(slog.NewTextHandler(&logged, nil)))
	if !strings.Contains(logged.String(), "level=ERROR") || !strings.Contains(logged.String(), "write goroutine dump") {
		t.Fatalf("log: %s", logged.String())
	}
}
