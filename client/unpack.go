package client

import (
	"context"
	"fmt"

	diffapi "github.com/containerd/containerd/api/services/diff/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/hullrt/hull/core/diff"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/unpack"
	"github.com/hullrt/hull/internal/errgrpc"
	"github.com/hullrt/hull/internal/protoconv"
)

// DefaultSnapshotter is the snapshotter used when none is named.
const DefaultSnapshotter = "overlayfs"

// remoteDiffer is hulld's diff service.
type remoteDiffer struct{ client diffapi.DiffClient }

// DiffService returns hulld's diff service: it applies layers onto mounts
// and makes layers from mount differences, in hulld.
func (c *Client) DiffService() interface {
	diff.Applier
	diff.Comparer
} {
	return c.services.Diff
}

func (r remoteDiffer) Apply(ctx context.Context, desc ocispec.Descriptor, mounts []mount.Mount, opts ...diff.ApplyOpt) (ocispec.Descriptor, error) {
	var cfg diff.ApplyConfig
	for _, o := range opts {
		o(&cfg)
	}
	req := &diffapi.ApplyRequest{Diff: protoconv.DescToProto(desc), Mounts: protoconv.MountsToProto(mounts)}
	if cfg.Detached {
		// The API has no field for it; hulld's diff service reads this.
		req.Payloads = map[string]*anypb.Any{diff.PayloadDetached: {TypeUrl: diff.PayloadDetached}}
	}
	resp, err := r.client.Apply(ctx, req)
	if err != nil {
		return ocispec.Descriptor{}, errgrpc.ToNative(err)
	}
	applied := protoconv.DescFromProto(resp.Applied)
	if cfg.ExpectedDiffID != "" && applied.Digest.String() != cfg.ExpectedDiffID {
		return applied, fmt.Errorf("layer %s: uncompressed digest %s, expected %s: %w", desc.Digest, applied.Digest, cfg.ExpectedDiffID, errdefs.ErrFailedPrecondition)
	}
	return applied, nil
}

func (r remoteDiffer) Compare(ctx context.Context, lower, upper []mount.Mount, opts ...diff.CompareOpt) (ocispec.Descriptor, error) {
	var cfg diff.CompareConfig
	for _, o := range opts {
		o(&cfg)
	}
	resp, err := r.client.Diff(ctx, &diffapi.DiffRequest{Left: protoconv.MountsToProto(lower), Right: protoconv.MountsToProto(upper), MediaType: cfg.MediaType, Ref: cfg.Ref, Labels: cfg.Labels})
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return protoconv.DescFromProto(resp.Diff), nil
}

// UnpackOpt configures Unpack.
type UnpackOpt func(*unpackConfig)

type unpackConfig struct {
	snapshotter string
	platform    platforms.MatchComparer
	progress    func(layer ocispec.Descriptor, chainID digest.Digest, status string)
}

// WithSnapshotter unpacks into snapshotter name instead of the default.
func WithSnapshotter(name string) UnpackOpt { return func(c *unpackConfig) { c.snapshotter = name } }

// WithUnpackPlatform unpacks platform p of an index instead of the host's.
func WithUnpackPlatform(p ocispec.Platform) UnpackOpt {
	return func(c *unpackConfig) { c.platform = platforms.Only(p) }
}

// WithUnpackProgress reports each layer: "exists", "applying", "applied".
func WithUnpackProgress(fn func(layer ocispec.Descriptor, chainID digest.Digest, status string)) UnpackOpt {
	return func(c *unpackConfig) { c.progress = fn }
}

// Unpack applies the layers of image name (the host platform's manifest of
// an index) into snapshots of the snapshotter, under a lease, and returns
// the chain ID of the top layer: the parent to Prepare a container's root
// filesystem from.
func (c *Client) Unpack(ctx context.Context, name string, opts ...UnpackOpt) (digest.Digest, error) {
	cfg := unpackConfig{snapshotter: DefaultSnapshotter, platform: platforms.Default()}
	for _, o := range opts {
		o(&cfg)
	}
	img, err := c.ImageService().Get(ctx, name)
	if err != nil {
		return "", err
	}
	ctx, done, err := c.WithLease(ctx)
	if err != nil {
		return "", err
	}
	defer done(context.WithoutCancel(ctx))
	m, err := c.PlatformManifest(ctx, img.Target, cfg.platform)
	if err != nil {
		return "", err
	}
	return unpack.Unpack(ctx, m, unpack.Options{
		Content: c.ContentStore(), Snapshotter: c.SnapshotService(cfg.snapshotter), SnapshotterName: cfg.snapshotter,
		Applier: c.DiffService(), Progress: cfg.progress, ParallelLayers: c.parallelUnpack(ctx, cfg.snapshotter),
		Leases: c.LeasesService(),
	})
}

// parallelUnpack returns how many layers an unpack into snapshotter may
// apply at once, as its plugin exports it: 1 (one after another) for
// snapshotters that do not export it, and when hulld cannot say.
func (c *Client) parallelUnpack(ctx context.Context, snapshotter string) int {
	ps, err := c.Plugins(ctx, "type==io.containerd.snapshotter.v1,id=="+snapshotter)
	if err != nil {
		return 1
	}
	for _, p := range ps {
		if p.InitErr == "" {
			return unpack.ParallelFromExports(p.Exports)
		}
	}
	return 1
}

// PlatformManifest returns target if it is a manifest, else the best match
// of the index for platform.
func (c *Client) PlatformManifest(ctx context.Context, target ocispec.Descriptor, platform platforms.MatchComparer) (ocispec.Descriptor, error) {
	if images.IsManifest(target.MediaType) {
		return target, nil
	}
	if !images.IsIndex(target.MediaType) {
		return ocispec.Descriptor{}, fmt.Errorf("image target %s has media type %q, neither index nor manifest: %w", target.Digest, target.MediaType, errdefs.ErrNotImplemented)
	}
	return pickManifest(ctx, c, target, platform)
}

// DefaultSnapshotter returns hulld's default snapshotter (what calls that
// name none use), as its snapshots service reports it.
func (c *Client) DefaultSnapshotter(ctx context.Context) (string, error) {
	ps, err := c.Plugins(ctx, "type==io.containerd.grpc.v1,id==snapshots")
	if err != nil {
		return "", err
	}
	for _, p := range ps {
		if d := p.Exports["default"]; d != "" {
			return d, nil
		}
	}
	return DefaultSnapshotter, nil
}

// Snapshotters lists the snapshotters hulld runs.
func (c *Client) Snapshotters(ctx context.Context) ([]string, error) {
	ps, err := c.Plugins(ctx, "type==io.containerd.snapshotter.v1")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range ps {
		if p.InitErr == "" {
			out = append(out, p.ID)
		}
	}
	return out, nil
}

// Complete reports (as an error naming the first missing blob) whether every
// blob of target's platform manifest is in the content store.
func (c *Client) Complete(ctx context.Context, target ocispec.Descriptor, platform platforms.MatchComparer) error {
	cs := c.ContentStore()
	if _, err := cs.Info(ctx, target.Digest); err != nil {
		return err
	}
	m, err := c.PlatformManifest(ctx, target, platform)
	if err != nil {
		return err
	}
	data, err := images.ReadManifest(ctx, cs, m)
	if err != nil {
		return err
	}
	children, _, err := images.ParseChildren(m, data)
	if err != nil {
		return err
	}
	for _, ch := range children {
		if _, err := cs.Info(ctx, ch.Digest); err != nil {
			return err
		}
	}
	return nil
}
