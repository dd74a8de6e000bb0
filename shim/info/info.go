// Package info is the shim's -info: what containerd 2.x runs to describe a
// runtime (Introspection.PluginInfo with a RuntimeRequest, `ctr plugins
// inspect-runtime`, the Go client's RuntimeInfo).
//
// The contract, as containerd's runc shim keeps it:
//
//	containerd-shim-hull-v2 -info < options > info
//
// stdin holds the runtime options, an encoded google.protobuf.Any of
// containerd.runc.v1.Options, or nothing. stdout gets an encoded
// containerd.types.RuntimeInfo: name "io.containerd.hull.v2", hull's
// version and revision, the options as given, and as features what `runc
// features` prints for the runc binary the options name (BinaryName, else
// runc on PATH), as an Any of type URL FeaturesTypeURL whose value is the
// JSON of the runtime-spec features document. A runc without `features`
// gives no features rather than an error. The exit status is non-zero,
// with the reason on stderr, when the options cannot be read or the runc
// binary is not found.
package info

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"time"

	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/hullrt/hull/internal/version"
)

// RuntimeName is the runtime hull's shim implements.
const RuntimeName = "io.containerd.hull.v2"

// FeaturesTypeURL is the type URL of the features Any: the one containerd
// registers for the runtime-spec's features.Features of spec major version
// 1 (encoded as JSON), so that its clients decode it.
const FeaturesTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/features/Features"

// maxOptions bounds what is read on stdin.
const maxOptions = 1 << 20

// featuresTimeout bounds `runc features`, which prints a constant document.
const featuresTimeout = 10 * time.Second

// Run reads the options on r and writes the encoded RuntimeInfo to w.
func Run(ctx context.Context, r io.Reader, w io.Writer) error {
	data, err := io.ReadAll(io.LimitReader(r, maxOptions))
	if err != nil {
		return fmt.Errorf("read runtime options: %w", err)
	}
	ri, err := Describe(ctx, data, runcFeatures)
	if err != nil {
		return err
	}
	out, err := proto.Marshal(ri)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

// FeaturesFunc runs the runc binary's `features` and returns its output.
type FeaturesFunc func(ctx context.Context, binary string) ([]byte, error)

// Describe builds the RuntimeInfo for the encoded options Any opts (empty
// for none), asking features for the runc binary's features.
func Describe(ctx context.Context, opts []byte, feat FeaturesFunc) (*apitypes.RuntimeInfo, error) {
	ri := &apitypes.RuntimeInfo{
		Name:    RuntimeName,
		Version: &apitypes.RuntimeVersion{Version: version.Version, Revision: version.Revision},
	}
	binary := "runc"
	if len(opts) > 0 {
		o, a, err := ParseOptions(opts)
		if err != nil {
			return nil, err
		}
		ri.Options = a
		if o.BinaryName != "" {
			binary = o.BinaryName
		}
	}
	path, err := exec.LookPath(binary)
	if err != nil {
		return nil, fmt.Errorf("runc binary %q: %v: %w", binary, err, errdefs.ErrNotFound)
	}
	out, err := feat(ctx, path)
	if err != nil {
		// A runc without `features` (youki, crun before 1.8): the
		// runtime is described without them, as containerd's shim does.
		return ri, nil
	}
	f, err := ParseFeatures(out)
	if err != nil {
		return nil, fmt.Errorf("%s features: %w", path, err)
	}
	ri.Features = f
	return ri, nil
}

// ParseOptions decodes an encoded Any of runc options, returning the
// options and the Any (its type URL as given).
func ParseOptions(data []byte) (*options.Options, *anypb.Any, error) {
	var a anypb.Any
	if err := proto.Unmarshal(data, &a); err != nil {
		return nil, nil, fmt.Errorf("runtime options (%d bytes) are not an encoded Any: %v: %w", len(data), err, errdefs.ErrInvalidArgument)
	}
	var o options.Options
	if !a.MessageIs(&o) {
		return nil, nil, fmt.Errorf("runtime options of type %q; hull's shim takes %s: %w", a.TypeUrl, proto.MessageName(&o), errdefs.ErrInvalidArgument)
	}
	if err := proto.Unmarshal(a.Value, &o); err != nil {
		return nil, nil, fmt.Errorf("runtime options of type %q: %v: %w", a.TypeUrl, err, errdefs.ErrInvalidArgument)
	}
	return &o, &a, nil
}

// ParseFeatures checks that out is a runtime-spec features document and
// wraps it, re-encoded, as the features Any.
func ParseFeatures(out []byte) (*anypb.Any, error) {
	var f features.Features
	if err := json.Unmarshal(out, &f); err != nil {
		return nil, fmt.Errorf("not a runtime-spec features document: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if f.OCIVersionMin == "" || f.OCIVersionMax == "" {
		return nil, fmt.Errorf("features document without ociVersionMin and ociVersionMax: %w", errdefs.ErrInvalidArgument)
	}
	value, err := json.Marshal(&f)
	if err != nil {
		return nil, err
	}
	return &anypb.Any{TypeUrl: FeaturesTypeURL, Value: value}, nil
}

// runcFeatures runs `<binary> features`.
func runcFeatures(ctx context.Context, binary string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, featuresTimeout)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, binary, "features")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s features: %v: %s", binary, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}
