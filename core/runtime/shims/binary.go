package shims

import (
	"github.com/hullrt/hull/core/runtime"

	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/hullrt/hull/internal/version"
	"github.com/hullrt/hull/shim/launch"
)

// BinaryName returns the shim binary of a runtime name, as containerd
// derives it: "io.containerd.runc.v2" is "containerd-shim-runc-v2".
func BinaryName(rtName string) (string, error) {
	parts := strings.Split(rtName, ".")
	if len(parts) < 2 || parts[len(parts)-2] == "" || parts[len(parts)-1] == "" || strings.ContainsAny(rtName, "/ \t") {
		return "", fmt.Errorf("runtime name %q is not of the form <domain>.<name>.<version>, e.g. io.containerd.runc.v2: %w", rtName, errdefs.ErrInvalidArgument)
	}
	return fmt.Sprintf("containerd-shim-%s-%s", parts[len(parts)-2], parts[len(parts)-1]), nil
}

// ResolveBinary finds the shim binary of runtime name as a task create
// without a runtime path would (Introspection's PluginInfo runs its -info).
func (m *Manager) ResolveBinary(name string) (string, error) { return m.resolveBinary(name, "") }

// resolveBinary finds the shim binary of runtime: a configured path, else
// the derived name on PATH, else next to hulld's own executable (where
// `make install` puts hull's shim). The error names what was looked for.
func (m *Manager) resolveBinary(rtName, runtimePath string) (string, error) {
	if runtimePath != "" {
		if !filepath.IsAbs(runtimePath) {
			return "", fmt.Errorf("runtime path %q must be absolute: %w", runtimePath, errdefs.ErrInvalidArgument)
		}
		if _, err := os.Stat(runtimePath); err != nil {
			return "", fmt.Errorf("runtime binary %s: %w", runtimePath, errdefs.ErrNotFound)
		}
		return runtimePath, nil
	}
	if rtName == "" {
		rtName = m.cfg.DefaultRuntime
	}
	if rc, ok := m.cfg.Runtimes[rtName]; ok && rc.Binary != "" {
		if _, err := os.Stat(rc.Binary); err != nil {
			return "", fmt.Errorf("shim binary %s configured for runtime %q: %w", rc.Binary, rtName, errdefs.ErrNotFound)
		}
		return rc.Binary, nil
	}
	name, err := BinaryName(rtName)
	if err != nil {
		return "", err
	}
	p, err := LookupBinary(name)
	if err != nil {
		return "", fmt.Errorf("runtime %q: %w", rtName, err)
	}
	return p, nil
}

// LookupBinary finds the shim binary file name as containerd does: on
// PATH, then next to the running executable (where `make install` puts
// hull's shim beside hulld).
func LookupBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("shim binary %s not found in PATH=%s nor next to hulld: %w", name, os.Getenv("PATH"), errdefs.ErrNotFound)
}

// bootstrap is what a shim's start command answered: where it listens and
// which task API it speaks.
type bootstrap struct {
	Version  int    `json:"version"`
	Address  string `json:"address"`
	Protocol string `json:"protocol"`
}

// maxShimVersion is the newest task API hulld speaks (containerd.task.v3).
const maxShimVersion = 3

