// Package bootstrap is the shim binary's life outside the task API: the
// command line containerd runs it with, the start subcommand that forks
// the long-lived shim and prints its socket address, the delete subcommand
// that cleans up after a dead shim, and the serving process itself
// (socket, log FIFO, reaper, events, signals, exit).
//
// containerd runs, with the working directory set to the bundle:
//
//	containerd-shim-hull-v2 -namespace NS -address ADDR -publish-binary BIN -id ID [-debug] start
//	containerd-shim-hull-v2 -namespace NS -address ADDR -publish-binary BIN -id ID [-debug] -bundle DIR delete
//
// with TTRPC_ADDRESS (the daemon's ttrpc socket, for events), NAMESPACE,
// GRPC_ADDRESS and MAX_SHIM_VERSION in the environment, and for start the
// runtime options (a marshalled Any) on stdin.
package bootstrap

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/containerd/errdefs"
)

// Args are the shim's command line.
type Args struct {
	Namespace     string
	Address       string // the daemon's gRPC socket
	PublishBinary string
	ID            string
	Bundle        string // only delete passes it; otherwise the cwd
	Debug         bool
	Socket        string // a socket address to serve (set by start for its child)
	// Action is "start", "delete", or "" to serve.
	Action string
}

// ParseArgs parses the shim's command line (without the program name).
func ParseArgs(args []string) (Args, error) {
	var a Args
	fs := flag.NewFlagSet("containerd-shim-hull-v2", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&a.Namespace, "namespace", "", "namespace of the task")
	fs.StringVar(&a.Address, "address", "", "the daemon's gRPC address")
	fs.StringVar(&a.PublishBinary, "publish-binary", "", "the daemon's binary (unused: events go over ttrpc)")
	fs.StringVar(&a.ID, "id", "", "id of the task")
	fs.StringVar(&a.Bundle, "bundle", "", "bundle directory (delete)")
	fs.BoolVar(&a.Debug, "debug", false, "debug logging")
	fs.StringVar(&a.Socket, "socket", "", "socket address to serve")
	if err := fs.Parse(args); err != nil {
		return a, fmt.Errorf("shim arguments %q: %w: %w", strings.Join(args, " "), err, errdefs.ErrInvalidArgument)
	}
	switch rest := fs.Args(); {
	case len(rest) == 0:
	case len(rest) == 1 && (rest[0] == "start" || rest[0] == "delete"):
		a.Action = rest[0]
	default:
		return a, fmt.Errorf("shim arguments: unknown action %q: %w", strings.Join(rest, " "), errdefs.ErrInvalidArgument)
	}
	if a.Namespace == "" {
		return a, fmt.Errorf("shim arguments: -namespace is required: %w", errdefs.ErrInvalidArgument)
	}
	if a.ID == "" {
		return a, fmt.Errorf("shim arguments: -id is required: %w", errdefs.ErrInvalidArgument)
	}
	return a, nil
}
