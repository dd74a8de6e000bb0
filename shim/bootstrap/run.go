package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/shim/events"
	"github.com/hullrt/hull/shim/reaper"
	"github.com/hullrt/hull/shim/runc"
	"github.com/hullrt/hull/shim/service"
	"github.com/hullrt/hull/shim/task"
)

// listenerFDEnv tells the serving process that start passed it the
// listening socket as fd 3: start listens before it prints the address, so
// the daemon's first connection cannot arrive before anyone listens.
const listenerFDEnv = "HULL_SHIM_LISTENER_FD"

// defaultProcsEnv says that start, not the user, set the serving process's
// GOMAXPROCS=1, so that the serving process drops it again before it runs
// runc (whose environment would otherwise carry it on).
//
// Why one processor: a shim mostly waits; one P makes its Go runtime keep
// one set of per-P caches instead of two (a tenth of the shim's resident
// memory) and lets its few goroutines hand work to each other without
// waking other threads. Blocking system calls still run beside it.
const defaultProcsEnv = "HULL_SHIM_DEFAULT_PROCS"

// Main runs the shim for args (without the program name) and returns the
// process's exit code.
func Main(args []string) int {
	a, err := ParseArgs(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	switch a.Action {
	case "start":
		addr, err := Start(a, os.Stdin)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprint(os.Stdout, BootstrapOutput(addr, os.Getenv("MAX_SHIM_VERSION")))
		return 0
	case "delete":
		resp, err := Delete(a)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		os.Stdout.Write(resp)
		return 0
	}
	if err := Serve(a); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// BootstrapOutput is what start prints: the bare address, which every
// daemon reads, unless the daemon says it speaks task API v3
// (MAX_SHIM_VERSION >= 3, as containerd 2 and hulld set it); then the
// JSON bootstrap parameters that say the shim speaks v3.
func BootstrapOutput(addr, maxVersion string) string {
	if v, err := strconv.Atoi(strings.TrimSpace(maxVersion)); err == nil && v >= 3 {
		return fmt.Sprintf(`{"version":3,"address":%q,"protocol":"ttrpc"}`, addr)
	}
	return addr
}

// Start is the start subcommand: it makes sure a shim serves the socket
// of the container's group and returns that socket's address. It writes
// the bundle's address and shim.pid files. Nothing may go to stderr on
// success: containerd reads start's combined output as the address.
func Start(a Args, stdin io.Reader) (string, error) {
	bundle, err := os.Getwd()
	if err != nil {
		return "", err
	}
	spec, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return "", fmt.Errorf("read bundle spec: %w", err)
	}
	// The runtime options (an Any) are on stdin; the serving process uses
	// them when a Create carries none.
	if stdin != nil {
		if opts, _ := io.ReadAll(io.LimitReader(stdin, 1<<20)); len(opts) > 0 {
			if err := writeBundleFile(bundle, "options.pb", string(opts)); err != nil {
				return "", err
			}
		}
	}
	path := SocketPath(a.Address, a.Namespace, GroupID(spec, a.ID))
	addr := Address(path)
	l, err := Listen(path)
	if errors.Is(err, errdefs.ErrAlreadyExists) {
		// The group's shim runs already: it will serve this container too.
		if err := writeBundleFile(bundle, "address", addr); err != nil {
			return "", err
		}
		return addr, nil
	}
	if err != nil {
		return "", err
	}
	defer l.Close()
	lf, err := l.File()
	if err != nil {
		return "", err
	}
	defer lf.Close()
	l.SetUnlinkOnClose(false) // the child serves it from now on
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	childArgs := []string{"-namespace", a.Namespace, "-address", a.Address, "-publish-binary", a.PublishBinary,
		"-id", a.ID, "-socket", path}
	if a.Debug {
		childArgs = append(childArgs, "-debug")
	}
	cmd := exec.Command(self, childArgs...)
	cmd.Dir = bundle
	cmd.Env = childEnv(os.Environ())
	cmd.ExtraFiles = []*os.File{lf}
	// A session of its own: the daemon's death or a terminal hang-up must
	// not reach the shim, which keeps the containers running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		os.Remove(path)
		return "", fmt.Errorf("start shim: %w", err)
	}
	pid := cmd.Process.Pid
	cmd.Process.Release()
	if err := writeBundleFile(bundle, "shim.pid", strconv.Itoa(pid)); err != nil {
		return "", err
	}
	if err := writeBundleFile(bundle, "address", addr); err != nil {
		return "", err
	}
	return addr, nil
}

// childEnv is the serving process's environment: start's own, the listener
// fd, and one Go processor unless the user chose a GOMAXPROCS.
func childEnv(environ []string) []string {
	env := append(environ[:len(environ):len(environ)], listenerFDEnv+"=3")
	for _, kv := range environ {
		if strings.HasPrefix(kv, "GOMAXPROCS=") {
			return env
		}
	}
	return append(env, "GOMAXPROCS=1", defaultProcsEnv+"=1")
}

func writeBundleFile(bundle, name, content string) error {
	tmp := filepath.Join(bundle, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(bundle, name))
}

