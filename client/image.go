package client

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/images"
)

// maxImageBlobSize bounds the manifests and configs Image reads into
// memory; real ones are a few kilobytes.
const maxImageBlobSize = 8 << 20

// Image is an image record together with the client, for the questions
// asked about an image when making containers from it: its config, its
// root filesystem's chain ID, whether it is unpacked. It answers for one
// platform, the host's unless the image was got with WithImagePlatform.
type Image struct {
	client   *Client
	img      images.Image
	platform platforms.MatchComparer

	// The manifest and config are read once: they are content, immutable
	// by digest, and making a container asks for them several times. The
	// bytes are kept and decoded per call, so callers own what they get.
	mu    sync.Mutex
	blobs map[digest.Digest][]byte
}

// ImageOpt configures GetImage and NewImage.
type ImageOpt func(*Image)

// WithImagePlatform makes the Image answer for platform p instead of the
// host's.
func WithImagePlatform(p ocispec.Platform) ImageOpt {
	return func(i *Image) { i.platform = platforms.Only(p) }
}

// GetImage returns the image called name.
func (c *Client) GetImage(ctx context.Context, name string, opts ...ImageOpt) (*Image, error) {
	img, err := c.ImageService().Get(ctx, name)
	if err != nil {
		return nil, err
	}
	return c.NewImage(img, opts...), nil
}

// NewImage wraps an image record (from ImageService, Pull or Import).
func (c *Client) NewImage(img images.Image, opts ...ImageOpt) *Image {
	i := &Image{client: c, img: img, platform: platforms.Default()}
	for _, o := range opts {
		o(i)
	}
	return i
}

// Name is the image's name, such as "docker.io/library/busybox:latest".
func (i *Image) Name() string { return i.img.Name }

// Target is the descriptor the image points at: an index or a manifest.
func (i *Image) Target() ocispec.Descriptor { return i.img.Target }

// Labels are the image record's labels.
func (i *Image) Labels() map[string]string { return i.img.Labels }

// Metadata is the image record.
func (i *Image) Metadata() images.Image { return i.img }

// Manifest returns the image's manifest for the Image's platform.
func (i *Image) Manifest(ctx context.Context) (ocispec.Manifest, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.manifestLocked(ctx)
}

func (i *Image) manifestLocked(ctx context.Context) (ocispec.Manifest, error) {
	desc, err := i.client.PlatformManifest(ctx, i.img.Target, i.platform)
	if err != nil {
		return ocispec.Manifest{}, fmt.Errorf("image %q: %w", i.img.Name, err)
	}
	var m ocispec.Manifest
	if err := i.readJSON(ctx, desc, &m); err != nil {
		return ocispec.Manifest{}, err
	}
	return m, nil
}

// Config returns the image's config (entrypoint, environment, user, diff
// IDs...) for the Image's platform.
func (i *Image) Config(ctx context.Context) (ocispec.Image, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	m, err := i.manifestLocked(ctx)
	if err != nil {
		return ocispec.Image{}, err
	}
	var cfg ocispec.Image
	if err := i.readJSON(ctx, m.Config, &cfg); err != nil {
		return ocispec.Image{}, err
	}
	return cfg, nil
}

// readJSON decodes the small blob desc into v (i.mu held); an oversized or malformed
// blob is InvalidArgument naming the image and the blob.
func (i *Image) readJSON(ctx context.Context, desc ocispec.Descriptor, v any) error {
	if desc.Size > maxImageBlobSize {
		return fmt.Errorf("image %q: blob %s is %d bytes, more than %d: %w", i.img.Name, desc.Digest, desc.Size, maxImageBlobSize, errdefs.ErrInvalidArgument)
	}
	data, ok := i.blobs[desc.Digest]
	if !ok {
		var err error
		if data, err = ReadBlob(ctx, i.client.ContentStore(), desc); err != nil {
			return fmt.Errorf("image %q: read %s: %w", i.img.Name, desc.Digest, err)
		}
		if i.blobs == nil {
			i.blobs = map[digest.Digest][]byte{}
		}
		i.blobs[desc.Digest] = data
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("image %q: decode %s (%s): %v: %w", i.img.Name, desc.Digest, desc.MediaType, err, errdefs.ErrInvalidArgument)
	}
	return nil
}

// RootFS returns the diff IDs of the image's layers, bottom first.
func (i *Image) RootFS(ctx context.Context) ([]digest.Digest, error) {
	cfg, err := i.Config(ctx)
	if err != nil {
		return nil, err
	}
	return cfg.RootFS.DiffIDs, nil
}

// ChainID returns the chain ID of the image's layers: the name of the
// committed snapshot holding the unpacked image, which a container's root
// filesystem is prepared on. An image without layers has none ("").
func (i *Image) ChainID(ctx context.Context) (digest.Digest, error) {
	diffIDs, err := i.RootFS(ctx)
	if err != nil {
		return "", err
	}
	if len(diffIDs) == 0 {
		return "", nil
	}
	return identity.ChainID(diffIDs), nil
}

// IsUnpacked reports whether the image's top layer is a snapshot of
// snapshotter ("" for the daemon's default).
func (i *Image) IsUnpacked(ctx context.Context, snapshotter string) (bool, error) {
	chain, err := i.ChainID(ctx)
	if err != nil {
		return false, err
	}
	if chain == "" {
		return true, nil
	}
	sn, err := i.client.resolveSnapshotter(ctx, snapshotter)
	if err != nil {
		return false, err
	}
	if _, err := i.client.SnapshotService(sn).Stat(ctx, chain.String()); err != nil {
		if errdefs.IsNotFound(err) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// Unpack applies the image's layers into snapshotter ("" for the daemon's
// default) and returns the chain ID of the top one. Layers unpacked already
// are kept.
func (i *Image) Unpack(ctx context.Context, snapshotter string) (digest.Digest, error) {
	sn, err := i.client.resolveSnapshotter(ctx, snapshotter)
	if err != nil {
		return "", err
	}
	samePlatform := func(c *unpackConfig) { c.platform = i.platform }
	return i.client.Unpack(ctx, i.img.Name, WithSnapshotter(sn), samePlatform)
}

// resolveSnapshotter returns name, or the daemon's default snapshotter
// when name is empty.
func (c *Client) resolveSnapshotter(ctx context.Context, name string) (string, error) {
	if name != "" {
		return name, nil
	}
	return c.DefaultSnapshotter(ctx)
}
