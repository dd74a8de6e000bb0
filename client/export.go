package client

import (
	"context"
	"fmt"
	"io"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/imagearchive"
	"github.com/hullrt/hull/core/images"
)

// exportConfig holds the ExportOpt settings.
type exportConfig struct {
	allPlatforms bool
	platform     platforms.MatchComparer
}

// ExportOpt changes what Export writes.
type ExportOpt func(*exportConfig)

// WithExportAllPlatforms writes every platform of an index that is present;
// by default only the host platform's manifests are written.
func WithExportAllPlatforms() ExportOpt { return func(c *exportConfig) { c.allPlatforms = true } }

// WithExportPlatform writes platform p's manifests instead of the host's.
func WithExportPlatform(p ocispec.Platform) ExportOpt {
	return func(c *exportConfig) { c.platform = platforms.Only(p) }
}

// Export writes the images named by names to w as an OCI image layout
// archive that also holds a docker manifest.json: Import, `ctr images
// import`, `docker load` and `podman load` all read it. Each image keeps its
// target (a multi-platform image its index, with the blobs of the chosen
// platforms); manifest.json lists each tagged image's best platform match.
// Blobs are streamed from the content store, each once.
func (c *Client) Export(ctx context.Context, w io.Writer, names []string, opts ...ExportOpt) error {
	cfg := exportConfig{platform: platforms.Default()}
	for _, o := range opts {
		o(&cfg)
	}
	if len(names) == 0 {
		return fmt.Errorf("export: name at least one image: %w", errdefs.ErrInvalidArgument)
	}
	var imgs []images.Image
	for _, name := range names {
		img, err := c.ImageService().Get(ctx, name)
		if err != nil {
			return fmt.Errorf("export %s: %w", name, err)
		}
		imgs = append(imgs, img)
	}
	return imagearchive.Write(ctx, c.ContentStore(), w, imgs, imagearchive.WriteOptions{Platform: cfg.platform, AllPlatforms: cfg.allPlatforms})
}