// Delete is the delete subcommand, run by the daemon when a shim died: it
// deletes the runc container, unmounts the rootfs and returns an encoded
// DeleteResponse saying the task was killed (137).
func Delete(a Args) ([]byte, error) {
	bundle := a.Bundle
	if bundle == "" {
		var err error
		if bundle, err = os.Getwd(); err != nil {
			return nil, err
		}
	}
	rec := task.LoadRecord(bundle, a.Namespace)
	r := reaper.New(nil)
	stop := make(chan struct{})
	defer close(stop)
	go r.Run(stop)
	rc := &runc.Runc{Binary: rec.Binary, Root: rec.Root, Log: filepath.Join(bundle, "log.json"),
		SystemdCgroup: rec.SystemdCgroup, Reaper: r}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rc.Delete(ctx, a.ID, true); err != nil && !runc.IsNotFound(err) {
		fmt.Fprintf(os.Stderr, "runc delete %s: %v\n", a.ID, err)
	}
	if err := mount.UnmountAll(filepath.Join(bundle, "rootfs")); err != nil {
		fmt.Fprintf(os.Stderr, "unmount rootfs: %v\n", err)
	}
	// A socket left by the dead shim (not one still answering, which a
	// group's other containers use).
	if b, err := os.ReadFile(filepath.Join(bundle, "address")); err == nil {
		if p := TrimAddress(string(b)); p != "" && !Answers(p) {
			os.Remove(p)
		}
	}
	return proto.Marshal(&taskv2.DeleteResponse{ExitStatus: 128 + uint32(unix.SIGKILL), ExitedAt: timestamppb.Now()})
}

// Serve is the long-lived shim: it serves the task API until a Shutdown
// finds no container left.
func Serve(a Args) error {
	bundle, err := os.Getwd()
	if err != nil {
		return err
	}
	logw := openLog(bundle)
	level := slog.LevelInfo
	if a.Debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: level})).With("runtime", "hull", "namespace", a.Namespace)
	slog.SetDefault(log)

	if err := reaper.SetSubreaper(); err != nil {
		return fmt.Errorf("become subreaper: %w", err)
	}
	l, err := listener(a)
	if err != nil {
		log.Error("listen", "error", err)
		return err
	}
	pub := events.NewPublisher(os.Getenv("TTRPC_ADDRESS"), a.Namespace, log)
	mon := task.NewMonitor()
	rp := reaper.New(mon.Exit)
	stopReaper := make(chan struct{})
	go rp.Run(stopReaper)
	svc := service.New(service.Config{Namespace: a.Namespace, Events: pub, Reaper: rp, Monitor: mon, Log: log,
		Options: readOptions(bundle)})
	srv, err := ttrpc.NewServer()
	if err != nil {
		return err
	}
	service.Register(srv, svc)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(context.Background(), l) }()
	log.Info("shim serving", "id", a.ID, "socket", a.Socket, "pid", os.Getpid())

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGUSR1, unix.SIGTERM, unix.SIGINT)
	signal.Ignore(unix.SIGPIPE, unix.SIGHUP)
	for done := false; !done; {
		select {
		case s := <-sigs:
			if s == unix.SIGUSR1 {
				dumpStacks(bundle, log)
				continue
			}
			log.Info("shim exits on signal", "signal", s)
			done = true
		case <-svc.Done():
			log.Info("shim exits: no container left")
			done = true
		case err := <-serveErr:
			log.Error("ttrpc server stopped", "error", err)
			done = true
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	srv.Shutdown(ctx) // lets the Shutdown call's own reply go out
	cancel()
	srv.Close()
	l.Close()
	if a.Socket != "" {
		os.Remove(a.Socket)
	}
	pub.Close()
	close(stopReaper)
	return nil
}

// listener is the socket start passed as fd 3, or one made here when the
// shim is run without start (tests, manual runs).
func listener(a Args) (net.Listener, error) {
	if os.Getenv(defaultProcsEnv) == "1" {
		os.Unsetenv(defaultProcsEnv)
		os.Unsetenv("GOMAXPROCS")
	}
	if os.Getenv(listenerFDEnv) == "3" {
		os.Unsetenv(listenerFDEnv)
		f := os.NewFile(3, "shim-socket")
		l, err := net.FileListener(f)
		f.Close()
		return l, err
	}
	if a.Socket == "" {
		return nil, fmt.Errorf("no socket to serve: run with start, or -socket: %w", errdefs.ErrInvalidArgument)
	}
	return Listen(a.Socket)
}

// openLog opens the bundle's log FIFO, which containerd reads and copies
// into its own log; without a reader (or a FIFO) the shim logs to stderr.
func openLog(bundle string) io.Writer {
	p := filepath.Join(bundle, "log")
	f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return os.Stderr
	}
	// Writes block rather than fail once the reader is there.
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.SetNonblock(int(fd), false) })
	}
	return f
}

// readOptions reads the runtime options start saved in the bundle.
func readOptions(bundle string) *options.Options {
	b, err := os.ReadFile(filepath.Join(bundle, "options.pb"))
	if err != nil {
		return nil
	}
	var a anypb.Any
	if proto.Unmarshal(b, &a) != nil {
		return nil
	}
	var o options.Options
	if proto.Unmarshal(a.Value, &o) != nil {
		return nil
	}
	return &o
}

// dumpStacks writes every goroutine's stack to <bundle>/shim.<pid>.stacks.log
// and to the log, for SIGUSR1.
func dumpStacks(bundle string, log *slog.Logger) {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	path := filepath.Join(bundle, fmt.Sprintf("shim.%d.stacks.log", os.Getpid()))
	if err := os.WriteFile(path, buf[:n], 0o600); err != nil {
		log.Error("write goroutine dump", "path", path, "error", err)
	}
	log.Info("goroutine dump", "path", path, "stacks", string(buf[:n]))
}