// parseBootstrap reads start's output in the order containerd 2.3+ does: a
// binary BootstrapResult (shims built on containerd 2.3+, hull's shim when
// given bootstrap parameters), then the JSON form (containerd 1.7 to 2.2
// shims), then a bare address (Debian's 1.6 runc shim). A version of 0
// means the shim did not say, which is 2; a version above
// maxShimVersion, a protocol other than ttrpc or an address that is not a
// filesystem socket is an error, which callers wrap with the shim's name
// and what it printed.
func parseBootstrap(out []byte) (bootstrap, error) {
	var b bootstrap
	var res bootapi.BootstrapResult
	// Plain text rarely decodes as protobuf (a '/' or '{' is an invalid
	// wire type), but garbage may decode with no address: then the text
	// forms below get their say.
	if proto.Unmarshal(out, &res) == nil && res.Address != "" {
		b = bootstrap{Version: int(res.Version), Address: res.Address, Protocol: res.Protocol}
	} else {
		s := strings.TrimSpace(string(out))
		switch {
		case s == "":
			return b, fmt.Errorf("shim printed no address: %w", errdefs.ErrUnavailable)
		case strings.HasPrefix(s, "{"):
			if err := json.Unmarshal([]byte(s), &b); err != nil {
				return b, fmt.Errorf("bootstrap JSON: %v: %w", err, errdefs.ErrUnavailable)
			}
		default:
			b = bootstrap{Version: 2, Address: s}
		}
	}
	b.Protocol = strings.ToLower(b.Protocol)
	if b.Protocol == "" {
		b.Protocol = "ttrpc"
	}
	if b.Protocol != "ttrpc" {
		return b, fmt.Errorf("shim speaks protocol %q, only ttrpc is supported: %w", b.Protocol, errdefs.ErrNotImplemented)
	}
	if b.Version == 0 {
		b.Version = 2
	}
	if b.Version != 2 && b.Version != maxShimVersion {
		return b, fmt.Errorf("shim speaks task API version %d, hulld speaks 2 and %d: %w", b.Version, maxShimVersion, errdefs.ErrNotImplemented)
	}
	if _, err := socketPath(b.Address); err != nil {
		return b, err
	}
	return b, nil
}

