package client

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/pull"
	"github.com/hullrt/hull/core/push"
	"github.com/hullrt/hull/core/remotes"
	"github.com/hullrt/hull/core/remotes/credentials"
	"github.com/hullrt/hull/core/remotes/registry"
	"github.com/hullrt/hull/core/unpack"
)

// remoteConfig holds the RemoteOpt settings of Pull and Push.
type remoteConfig struct {
	resolver      remotes.Resolver
	registry      registry.Config
	platform      platforms.MatchComparer
	platformSpec  *ocispec.Platform // what WithPlatform named, for TransferPull's request
	allPlatforms  bool
	progress      func(pull.Progress)
	maxConcurrent int
	// chunkSize, parallelChunks and chunkThreshold tune ranged downloads
	// of large blobs (see pull.Options); zero keeps the defaults.
	chunkSize, chunkThreshold int64
	parallelChunks            int
	// unpack names the snapshotter to unpack into after a pull; "" skips.
	unpack         string
	unpackProgress func(layer ocispec.Descriptor, chainID digest.Digest, status string)
}

// RemoteOpt configures a Pull or a Push.
type RemoteOpt func(*remoteConfig)

// WithResolver uses r instead of a resolver built from the other options.
func WithResolver(r remotes.Resolver) RemoteOpt { return func(c *remoteConfig) { c.resolver = r } }

// WithHostsDir reads registry host configuration (hosts.toml) from dir
// instead of /etc/hull/certs.d.
func WithHostsDir(dir string) RemoteOpt { return func(c *remoteConfig) { c.registry.HostsDir = dir } }

// WithPlainHTTP allows plain http to loopback registries.
func WithPlainHTTP() RemoteOpt { return func(c *remoteConfig) { c.registry.PlainHTTP = true } }

// WithCredentials authenticates to registries with s.
func WithCredentials(s credentials.Store) RemoteOpt {
	return func(c *remoteConfig) { c.registry.Credentials = s }
}

// WithPlatform pulls (or pushes) platform p of an index instead of the
// host's.
func WithPlatform(p ocispec.Platform) RemoteOpt {
	return func(c *remoteConfig) { c.platform, c.platformSpec = platforms.Only(p), &p }
}

// WithAllPlatforms pulls every platform of an index, and pushes an index
// whole (every manifest it lists must then be in the store).
func WithAllPlatforms() RemoteOpt { return func(c *remoteConfig) { c.allPlatforms = true } }

// WithProgress reports each blob's progress to fn, from several goroutines.
func WithProgress(fn func(pull.Progress)) RemoteOpt { return func(c *remoteConfig) { c.progress = fn } }

// WithPullUnpack unpacks the pulled image into snapshotter (the default
// one if empty), reporting each layer to progress if it is not nil.
func WithPullUnpack(snapshotter string, progress func(layer ocispec.Descriptor, chainID digest.Digest, status string)) RemoteOpt {
	return func(c *remoteConfig) {
		if snapshotter == "" {
			snapshotter = DefaultSnapshotter
		}
		c.unpack, c.unpackProgress = snapshotter, progress
	}
}

// WithChunkedDownloads fetches blobs of at least threshold bytes as ranges
// of chunkSize, parallel at a time, where the registry supports ranges;
// parallel 1 turns it off. Zero values keep the defaults (8 MiB, 4, 64 MiB).
func WithChunkedDownloads(chunkSize int64, parallel int, threshold int64) RemoteOpt {
	return func(c *remoteConfig) {
		c.chunkSize, c.parallelChunks, c.chunkThreshold = chunkSize, parallel, threshold
	}
}

// WithMaxConcurrentDownloads bounds the blobs above 1 MiB a pull fetches at
// once (default 3); smaller ones are fetched up to max(8, n) at a time beside
// them.
func WithMaxConcurrentDownloads(n int) RemoteOpt {
	return func(c *remoteConfig) { c.maxConcurrent = n }
}

// remoteConfig applies opts. A resolver built from them uses the client's
// registry transports, so that the client's pulls and pushes share
// connections.
func (c *Client) remoteConfig(opts []RemoteOpt) *remoteConfig {
	cfg := &remoteConfig{}
	for _, o := range opts {
		o(cfg)
	}
	if cfg.resolver == nil {
		cfg.registry.Transports = c.transports
		cfg.resolver = registry.NewFromConfig(cfg.registry)
	}
	return cfg
}

// Resolver returns the registry resolver the options describe: the one
// Pull and Push use, exposed for callers that resolve or list tags.
func (c *Client) Resolver(opts ...RemoteOpt) remotes.Resolver {
	return c.remoteConfig(opts).resolver
}

