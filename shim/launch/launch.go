// Package launch starts the serving process of containerd-shim-hull-v2: what
// the shim's start subcommand does, and what hulld does itself for its own
// shim, which saves starting a process (the start one) per container.
package launch

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
)

// ListenerFDEnv tells the serving process that it was passed the listening
// socket as fd 3: the socket exists before the address is handed out, so
// the daemon's first connection cannot arrive before anyone listens.
const ListenerFDEnv = "HULL_SHIM_LISTENER_FD"

// DefaultProcsEnv says that the serving process's GOMAXPROCS=1 is not the
// user's choice but the default, and what its children (runc) get instead:
// its value is their GOMAXPROCS, or "none" for none. A daemon that gives
// every shim a GOMAXPROCS of its own (hulld gives 2, as containerd does, so
// that no shim starts a thread per core of a large node) sets it to that
// value, for hull's shim to take one processor all the same.
//
// Why one processor: a shim mostly waits; one P makes its Go runtime keep
// one set of per-P caches instead of two and lets its few goroutines hand
// work to each other without waking other threads. Blocking system calls
// still run beside it.
const DefaultProcsEnv = "HULL_SHIM_DEFAULT_PROCS"

// Params is what a serving process is launched with.
type Params struct {
	// Namespace, Address, PublishBinary, ID and Debug are the shim's
	// command-line values (see the shim's flags).
	Namespace, Address, PublishBinary, ID string
	Debug                                 bool
	// SocketDir is the directory of the socket, as the daemon's bootstrap
	// parameters name it; empty for the one beside Address (SocketPath).
	SocketDir string
	// Bundle is the task's bundle directory, holding config.json.
	Bundle string
	// Options are the runtime options (an encoded Any), kept in the bundle
	// for a Create that carries none.
	Options []byte
	// Binary is the shim executable to run as the serving process.
	Binary string
	// Env is the serving process's environment before ChildEnv's
	// additions: TTRPC_ADDRESS, NAMESPACE and the like.
	Env []string
}

// Launch makes sure a shim serves the socket of the container's group and
// returns that socket's address, writing the bundle's address file (and
// shim.pid when it starts one). proc is the serving process it started, for
// the caller to reap or release, or nil when the group's shim runs already.
// On error proc is nil: a process started before the failure is killed and
// reaped here, so callers have nothing to clean up.
func Launch(p Params) (addr string, proc *os.Process, err error) {
	spec, err := os.ReadFile(filepath.Join(p.Bundle, "config.json"))
	if err != nil {
		return "", nil, fmt.Errorf("read bundle spec: %w", err)
	}
	if len(p.Options) > 0 {
		if err := WriteBundleFile(p.Bundle, "options.pb", string(p.Options)); err != nil {
			return "", nil, err
		}
	}
	path := SocketPath(p.SocketDir, p.Address, p.Namespace, GroupID(spec, p.ID))
	addr = Address(path)
	l, err := Listen(path)
	if errors.Is(err, errdefs.ErrAlreadyExists) {
		// The group's shim runs already: it will serve this container too.
		return addr, nil, WriteBundleFile(p.Bundle, "address", addr)
	}
	if err != nil {
		return "", nil, err
	}
	defer l.Close()
	lf, err := l.File()
	if err != nil {
		return "", nil, err
	}
	defer lf.Close()
	l.SetUnlinkOnClose(false) // the child serves it from now on
	args := []string{"-namespace", p.Namespace, "-address", p.Address, "-publish-binary", p.PublishBinary,
		"-id", p.ID, "-socket", path}
	if p.Debug {
		args = append(args, "-debug")
	}
	cmd := exec.Command(p.Binary, args...)
	cmd.Dir = p.Bundle
	cmd.Env = ChildEnv(p.Env)
	cmd.ExtraFiles = []*os.File{lf}
	// A session of its own: the daemon's death or a terminal hang-up must
	// not reach the shim, which keeps the containers running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		os.Remove(path)
		return "", nil, fmt.Errorf("start shim: %w", err)
	}
	if err := WriteBundleFile(p.Bundle, "shim.pid", strconv.Itoa(cmd.Process.Pid)); err != nil {
		abandon(cmd, path)
		return "", nil, fmt.Errorf("record shim pid %d in bundle %s: %w: %w", cmd.Process.Pid, p.Bundle, err, errdefs.ErrUnavailable)
	}
	if err := WriteBundleFile(p.Bundle, "address", addr); err != nil {
		abandon(cmd, path)
		return "", nil, fmt.Errorf("record shim address %s in bundle %s: %w: %w", addr, p.Bundle, err, errdefs.ErrUnavailable)
	}
	return addr, cmd.Process, nil
}

// abandon kills and reaps a serving process whose bundle could not record
// it, and removes its socket. Nobody could find it again (no shim.pid for
// delete, no address to connect to), so left alive it would serve nothing
// and never exit; the caller only sees the error.
func abandon(cmd *exec.Cmd, socket string) {
	cmd.Process.Kill()
	cmd.Wait()
	os.Remove(socket)
}

// ChildEnv is the serving process's environment: environ, the listener fd,
// and one Go processor unless environ has a GOMAXPROCS that is the user's
// (one without DefaultProcsEnv).
func ChildEnv(environ []string) []string {
	env := append(environ[:len(environ):len(environ)], ListenerFDEnv+"=3")
	procs, daemonDefault := false, false
	for _, kv := range environ {
		procs = procs || strings.HasPrefix(kv, "GOMAXPROCS=")
		daemonDefault = daemonDefault || strings.HasPrefix(kv, DefaultProcsEnv+"=")
	}
	switch {
	case daemonDefault:
		return append(env, "GOMAXPROCS=1")
	case procs:
		return env
	}
	return append(env, "GOMAXPROCS=1", DefaultProcsEnv+"=none")
}

// WriteBundleFile replaces the bundle file name with content atomically.
func WriteBundleFile(bundle, name, content string) error {
	tmp := filepath.Join(bundle, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(bundle, name))
}
