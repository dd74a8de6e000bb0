package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/internal/stackdump"
)

// DumpStacksOnSignal writes every goroutine's stack to the log and to a file
// under state each time the process gets SIGUSR1, until ctx is done.
func DumpStacksOnSignal(ctx context.Context, state string, log *slog.Logger) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGUSR1)
	go func() {
		defer signal.Stop(ch)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				path, err := DumpStacks(state)
				if err != nil {
					log.Error("goroutine dump", "error", err)
				}
				log.Info("goroutine dump written", "path", path)
			}
		}
	}()
}

// DumpStacks writes all goroutine stacks to
// <state>/hulld.<pid>.stacks.<time>.log, logs them to stderr, and returns
// the file's path.
func DumpStacks(state string) (string, error) {
	buf := stackdump.All(math.MaxInt)
	fmt.Fprintf(os.Stderr, "=== BEGIN goroutine stack dump ===\n%s\n=== END goroutine stack dump ===\n", buf)
	path := filepath.Join(state, fmt.Sprintf("hulld.%d.stacks.%s.log", os.Getpid(), time.Now().UTC().Format("20060102T150405.000000000Z")))
	return path, os.WriteFile(path, buf, 0o600)
}
