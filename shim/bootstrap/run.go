package bootstrap

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
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
	"github.com/hullrt/hull/internal/version"
	"github.com/hullrt/hull/shim/cgroup"
	"github.com/hullrt/hull/shim/events"
	"github.com/hullrt/hull/shim/info"
	"github.com/hullrt/hull/shim/launch"
	"github.com/hullrt/hull/shim/reaper"
	"github.com/hullrt/hull/shim/runc"
	"github.com/hullrt/hull/shim/service"
	"github.com/hullrt/hull/shim/task"
)

// Main runs the shim for args (without the program name) and returns the
// process's exit code.
func Main(args []string) int {
	a, err := ParseArgs(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	switch {
	case a.Version:
		fmt.Printf("%s:\n  Version:  %s\n  Revision: %s\n  Go version: %s\n\n", filepath.Base(os.Args[0]), version.Version, version.Revision, runtime.Version())
		return 0
	case a.Info:
		if err := info.Run(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	switch a.Action {
	case "start":
		data, err := io.ReadAll(io.LimitReader(os.Stdin, maxStdin))
		if err == nil {
			var in StartInput
			if in, err = ParseStartInput(data, a); err == nil {
				var addr string
				if addr, err = Start(a, in); err == nil {
					var out []byte
					if out, err = in.Answer(addr, os.Getenv("MAX_SHIM_VERSION")); err == nil {
						_, err = os.Stdout.Write(out)
					}
				}
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
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

// BootstrapOutput is what start prints to a daemon that sent no bootstrap
// parameters: the bare address, which every daemon reads, unless the
// daemon says it speaks task API v3 (MAX_SHIM_VERSION >= 3; containerd
// has never set more than 2); then the JSON bootstrap parameters that say
// the shim speaks v3.
func BootstrapOutput(addr, maxVersion string) string {
	if v, err := strconv.Atoi(strings.TrimSpace(maxVersion)); err == nil && v >= 3 {
		return fmt.Sprintf(`{"version":3,"address":%q,"protocol":"ttrpc"}`, addr)
	}
	return addr
}

// Start is the start subcommand: it makes sure a shim serves the socket
// of the container's group and returns that socket's address. It writes
// the bundle's address and shim.pid files. Nothing may go to stderr on
// success: containerd 1.x reads start's combined output as the address.
func Start(a Args, in StartInput) (string, error) {
	bundle, err := os.Getwd()
	if err != nil {
		return "", err
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	address, ttrpcAddress, publish, debug, socketDir := in.launchArgs(a)
	env := os.Environ()
	if ttrpcAddress != "" {
		// The serving process sends its events there (it has no
		// parameters of its own); a later entry wins.
		env = append(env, "TTRPC_ADDRESS="+ttrpcAddress)
	}
	addr, proc, err := launch.Launch(launch.Params{
		Namespace: a.Namespace, Address: address, PublishBinary: publish, ID: a.ID, Debug: debug,
		SocketDir: socketDir, Bundle: bundle, Options: in.Options, Binary: self, Env: env,
	})
	if proc != nil {
		proc.Release() // start exits now; the serving process lives on
	}
	return addr, err
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
	stopReaper := r.Background()
	defer stopReaper()
	rc := &runc.Runc{Binary: rec.Binary, Root: rec.Root, Log: filepath.Join(bundle, "log.json"),
		SystemdCgroup: rec.SystemdCgroup, Reaper: r}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rc.Delete(ctx, a.ID, true); err != nil && !runc.IsNotFound(err) {
		fmt.Fprintf(os.Stderr, "runc delete %s: %v\n", a.ID, err)
	}
	// A create killed before runc recorded its state leaves a cgroup
	// runc delete cannot find, possibly with runc init in it.
	if path := specCgroupsPath(bundle); path != "" {
		if err := cgroup.Remove(path, 5*time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "%v\n", err)
		}
	}
	if err := mount.UnmountAll(filepath.Join(bundle, "rootfs")); err != nil {
		fmt.Fprintf(os.Stderr, "unmount rootfs: %v\n", err)
	}
	// A socket left by the dead shim (not one still answering, which a
	// group's other containers use).
	if b, err := os.ReadFile(filepath.Join(bundle, "address")); err == nil {
		if p := launch.TrimAddress(string(b)); p != "" && !launch.Answers(p) {
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
	stopReaper := rp.Background()
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
	stopReaper()
	return nil
}

// listener is the socket start passed as fd 3, or one made here when the
// shim is run without start (tests, manual runs).
func listener(a Args) (net.Listener, error) {
	// The one processor was the launcher's: runc gets what the daemon
	// meant for it, or nothing.
	if v, ok := os.LookupEnv(launch.DefaultProcsEnv); ok {
		os.Unsetenv(launch.DefaultProcsEnv)
		if v == "none" || v == "" {
			os.Unsetenv("GOMAXPROCS")
		} else {
			os.Setenv("GOMAXPROCS", v)
		}
	}
	if os.Getenv(launch.ListenerFDEnv) == "3" {
		os.Unsetenv(launch.ListenerFDEnv)
		f := os.NewFile(3, "shim-socket")
		l, err := net.FileListener(f)
		f.Close()
		return l, err
	}
	if a.Socket == "" {
		return nil, fmt.Errorf("no socket to serve: run with start, or -socket: %w", errdefs.ErrInvalidArgument)
	}
	return launch.Listen(a.Socket)
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

// specCgroupsPath reads linux.cgroupsPath from the bundle's config.json.
func specCgroupsPath(bundle string) string {
	var spec struct {
		Linux *struct {
			CgroupsPath string `json:"cgroupsPath"`
		} `json:"linux"`
	}
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil || json.Unmarshal(data, &spec) != nil || spec.Linux == nil {
		return ""
	}
	return spec.Linux.CgroupsPath
}
