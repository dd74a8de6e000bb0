package bootstrap

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"

	"github.com/hullrt/hull/internal/stackdump"
)

// dumpStacks writes every goroutine's stack to <bundle>/shim.<pid>.stacks.log
// for SIGUSR1 and logs one line naming it (which hulld copies into its own
// log), not the stacks: escaped into one log line they were unreadable.
// Each dump replaces the last, so a shim keeps one file however often it is
// signalled, and the bundle's removal takes it.
func dumpStacks(bundle string, log *slog.Logger) {
	path := filepath.Join(bundle, fmt.Sprintf("shim.%d.stacks.log", os.Getpid()))
	buf := stackdump.All(maxStacks)
	if err := writeAtomic(path, buf); err != nil {
		log.Error("write goroutine dump", "path", path, "error", err)
		return
	}
	log.Info("goroutine dump written", "path", path, "goroutines", runtime.NumGoroutine(), "bytes", len(buf))
}

// maxStacks bounds a dump: a shim runs a few dozen goroutines (about 6 KB of
// stacks); a dump this large would mean a leak, whose first megabytes tell.
const maxStacks = 16 << 20

// writeAtomic replaces path with data through a temporary file, so that a
// reader (hullctl debug dump waits for the file) never sees half a dump.
func writeAtomic(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
