package diff

import (
	"context"
	"fmt"
	"github.com/hullrt/hull/internal/servicetest"
	"maps"
	"reflect"
	"testing"

	api "github.com/containerd/containerd/api/services/diff/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	corediff "github.com/hullrt/hull/core/diff"
	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/plugin"
)

// fakeDiffer records what Apply and Compare were given and answers with
// result, or fails with err naming the descriptor or reference.
type fakeDiffer struct {
	err    error
	result ocispec.Descriptor

	desc         ocispec.Descriptor
	mounts       []mount.Mount
	lower, upper []mount.Mount
	apply        corediff.ApplyConfig
	compare      corediff.CompareConfig
}

func (f *fakeDiffer) Apply(ctx context.Context, desc ocispec.Descriptor, mounts []mount.Mount, opts ...corediff.ApplyOpt) (ocispec.Descriptor, error) {
	f.desc, f.mounts, f.apply = desc, mounts, corediff.ApplyConfig{}
	for _, o := range opts {
		o(&f.apply)
	}
	if f.err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("apply of %s: %w", desc.Digest, f.err)
	}
	return f.result, nil
}

func (f *fakeDiffer) Compare(ctx context.Context, lower, upper []mount.Mount, opts ...corediff.CompareOpt) (ocispec.Descriptor, error) {
	f.lower, f.upper, f.compare = lower, upper, corediff.CompareConfig{}
	for _, o := range opts {
		o(&f.compare)
	}
	if f.err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("diff %q: %w", f.compare.Ref, f.err)
	}
	return f.result, nil
}

// newClient builds the diff service and adapter through their
// registrations over a differ plugin d and returns a client.
func newClient(t *testing.T, d *fakeDiffer) api.DiffClient {
	t.Helper()
	svc := servicetest.Adapter(t, Register, servicetest.Dep(plugin.DiffPlugin, "walking", d))
	return api.NewDiffClient(servicetest.Serve(t, svc))
}

var (
	layer = ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromString("layer"), Size: 1234,
		Annotations: map[string]string{"a": "b"},
	}
	protoMounts = []*types.Mount{
		{Type: "overlay", Source: "overlay", Target: "/t", Options: []string{"lowerdir=/l"}},
		{Type: "bind", Source: "/src", Options: []string{"ro"}},
	}
	coreMounts = []mount.Mount{
		{Type: "overlay", Source: "overlay", Target: "/t", Options: []string{"lowerdir=/l"}},
		{Type: "bind", Source: "/src", Options: []string{"ro"}},
	}
)

func descProto(d ocispec.Descriptor) *types.Descriptor {
	return &types.Descriptor{MediaType: d.MediaType, Digest: d.Digest.String(), Size: d.Size, Annotations: d.Annotations}
}

func TestApply(t *testing.T) {
	applied := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromString("diffid"), Size: 4321}
	d := &fakeDiffer{result: applied}
	c := newClient(t, d)
	resp, err := c.Apply(servicetest.ClientCtx(t, "ns1"), &api.ApplyRequest{Diff: descProto(layer), Mounts: protoMounts})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(resp.Applied, descProto(applied)) {
		t.Errorf("applied %v, want %v", resp.Applied, descProto(applied))
	}
	if !reflect.DeepEqual(d.desc, layer) || !reflect.DeepEqual(d.mounts, coreMounts) || d.apply.Detached {
		t.Errorf("differ got %+v on %+v (config %+v)", d.desc, d.mounts, d.apply)
	}
	// The detached payload asks for a detached apply.
	_, err = c.Apply(servicetest.ClientCtx(t, "ns1"), &api.ApplyRequest{Diff: descProto(layer), Mounts: protoMounts,
		Payloads: map[string]*anypb.Any{corediff.PayloadDetached: {}}})
	if err != nil || !d.apply.Detached {
		t.Errorf("detached apply: %v, config %+v", err, d.apply)
	}
}

func TestDiff(t *testing.T) {
	d := &fakeDiffer{result: layer}
	c := newClient(t, d)
	resp, err := c.Diff(servicetest.ClientCtx(t, "ns1"), &api.DiffRequest{
		Left: protoMounts[:1], Right: protoMounts[1:], MediaType: ocispec.MediaTypeImageLayer, Ref: "ref1",
		Labels: map[string]string{"l": "v"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(resp.Diff, descProto(layer)) {
		t.Errorf("diff %v, want %v", resp.Diff, descProto(layer))
	}
	if !reflect.DeepEqual(d.lower, coreMounts[:1]) || !reflect.DeepEqual(d.upper, coreMounts[1:]) {
		t.Errorf("compared %v with %v", d.lower, d.upper)
	}
	if d.compare.MediaType != ocispec.MediaTypeImageLayer || d.compare.Ref != "ref1" || !maps.Equal(d.compare.Labels, map[string]string{"l": "v"}) {
		t.Errorf("compare config %+v", d.compare)
	}
	// Nothing set: no options, the differ's defaults apply.
	if _, err := c.Diff(servicetest.ClientCtx(t, "ns1"), &api.DiffRequest{}); err != nil {
		t.Fatal(err)
	}
	if d.compare.MediaType != "" || d.compare.Ref != "" || d.compare.Labels != nil || len(d.lower) != 0 {
		t.Errorf("compare config %+v for an empty request", d.compare)
	}
}

func TestErrorCodes(t *testing.T) {
	for _, tc := range []struct {
		class error
		code  codes.Code
	}{
		{errdefs.ErrNotFound, codes.NotFound},
		{errdefs.ErrAlreadyExists, codes.AlreadyExists},
		{errdefs.ErrInvalidArgument, codes.InvalidArgument},
		{errdefs.ErrFailedPrecondition, codes.FailedPrecondition},
		{errdefs.ErrUnavailable, codes.Unavailable},
		{errdefs.ErrNotImplemented, codes.Unimplemented},
		{corediff.ErrNeedsLower, codes.Unknown},
	} {
		t.Run(tc.code.String(), func(t *testing.T) {
			c := newClient(t, &fakeDiffer{err: tc.class})
			_, err := c.Apply(servicetest.ClientCtx(t, "ns1"), &api.ApplyRequest{Diff: descProto(layer)})
			servicetest.WantCode(t, err, tc.code, layer.Digest.String())
			_, err = c.Diff(servicetest.ClientCtx(t, "ns1"), &api.DiffRequest{Ref: "ref2"})
			servicetest.WantCode(t, err, tc.code, `"ref2"`)
		})
	}
}
