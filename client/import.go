package client

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/imagearchive"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/reference"
)

// AnnotationImageName is containerd's annotation for the full image name of
// a manifest in an archive's index.
const AnnotationImageName = imagearchive.AnnotationImageName

// importConfig holds the ImportOpt settings.
type importConfig struct {
	allPlatforms bool
	platform     platforms.MatchComparer
	indexName    string
	digests      bool
}

// ImportOpt changes what Import records.
type ImportOpt func(*importConfig)

// WithImportAllPlatforms keeps the content of every platform of an index;
// by default only the host platform's manifests are kept (the others are
// collected as garbage).
func WithImportAllPlatforms() ImportOpt { return func(c *importConfig) { c.allPlatforms = true } }

// WithImportPlatform keeps platform p's manifests instead of the host's.
func WithImportPlatform(p ocispec.Platform) ImportOpt {
	return func(c *importConfig) { c.platform = platforms.Only(p) }
}

// WithIndexName also records the archive's whole index as an image named
// name.
func WithIndexName(name string) ImportOpt { return func(c *importConfig) { c.indexName = name } }

// WithDigestImages also records each image under "<name>@<digest>".
func WithDigestImages() ImportOpt { return func(c *importConfig) { c.digests = true } }

// Import reads an image archive from r, gzip-compressed or not, and records
// its images: an OCI image layout (oci-layout, index.json, blobs/) or a
// `docker save` archive (manifest.json). An archive that is both, as
// containerd's and hull's exports are, is read as the OCI layout, so each
// image keeps the digest the archive gives it (a multi-platform image its
// index), as containerd records it. Blobs are streamed into the content
// store and checked against their digests; the whole import holds a lease
// so that garbage collection cannot race it, and no image is recorded
// before every blob the kept platforms need is stored and labelled.
//
// Each entry of the archive's index becomes an image named by its
// io.containerd.image.name annotation, or by org.opencontainers.image.ref.name
// when that is a full reference; a docker image by its RepoTags.
func (c *Client) Import(ctx context.Context, r io.Reader, opts ...ImportOpt) ([]images.Image, error) {
	cfg := importConfig{platform: platforms.Default()}
	for _, o := range opts {
		o(&cfg)
	}
	var match platforms.Matcher = cfg.platform
	if cfg.allPlatforms {
		match = platforms.All
	}
	ctx, done, err := c.WithLease(ctx)
	if err != nil {
		return nil, err
	}
	defer done(context.WithoutCancel(ctx))
	cs := c.ContentStore()
	if r, err = imagearchive.Decompress(r); err != nil {
		return nil, err
	}
	index, err := imagearchive.ReadIndex(ctx, cs, r)
	if err != nil {
		return nil, err
	}
	entries, err := imagearchive.Entries(ctx, cs, index)
	if err != nil {
		return nil, err
	}
	var roots []images.Image
	for _, e := range entries {
		name := entryName(e.Annotations)
		if name == "" {
			continue
		}
		target := ocispec.Descriptor{MediaType: e.MediaType, Digest: e.Digest, Size: e.Size}
		roots = append(roots, images.Image{Name: name, Target: target})
		if cfg.digests {
			if ref, err := reference.Parse(name); err == nil {
				roots = append(roots, images.Image{Name: ref.Name() + "@" + e.Digest.String(), Target: target})
			}
		}
	}
	if cfg.indexName != "" {
		roots = append(roots, images.Image{Name: cfg.indexName, Target: index})
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("archive names no image (no %s or full %s annotation, no RepoTags): %w", AnnotationImageName, ocispec.AnnotationRefName, errdefs.ErrInvalidArgument)
	}
	labelled := map[string]bool{}
	for _, root := range roots {
		if labelled[root.Target.Digest.String()] {
			continue
		}
		labelled[root.Target.Digest.String()] = true
		if err := imagearchive.Label(ctx, cs, root.Target, match); err != nil {
			return nil, fmt.Errorf("import %s: %w", root.Name, err)
		}
	}
	var out []images.Image
	is := c.ImageService()
	for _, root := range roots {
		img, err := putImage(ctx, is, root)
		if err != nil {
			return out, err
		}
		out = append(out, img)
	}
	return out, nil
}

// entryName is the image name an archive's index gives an entry: "" when
// its annotations hold no full reference.
func entryName(annotations map[string]string) string {
	if name := annotations[AnnotationImageName]; name != "" {
		return name
	}
	if ref := annotations[ocispec.AnnotationRefName]; strings.ContainsAny(ref, "/:") {
		return ref
	}
	return ""
}

func putImage(ctx context.Context, is images.Store, img images.Image) (images.Image, error) {
	out, err := is.Create(ctx, img)
	if errdefs.IsAlreadyExists(err) {
		out, err = is.Update(ctx, img, "target")
	}
	if err != nil {
		return images.Image{}, fmt.Errorf("record image %s: %w", img.Name, err)
	}
	return out, nil
}