// socketPath returns the filesystem path of a shim address. Abstract
// sockets ("unix://@...", or a bare "@...") are refused: any process in the
// host network namespace can connect to them (CVE-2020-15257).
func socketPath(address string) (string, error) {
	p := strings.TrimPrefix(address, "unix://")
	if p == "" || !filepath.IsAbs(p) || strings.ContainsAny(p, "\x00\n") || len(p) > 4096 {
		return "", fmt.Errorf("shim address %q is not a filesystem unix socket (abstract sockets are refused): %w", address, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// shimCommand is the shim binary run with the command line, environment
// and process group containerd 2.4 gives every subcommand. The flags and
// variables are what shims before containerd 2.3 read; newer ones read
// the bootstrap parameters on start's stdin but still take -id and
// -namespace to check them, and delete has no other input.
func (m *Manager) shimCommand(ctx context.Context, binary string, b *bundle, sub string) *exec.Cmd {
	args := []string{"-namespace", b.Namespace, "-address", m.cfg.Address, "-publish-binary", m.cfg.PublishBinary, "-id", b.ID}
	if sub == "delete" {
		args = append(args, "-bundle", b.Path)
	}
	if m.cfg.Debug {
		args = append(args, "-debug")
	}
	cmd := exec.CommandContext(ctx, binary, append(args, sub)...)
	cmd.Dir = b.Path
	cmd.Env = m.shimEnv(b)
	// A group of its own, as containerd does: a signal to hulld's
	// terminal or process group does not reach a starting shim.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second
	return cmd
}

// shimEnv is the environment shims run with, as containerd gives it:
// MAX_SHIM_VERSION has said 2 in every containerd release (a shim says
// which API it speaks in its answer), and GOMAXPROCS=2 keeps a shim from
// starting a thread per core of a large node.
func (m *Manager) shimEnv(b *bundle) []string {
	return append(withoutServiceManager(os.Environ()),
		// As containerd gives every shim; hull's own runs on one
		// processor and hands the 2 on to runc (launch.DefaultProcsEnv).
		"GOMAXPROCS=2", launch.DefaultProcsEnv+"=2",
		"MAX_SHIM_VERSION=2",
		"TTRPC_ADDRESS="+m.cfg.TTRPCAddress,
		"GRPC_ADDRESS="+m.cfg.Address,
		"NAMESPACE="+b.Namespace,
	)
}

// serviceManagerEnv are the variables systemd gives hulld to talk to it
// (sd_notify(3), sd_listen_fds(3)). They are hulld's alone: runc, which a
// shim runs, takes $NOTIFY_SOCKET as a request to hand that socket into
// the container.
var serviceManagerEnv = []string{"NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID=", "LISTEN_FDS=", "LISTEN_PID=", "LISTEN_FDNAMES="}

// withoutServiceManager returns env without serviceManagerEnv.
func withoutServiceManager(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		keep := true
		for _, p := range serviceManagerEnv {
			if strings.HasPrefix(kv, p) {
				keep = false
				break
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

// hullShim is the file name of hull's own shim, which hulld launches
// itself (see startShim).
const hullShim = "containerd-shim-hull-v2"

// startInput is what a shim's start command reads on stdin.
type startInput int

const (
	// paramsInput is a containerd.runtime.bootstrap.v1.BootstrapParams,
	// as containerd 2.3 and later write it: shims built on containerd
	// 2.3+ refuse to start without it.
	paramsInput startInput = iota + 1
	// optionsInput is the runtime options Any alone, as containerd 1.x
	// to 2.2 write it: Debian's 1.6 runc shim fails on anything else
	// (it takes the parameters' instance id for a type URL).
	optionsInput
)

func (in startInput) String() string {
	if in == paramsInput {
		return "bootstrap parameters on stdin"
	}
	return "runtime options on stdin, as before containerd 2.3"
}

// binaryKey names one file of a shim binary: replacing the binary (an
// upgrade) makes another key, whose input is learnt again.
type binaryKey struct {
	path       string
	dev, ino   uint64
	size       int64
	mtime      int64
	mtimeNsecs int64
}

func keyOf(path string) (binaryKey, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return binaryKey{}, false
	}
	return binaryKey{path: path, dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim.Sec, mtimeNsecs: st.Mtim.Nsec}, true
}

// startShim runs the shim's start command in the bundle and returns its
// bootstrap answer.
//
// Which stdin a shim reads cannot be told before it runs: containerd
// 2.4 sends bootstrap parameters to every shim (but v1 ones), which
// breaks shims of containerd 1.6. hulld sends the parameters first, as
// containerd does, and runs a start that failed again with the options
// alone; a start fails before it leaves anything running (it cleans up
// after itself, and what it did leave is what Create's clean-up removes).
// The input that worked is remembered per binary file, so each binary
// pays for the wrong guess once per hulld.
//
// hull's own shim is launched by hulld directly, doing what its start
// command would: one process fewer to start per container (a Go binary's
// start-up, about a tenth of what hull spends on a container, CPU and
// latency alike). hulld is then the serving process's parent and reaps it.
func (m *Manager) startShim(ctx context.Context, binary string, b *bundle, options *anypb.Any) (bootstrap, error) {
	if filepath.Base(binary) == hullShim {
		var optBytes []byte
		if options != nil {
			var err error
			if optBytes, err = proto.Marshal(options); err != nil {
				return bootstrap{}, err
			}
		}
		addr, proc, err := launch.Launch(launch.Params{
			Namespace: b.Namespace, Address: m.cfg.Address, PublishBinary: m.cfg.PublishBinary, ID: b.ID, Debug: m.cfg.Debug,
			SocketDir: m.socketDir(), Bundle: b.Path, Options: optBytes, Binary: binary, Env: m.shimEnv(b),
		})
		if proc != nil {
			m.reapShim(proc)
		}
		if err != nil {
			return bootstrap{}, fmt.Errorf("start shim %s for task %q: %v: %w", binary, b.ID, err, errdefs.ErrUnavailable)
		}
		return bootstrap{Version: maxShimVersion, Address: addr, Protocol: "ttrpc"}, nil
	}
	key, keyed := keyOf(binary)
	m.mu.Lock()
	known := m.startInputs[key]
	m.mu.Unlock()
	tries := []startInput{paramsInput, optionsInput}
	if known != 0 {
		tries = []startInput{known}
	}
	var errs []string
	for _, in := range tries {
		stdin, err := m.startStdin(in, b, options)
		if err != nil {
			return bootstrap{}, err
		}
		out, err := m.runStart(ctx, binary, b, stdin)
		if err != nil {
			errs = append(errs, fmt.Sprintf("with %s: %v", in, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if keyed {
			m.mu.Lock()
			m.startInputs[key] = in
			m.mu.Unlock()
		}
		boot, err := parseBootstrap(out)
		if err != nil {
			return boot, fmt.Errorf("shim %s for task %q answered start with %s: %w", binary, b.ID, quoteOutput(out), err)
		}
		return boot, nil
	}
	return bootstrap{}, fmt.Errorf("start shim %s for task %q: %s: %w", binary, b.ID, strings.Join(errs, "; "), errdefs.ErrUnavailable)
}

// startStdin encodes what start reads on stdin. The parameters carry the
// runtime options as their one extension, the Any as it is.
func (m *Manager) startStdin(in startInput, b *bundle, options *anypb.Any) ([]byte, error) {
	if in == optionsInput {
		if options == nil {
			return nil, nil
		}
		return proto.Marshal(options)
	}
	level := bootapi.LogLevel_LOG_LEVEL_INFO
	if m.cfg.Debug {
		level = bootapi.LogLevel_LOG_LEVEL_DEBUG
	}
	p := &bootapi.BootstrapParams{
		InstanceID: b.ID, Namespace: b.Namespace, LogLevel: level,
		ContainerdVersion: m.cfg.DaemonVersion, ContainerdTtrpcAddress: m.cfg.TTRPCAddress,
		ContainerdGrpcAddress: m.cfg.Address, ContainerdBinary: m.cfg.PublishBinary,
	}
	if p.ContainerdVersion == "" {
		p.ContainerdVersion = version.Version
	}
	dir := m.socketDir()
	if err := launch.PrivateDir(dir); err != nil {
		return nil, fmt.Errorf("shim socket directory for task %q: %w", b.ID, err)
	}
	p.SocketDir = &dir
	if options != nil {
		p.Extensions = append(p.Extensions, &bootapi.Extension{Value: options})
	}
	return proto.Marshal(p)
}

// shimSocketNameLen is the length of the socket names of containerd 2.3+'s
// shims: a 64-character hash, which the directory must leave room for in
// sun_path.
const shimSocketNameLen = 64

// socketDir is the directory hulld gives shims for their sockets (see
// Config.SocketDir): in the bootstrap parameters of 2.3+ shims, and to
// hull's shim when hulld launches it. Never containerd's
// /run/containerd/s, which a 2.3+ shim takes when told nothing.
func (m *Manager) socketDir() string { return m.cfg.SocketDir }

// runStart runs the start command with stdin and returns its stdout. The
// error carries what the shim printed on both streams.
func (m *Manager) runStart(ctx context.Context, binary string, b *bundle, stdin []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StartTimeout)
	defer cancel()
	cmd := m.shimCommand(ctx, binary, b, "start")
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		printed := strings.TrimSpace(stderr.String() + " " + string(out))
		return nil, fmt.Errorf("%v: %s", err, quoteOutput([]byte(printed)))
	}
	return out, nil
}

// quoteOutput is a shim's output for an error message: quoted, so that
// binary garbage reads as escapes, and cut at 512 bytes.
func quoteOutput(out []byte) string {
	const max = 512
	if len(out) > max {
		return fmt.Sprintf("%q (and %d more bytes)", out[:max], len(out)-max)
	}
	return fmt.Sprintf("%q", out)
}

// deleteShim runs the shim's delete command, which cleans up after a shim
// that is gone (kills the container, unmounts its rootfs) and says how the
// task ended. A failing command still yields an exit: 255, now.
func (m *Manager) deleteShim(ctx context.Context, binary string, b *bundle) (runtime.Exit, error) {
	exit := runtime.Exit{Status: 255, ExitedAt: time.Now().UTC()}
	if binary == "" {
		return exit, fmt.Errorf("task %q has no known shim binary", b.ID)
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StartTimeout)
	defer cancel()
	cmd := m.shimCommand(ctx, binary, b, "delete")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return exit, fmt.Errorf("%s delete for task %q: %v: %s", binary, b.ID, err, strings.TrimSpace(stderr.String()))
	}
	var resp taskv2.DeleteResponse
	if err := proto.Unmarshal(out, &resp); err != nil {
		return exit, fmt.Errorf("%s delete for task %q printed an unreadable answer: %w", binary, b.ID, err)
	}
	exit.Pid, exit.Status = resp.Pid, resp.ExitStatus
	if resp.ExitedAt != nil {
		exit.ExitedAt = resp.ExitedAt.AsTime()
	}
	return exit, nil
}
