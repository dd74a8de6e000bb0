package images

import (
	"context"
	"encoding/json"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
)

// Contents is what walking the content of one or more images found. Walk
// adds to it, so blobs that several images share are counted once. The
// zero value is ready to use.
type Contents struct {
	// Blobs are the descriptors reached, by digest, whether or not the
	// store holds the blob.
	Blobs map[digest.Digest]ocispec.Descriptor
	// Platforms are the platforms the images are for, each once: those
	// an index names for its manifests, and for an image that is a lone
	// manifest the one its config names.
	Platforms []ocispec.Platform
	// Unreadable counts the indexes and manifests the store does not hold
	// or that do not decode: what they refer to is missing from Blobs.
	Unreadable int

	platforms map[string]bool // Platforms, by FormatAll
}

// Size is the sum of the sizes of the blobs reached.
func (c *Contents) Size() int64 {
	var n int64
	for _, d := range c.Blobs {
		n += d.Size
	}
	return n
}

// Walk follows root through the indexes and manifests p holds (their
// children as ParseChildren lists them), adding every descriptor it
// reaches to c. A child that is missing or broken is counted in
// Unreadable and skipped, as a partly pulled image is still listed; any
// other error of p ends the walk.
func (c *Contents) Walk(ctx context.Context, p content.Provider, root ocispec.Descriptor) error {
	if c.Blobs == nil {
		c.Blobs = map[digest.Digest]ocispec.Descriptor{}
	}
	queue := []ocispec.Descriptor{root}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		if _, ok := c.Blobs[d.Digest]; ok || d.Digest == "" {
			continue
		}
		c.Blobs[d.Digest] = d
		if !IsIndex(d.MediaType) && !IsManifest(d.MediaType) {
			continue
		}
		data, err := ReadManifest(ctx, p, d)
		var children []ocispec.Descriptor
		if err == nil {
			children, _, err = ParseChildren(d, data)
		}
		if err != nil {
			if errdefs.IsNotFound(err) || errdefs.IsInvalidArgument(err) {
				c.Unreadable++
				continue
			}
			return err
		}
		switch {
		case IsIndex(d.MediaType):
			for _, m := range children {
				if m.Platform != nil {
					c.addPlatform(*m.Platform)
				}
			}
		case d.Digest == root.Digest && len(children) > 0:
			// A lone manifest names its platform only in its config,
			// its first child.
			if pl, ok := configPlatform(ctx, p, children[0]); ok {
				c.addPlatform(pl)
			}
		}
		queue = append(queue, children...)
	}
	return nil
}

func (c *Contents) addPlatform(p ocispec.Platform) {
	if p.OS == "" {
		return
	}
	if c.platforms == nil {
		c.platforms = map[string]bool{}
	}
	if k := platforms.FormatAll(p); !c.platforms[k] {
		c.platforms[k] = true
		c.Platforms = append(c.Platforms, p)
	}
}

// configPlatform reads the os, architecture and variant of an image
// config; ok is false when desc is not a config or cannot be read.
func configPlatform(ctx context.Context, p content.Provider, desc ocispec.Descriptor) (pl ocispec.Platform, ok bool) {
	if desc.MediaType != ocispec.MediaTypeImageConfig && desc.MediaType != MediaTypeDockerConfig {
		return pl, false
	}
	data, err := ReadManifest(ctx, p, desc)
	if err != nil || json.Unmarshal(data, &pl) != nil {
		return pl, false
	}
	return pl, pl.OS != ""
}
