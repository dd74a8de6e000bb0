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
	"time"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"

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
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("runtime %q: shim binary %s not found in PATH=%s nor next to hulld: %w", rtName, name, os.Getenv("PATH"), errdefs.ErrNotFound)
}

// bootstrap is what a shim's start command printed: where it listens and
// which task API it speaks.
type bootstrap struct {
	Version  int    `json:"version"`
	Address  string `json:"address"`
	Protocol string `json:"protocol"`
}

// parseBootstrap reads start's output: containerd 1.7+ shims may print JSON
// bootstrap parameters, older ones (Debian's 1.6 runc shim) a bare address.
func parseBootstrap(out []byte) (bootstrap, error) {
	s := strings.TrimSpace(string(out))
	if s == "" {
		return bootstrap{}, fmt.Errorf("shim printed no address: %w", errdefs.ErrUnavailable)
	}
	var b bootstrap
	if strings.HasPrefix(s, "{") {
		if err := json.Unmarshal([]byte(s), &b); err != nil {
			return b, fmt.Errorf("shim bootstrap output %q: %v: %w", s, err, errdefs.ErrUnavailable)
		}
		if b.Protocol != "" && b.Protocol != "ttrpc" {
			return b, fmt.Errorf("shim speaks protocol %q, only ttrpc is supported: %w", b.Protocol, errdefs.ErrNotImplemented)
		}
		if b.Version == 0 {
			b.Version = 2
		}
		if b.Version != 2 && b.Version != 3 {
			return b, fmt.Errorf("shim speaks task API version %d, hulld speaks 2 and 3: %w", b.Version, errdefs.ErrNotImplemented)
		}
	} else {
		b = bootstrap{Version: 2, Address: s, Protocol: "ttrpc"}
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
	if p == "" || !filepath.IsAbs(p) {
		return "", fmt.Errorf("shim address %q is not a filesystem unix socket (abstract sockets are refused): %w", address, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// shimCommand is the shim binary run with the bootstrap flags every
// subcommand takes.
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
	cmd.WaitDelay = time.Second
	return cmd
}

// shimEnv is the environment shims run with, as containerd gives it.
func (m *Manager) shimEnv(b *bundle) []string {
	return append(os.Environ(),
		"TTRPC_ADDRESS="+m.cfg.TTRPCAddress,
		"GRPC_ADDRESS="+m.cfg.Address,
		"NAMESPACE="+b.Namespace,
		"MAX_SHIM_VERSION=3",
	)
}

// hullShim is the file name of hull's own shim, which hulld launches
// itself (see startShim).
const hullShim = "containerd-shim-hull-v2"

// startShim runs the shim's start command in the bundle and returns its
// bootstrap answer. Runtime options reach the shim on stdin, as with
// containerd, so that it can act on them before it serves (e.g. its cgroup).
//
// hull's own shim is launched by hulld directly, doing what its start
// command would: one process fewer to start per container (a Go binary's
// start-up, about a tenth of what hull spends on a container, CPU and
// latency alike). hulld is then the serving process's parent and reaps it.
func (m *Manager) startShim(ctx context.Context, binary string, b *bundle, options []byte) (bootstrap, error) {
	if filepath.Base(binary) == hullShim {
		addr, proc, err := launch.Launch(launch.Params{
			Namespace: b.Namespace, Address: m.cfg.Address, PublishBinary: m.cfg.PublishBinary, ID: b.ID, Debug: m.cfg.Debug,
			Bundle: b.Path, Options: options, Binary: binary, Env: m.shimEnv(b),
		})
		if proc != nil {
			m.reapShim(proc)
		}
		if err != nil {
			return bootstrap{}, fmt.Errorf("start shim %s for task %q: %v: %w", binary, b.ID, err, errdefs.ErrUnavailable)
		}
		return bootstrap{Version: 3, Address: addr, Protocol: "ttrpc"}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StartTimeout)
	defer cancel()
	cmd := m.shimCommand(ctx, binary, b, "start")
	cmd.Stdin = bytes.NewReader(options)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return bootstrap{}, fmt.Errorf("start shim %s for task %q: %v: %s: %w", binary, b.ID, err, strings.TrimSpace(stderr.String()), errdefs.ErrUnavailable)
	}
	return parseBootstrap(out)
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
