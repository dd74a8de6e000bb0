package client

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
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
// archive that Import (and `ctr images import`) read back. Blobs are streamed
// from the content store, each once.
func (c *Client) Export(ctx context.Context, w io.Writer, names []string, opts ...ExportOpt) error {
	cfg := exportConfig{platform: platforms.Default()}
	for _, o := range opts {
		o(&cfg)
	}
	if len(names) == 0 {
		return fmt.Errorf("export: name at least one image: %w", errdefs.ErrInvalidArgument)
	}
	cs := c.ContentStore()
	var (
		index = ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
		blobs []ocispec.Descriptor
		seen  = map[string]bool{}
	)
	for _, name := range names {
		img, err := c.ImageService().Get(ctx, name)
		if err != nil {
			return err
		}
		if err := collectTree(ctx, cs, img.Target, &cfg, seen, &blobs); err != nil {
			return fmt.Errorf("export %s: %w", name, err)
		}
		desc := img.Target
		desc.Annotations = map[string]string{AnnotationImageName: name, ocispec.AnnotationRefName: tagOf(name)}
		index.Manifests = append(index.Manifests, desc)
	}
	tw := tar.NewWriter(w)
	now := time.Now()
	file := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o444, Size: size, ModTime: now, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	layout := `{"imageLayoutVersion":"1.0.0"}`
	if err := file("oci-layout", int64(len(layout)), strings.NewReader(layout)); err != nil {
		return err
	}
	for _, b := range blobs {
		ra, err := cs.ReaderAt(ctx, b)
		if err != nil {
			return fmt.Errorf("export blob %s: %w", b.Digest, err)
		}
		err = file("blobs/"+b.Digest.Algorithm().String()+"/"+b.Digest.Encoded(), ra.Size(), io.NewSectionReader(ra, 0, ra.Size()))
		ra.Close()
		if err != nil {
			return fmt.Errorf("export blob %s: %w", b.Digest, err)
		}
	}
	data, err := json.Marshal(index)
	if err != nil {
		return err
	}
	if err := file("index.json", int64(len(data)), strings.NewReader(string(data))); err != nil {
		return err
	}
	return tw.Close()
}

// tagOf returns the tag of name ("latest" for "x/y:latest", the digest for
// "x/y@sha256:..."), which the OCI ref.name annotation holds.
func tagOf(name string) string {
	if i := strings.LastIndexByte(name, '@'); i >= 0 {
		return name[i+1:]
	}
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		return name[i+1:]
	}
	return "latest"
}

// collectTree appends desc and what it references to blobs, once each. An
// index's manifests of other platforms, or missing from the store, are left
// out; a manifest's config and layers must all be there.
func collectTree(ctx context.Context, cs content.Store, desc ocispec.Descriptor, cfg *exportConfig, seen map[string]bool, blobs *[]ocispec.Descriptor) error {
	if seen[desc.Digest.String()] {
		return nil
	}
	if _, err := cs.Info(ctx, desc.Digest); err != nil {
		return fmt.Errorf("%s %s: %w", desc.MediaType, desc.Digest, err)
	}
	seen[desc.Digest.String()] = true
	*blobs = append(*blobs, desc)
	if !images.IsIndex(desc.MediaType) && !images.IsManifest(desc.MediaType) {
		return nil
	}
	data, err := images.ReadManifest(ctx, cs, desc)
	if err != nil {
		return err
	}
	children, _, err := images.ParseChildren(desc, data)
	if err != nil {
		return err
	}
	for _, ch := range children {
		if images.IsIndex(desc.MediaType) {
			if ch.Platform != nil && !cfg.allPlatforms && !cfg.platform.Match(*ch.Platform) {
				continue
			}
			if _, err := cs.Info(ctx, ch.Digest); errdefs.IsNotFound(err) {
				continue
			}
		}
		if err := collectTree(ctx, cs, ch, cfg, seen, blobs); err != nil {
			return err
		}
	}
	return nil
}