// Pull fetches ref (a fully qualified reference) from its registry into the
// content store under a lease and records it as an image named ref. Blobs
// already present are not fetched again, and an interrupted pull resumes
// its partial downloads when run again.
func (c *Client) Pull(ctx context.Context, ref string, opts ...RemoteOpt) (images.Image, error) {
	cfg := c.remoteConfig(opts)
	ctx, done, err := c.WithLease(ctx)
	if err != nil {
		return images.Image{}, err
	}
	defer done(context.WithoutCancel(ctx))
	po := pull.Options{
		Resolver: cfg.resolver, Content: c.ContentStore(), Images: c.ImageService(), Leases: c.LeasesService(),
		Platform: cfg.platform, AllPlatforms: cfg.allPlatforms,
		MaxConcurrentDownloads: cfg.maxConcurrent, Progress: cfg.progress,
		ChunkSize: cfg.chunkSize, ParallelChunks: cfg.parallelChunks, ParallelThreshold: cfg.chunkThreshold,
		StoreTimeout: c.storeTimeout(),
	}
	var ov *unpack.Overlap
	if cfg.unpack != "" && !cfg.allPlatforms {
		// Apply layers as they arrive, while later ones download.
		ov = unpack.NewOverlap(ctx, unpack.Options{
			Content: c.ContentStore(), Snapshotter: c.SnapshotService(cfg.unpack), SnapshotterName: cfg.unpack,
			Applier: c.DiffService(), Progress: cfg.unpackProgress, ParallelLayers: c.parallelUnpack(ctx, cfg.unpack),
			Leases: c.LeasesService(),
		})
		po.Progress = func(p pull.Progress) {
			if p.Status == pull.StatusDone || p.Status == pull.StatusExists {
				ov.Stored(p.Desc.Digest)
			}
			if cfg.progress != nil {
				cfg.progress(p)
			}
		}
		po.OnManifest = func(_ context.Context, _ ocispec.Descriptor, m ocispec.Manifest) { ov.Start(m) }
	}
	img, err := pull.Pull(ctx, ref, po)
	if ov != nil {
		started, uerr := ov.Wait(err != nil)
		if err == nil && uerr != nil {
			return img, fmt.Errorf("unpack %s: %w", img.Name, uerr)
		}
		if err != nil || started {
			return img, err
		}
	}
	if err != nil || cfg.unpack == "" {
		return img, err
	}
	uopts := []UnpackOpt{WithSnapshotter(cfg.unpack), WithUnpackProgress(cfg.unpackProgress)}
	if cfg.platform != nil {
		uopts = append(uopts, func(u *unpackConfig) { u.platform = cfg.platform })
	}
	if _, err := c.Unpack(ctx, img.Name, uopts...); err != nil {
		return img, fmt.Errorf("unpack %s: %w", img.Name, err)
	}
	return img, nil
}

// storeTimeout is how long a pull retries a content store that is not
// there: as long as a call waits for the daemon, so that one restart is
// waited for once, or not at all when calls do not wait; in process, where
// there is no daemon to wait for, the pull's default.
func (c *Client) storeTimeout() time.Duration {
	switch {
	case c.reach == nil:
		return 0
	case c.reach.timeout <= 0:
		return -1
	}
	return c.reach.timeout
}

// Push uploads the image named local (or ref, when local is empty) to ref.
// Of an index it pushes one platform's manifest alone, as ref: this host's
// (platforms.Default), or the one chosen with WithPlatform; WithAllPlatforms
// pushes the index itself. The default is the one platform because that is
// what a default pull leaves in the store: the other platforms' manifests
// are missing, and a registry refuses an index whose manifests it lacks.
func (c *Client) Push(ctx context.Context, ref, local string, opts ...RemoteOpt) error {
	cfg := c.remoteConfig(opts)
	if local == "" {
		local = ref
	}
	img, err := c.ImageService().Get(ctx, local)
	if err != nil {
		return err
	}
	if images.IsIndex(img.Target.MediaType) && !cfg.allPlatforms {
		platform := cfg.platform
		if platform == nil {
			platform = platforms.Default()
		}
		m, err := pickManifest(ctx, c, img.Target, platform)
		if err != nil {
			return fmt.Errorf("push %s: %w", local, err)
		}
		img.Target = m
	}
	return push.Push(ctx, ref, img.Target, push.Options{
		Resolver: cfg.resolver, Content: c.ContentStore(),
		MaxConcurrentUploads: cfg.maxConcurrent, Progress: cfg.progress,
	})
}

// pickManifest returns the manifest of index that best matches platform.
func pickManifest(ctx context.Context, c *Client, index ocispec.Descriptor, platform platforms.MatchComparer) (ocispec.Descriptor, error) {
	data, err := images.ReadManifest(ctx, c.ContentStore(), index)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	children, _, err := images.ParseChildren(index, data)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	best := -1
	for i, ch := range children {
		if ch.Platform != nil && platform.Match(*ch.Platform) && (best < 0 || platform.Less(*ch.Platform, *children[best].Platform)) {
			best = i
		}
	}
	if best < 0 {
		return ocispec.Descriptor{}, fmt.Errorf("index %s has no manifest for the platform asked for: %w", index.Digest, errdefs.ErrNotFound)
	}
	return children[best], nil
}
