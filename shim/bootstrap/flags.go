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
//	containerd-shim-hull-v2 -info
//
// with TTRPC_ADDRESS (the daemon's ttrpc socket, for events), NAMESPACE,
// GRPC_ADDRESS and MAX_SHIM_VERSION in the environment. start reads on
// stdin the bootstrap parameters of containerd 2.3+ (and hulld), or the
// runtime options (a marshalled Any) of earlier daemons, and answers each
// in its own form (see StartInput). -info reads runtime options and
// prints the runtime's description (package shim/info).
package bootstrap

import (
	"fmt"
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
	// Info asks for the runtime's description (-info), Version for the
	// shim's version (-v, -version); neither needs the other flags.
	Info, Version bool
	// Action is "start", "delete", or "" to serve.
	Action string
}

// ParseArgs parses the shim's command line (without the program name):
// Go flag syntax (-name value, -name=value, -debug, an optional second
// dash) followed by at most one action. It is parsed by hand rather than
// with package flag, which would add its code to every shim's resident
// size for a dozen lines of work.
func ParseArgs(args []string) (Args, error) {
	var a Args
	strs := map[string]*string{
		"namespace": &a.Namespace, "address": &a.Address, "publish-binary": &a.PublishBinary,
		"id": &a.ID, "bundle": &a.Bundle, "socket": &a.Socket,
	}
	bad := func(format string, v ...any) (Args, error) {
		return a, fmt.Errorf("shim arguments %q: %s: %w", strings.Join(args, " "), fmt.Sprintf(format, v...), errdefs.ErrInvalidArgument)
	}
	i := 0
	for ; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			i++
			break
		}
		if len(arg) < 2 || arg[0] != '-' {
			break
		}
		name := strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-")
		value, hasValue := "", false
		if k, v, ok := strings.Cut(name, "="); ok {
			name, value, hasValue = k, v, true
		}
		if name == "debug" || name == "v" || name == "version" || name == "info" {
			b := true
			if hasValue {
				switch value {
				case "true", "1":
				case "false", "0":
					b = false
				default:
					return bad("-%s=%s: not a boolean", name, value)
				}
			}
			switch name {
			case "debug":
				a.Debug = b
			case "info":
				a.Info = b
			default:
				a.Version = b
			}
			continue
		}
		p, ok := strs[name]
		if !ok {
			return bad("unknown flag -%s", name)
		}
		if !hasValue {
			if i+1 >= len(args) {
				return bad("-%s needs a value", name)
			}
			i++
			value = args[i]
		}
		*p = value
	}
	switch rest := args[i:]; {
	case len(rest) == 0:
	case len(rest) == 1 && (rest[0] == "start" || rest[0] == "delete"):
		a.Action = rest[0]
	default:
		return bad("unknown action %q", strings.Join(rest, " "))
	}
	if a.Info || a.Version {
		return a, nil
	}
	if a.Namespace == "" {
		return bad("-namespace is required")
	}
	if a.ID == "" {
		return bad("-id is required")
	}
	return a, nil
}
