package introspection

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"

	"github.com/hullrt/hull/core/runtime/shims"
)

// InfoProvider is what a plugin instance implements to answer PluginInfo
// requests that carry options: it decodes nothing itself, it gets the
// options already unpacked from their Any, and returns a proto message
// (or any value typeurl can marshal) for the response's Extra. The runtime
// manager answers an *apitypes.RuntimeRequest with an *apitypes.RuntimeInfo,
// as containerd's does.
type InfoProvider interface {
	PluginInfo(ctx context.Context, request any) (any, error)
}

// binaryResolver is what the runtime plugin may offer to map a runtime name
// to its shim binary with its own configuration (runtimes.<name>.binary).
type binaryResolver interface {
	ResolveBinary(runtime string) (string, error)
}

// infoTimeout bounds one `<shim> -info`: the shim asks its runtime for
// its features (runc features) and prints them; it serves nothing.
const infoTimeout = 10 * time.Second

// shimInfo answers a RuntimeRequest for the runtime plugin by running the
// shim's `-info` command, as containerd 2.x does: the request's options
// (the Any itself, type URL included) on stdin, a binary RuntimeInfo on
// stdout.
type shimInfo struct {
	// resolver is the runtime plugin's own name resolution, nil when
	// the plugin offers none.
	resolver binaryResolver
}

// PluginInfo runs the shim of req.RuntimePath with -info.
func (s shimInfo) PluginInfo(ctx context.Context, request any) (any, error) {
	req, ok := request.(*apitypes.RuntimeRequest)
	if !ok {
		return nil, fmt.Errorf("the runtime plugin answers a %T, not a %T: %w", (*apitypes.RuntimeRequest)(nil), request, errdefs.ErrNotImplemented)
	}
	binary, err := s.resolve(req.RuntimePath)
	if err != nil {
		return nil, err
	}
	var stdin []byte
	if req.Options != nil {
		if stdin, err = proto.Marshal(req.Options); err != nil {
			return nil, fmt.Errorf("runtime options of type %q: %v: %w", req.Options.GetTypeUrl(), err, errdefs.ErrInvalidArgument)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, infoTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "-info")
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	// A shim that forks something holding stdout open must not hold the
	// call past its own exit.
	cmd.WaitDelay = time.Second
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s -info: %v (stderr: %q): %w", binary, err, strings.TrimSpace(stderr.String()), errdefs.ErrFailedPrecondition)
	}
	info, err := parseRuntimeInfo(out)
	if err != nil {
		return nil, fmt.Errorf("%s -info: %w", binary, err)
	}
	return info, nil
}

// resolve finds the shim binary of runtime, a runtime name
// ("io.containerd.runc.v2") or an absolute path, as containerd accepts
// either in a RuntimeRequest. A name goes through the runtime plugin's
// resolution when it offers one; otherwise it is looked up as containerd
// looks it up: containerd-shim-<name>-<version> on PATH, then next to
// hulld's own executable.
func (s shimInfo) resolve(runtime string) (string, error) {
	path, name, err := runtimeTarget(runtime)
	if err != nil {
		return "", err
	}
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("runtime binary %s: %v: %w", path, err, errdefs.ErrNotFound)
		}
		return path, nil
	}
	if s.resolver != nil {
		return s.resolver.ResolveBinary(runtime)
	}
	p, err := shims.LookupBinary(name)
	if err != nil {
		return "", fmt.Errorf("runtime %q: %w", runtime, err)
	}
	return p, nil
}

// runtimeTarget reads a RuntimeRequest's runtime_path: an absolute path
// (returned as path) or a runtime name (returned as its shim binary's file
// name). A relative path or anything else is InvalidArgument, as
// containerd refuses it.
func runtimeTarget(runtime string) (path, binaryName string, err error) {
	if runtime == "" {
		return "", "", fmt.Errorf("no runtime name in the runtime request: %w", errdefs.ErrInvalidArgument)
	}
	if filepath.IsAbs(runtime) {
		if strings.ContainsRune(runtime, 0) {
			return "", "", fmt.Errorf("runtime path %q: %w", runtime, errdefs.ErrInvalidArgument)
		}
		return filepath.Clean(runtime), "", nil
	}
	if strings.Contains(runtime, "/") {
		return "", "", fmt.Errorf("runtime %q is neither a name like io.containerd.runc.v2 nor an absolute path: %w", runtime, errdefs.ErrInvalidArgument)
	}
	name, err := shims.BinaryName(runtime)
	if err != nil {
		return "", "", err
	}
	if strings.ContainsRune(name, 0) {
		return "", "", fmt.Errorf("runtime name %q: %w", runtime, errdefs.ErrInvalidArgument)
	}
	return "", name, nil
}

// parseRuntimeInfo reads what a shim's -info printed: a binary
// RuntimeInfo. A shim that prints nothing, or something that is not one,
// does not implement -info (containerd 1.x shims reject the flag, or
// print usage).
func parseRuntimeInfo(out []byte) (*apitypes.RuntimeInfo, error) {
	if len(out) == 0 {
		return nil, fmt.Errorf("printed nothing: %w", errdefs.ErrFailedPrecondition)
	}
	var info apitypes.RuntimeInfo
	if err := proto.Unmarshal(out, &info); err != nil {
		return nil, fmt.Errorf("printed %q, which is no RuntimeInfo: %v: %w", prefix(out, 64), err, errdefs.ErrFailedPrecondition)
	}
	if info.Name == "" {
		return nil, fmt.Errorf("printed %q, a RuntimeInfo without a name: %w", prefix(out, 64), errdefs.ErrFailedPrecondition)
	}
	return &info, nil
}

// prefix returns at most n bytes of b, for error messages.
func prefix(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
