package client

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/images"
)

// Import label and annotation names.
const (
	// AnnotationImageName is containerd's annotation for the full image
	// name of a manifest in an archive's index.
	AnnotationImageName = "io.containerd.image.name"
	labelGCRefContent   = "containerd.io/gc.ref.content"
)

// Import reads an OCI image layout archive (oci-layout, index.json, blobs/)
// from r and records its images. Blobs are streamed into the content store as
// they come, never held in memory; the whole import holds a lease so that
// garbage collection cannot race it. Each manifest of the index becomes an
// image named by its io.containerd.image.name annotation, or by its
// org.opencontainers.image.ref.name when that is a full reference. Manifests,
// indexes and configs get the gc reference labels containerd sets, so the
// image keeps its content alive.
func (c *Client) Import(ctx context.Context, r io.Reader) ([]images.Image, error) {
	ctx, done, err := c.WithLease(ctx)
	if err != nil {
		return nil, err
	}
	defer done(context.WithoutCancel(ctx))
	cs := c.ContentStore()
	var index *ocispec.Index
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read archive: %w", err)
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		switch {
		case h.Typeflag != tar.TypeReg:
			continue
		case name == "index.json":
			index = &ocispec.Index{}
			if err := json.NewDecoder(io.LimitReader(tr, 16<<20)).Decode(index); err != nil {
				return nil, fmt.Errorf("archive index.json: %w: %w", err, errdefs.ErrInvalidArgument)
			}
		case strings.HasPrefix(name, "blobs/"):
			parts := strings.Split(name, "/")
			if len(parts) != 3 {
				continue
			}
			dgst := digest.NewDigestFromEncoded(digest.Algorithm(parts[1]), parts[2])
			if err := dgst.Validate(); err != nil {
				return nil, fmt.Errorf("archive entry %s is not named by a valid digest: %w", h.Name, errdefs.ErrInvalidArgument)
			}
			desc := ocispec.Descriptor{Digest: dgst, Size: h.Size}
			if err := WriteBlob(ctx, cs, "import-"+dgst.String(), tr, desc); err != nil {
				return nil, fmt.Errorf("import blob %s: %w", dgst, err)
			}
		}
	}
	if index == nil {
		return nil, fmt.Errorf("archive has no index.json: only OCI image layout archives are read: %w", errdefs.ErrInvalidArgument)
	}
	var out []images.Image
	is := c.ImageService()
	for _, m := range index.Manifests {
		if err := c.labelTree(ctx, cs, m); err != nil {
			return nil, err
		}
		name := m.Annotations[AnnotationImageName]
		if name == "" {
			if ref := m.Annotations[ocispec.AnnotationRefName]; strings.ContainsAny(ref, "/:") {
				name = ref
			}
		}
		if name == "" {
			continue
		}
		target := ocispec.Descriptor{MediaType: m.MediaType, Digest: m.Digest, Size: m.Size}
		img, err := is.Create(ctx, images.Image{Name: name, Target: target})
		if errdefs.IsAlreadyExists(err) {
			img, err = is.Update(ctx, images.Image{Name: name, Target: target}, "target")
		}
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("archive index names no image (no %s or full %s annotation): %w", AnnotationImageName, ocispec.AnnotationRefName, errdefs.ErrInvalidArgument)
	}
	return out, nil
}

// labelTree sets the gc reference labels on desc (an index or manifest) and
// below it, so each parent keeps its children alive.
func (c *Client) labelTree(ctx context.Context, cs content.Store, desc ocispec.Descriptor) error {
	var children []ocispec.Descriptor
	var prefixes []string
	switch desc.MediaType {
	case ocispec.MediaTypeImageIndex, "application/vnd.docker.distribution.manifest.list.v2+json":
		data, err := ReadBlob(ctx, cs, desc)
		if err != nil {
			return err
		}
		var idx ocispec.Index
		if err := json.Unmarshal(data, &idx); err != nil {
			return fmt.Errorf("index %s: %w: %w", desc.Digest, err, errdefs.ErrInvalidArgument)
		}
		for i, m := range idx.Manifests {
			if _, err := cs.Info(ctx, m.Digest); errdefs.IsNotFound(err) {
				continue // another platform, not in the archive
			}
			children = append(children, m)
			prefixes = append(prefixes, fmt.Sprintf("m.%d", i))
		}
	case ocispec.MediaTypeImageManifest, "application/vnd.docker.distribution.manifest.v2+json":
		data, err := ReadBlob(ctx, cs, desc)
		if err != nil {
			return err
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("manifest %s: %w: %w", desc.Digest, err, errdefs.ErrInvalidArgument)
		}
		children = append(children, m.Config)
		prefixes = append(prefixes, "config")
		for i, l := range m.Layers {
			children = append(children, l)
			prefixes = append(prefixes, fmt.Sprintf("l.%d", i))
		}
	default:
		return nil
	}
	info := content.Info{Digest: desc.Digest, Labels: map[string]string{}}
	var paths []string
	for i, ch := range children {
		if err := c.labelTree(ctx, cs, ch); err != nil {
			return err
		}
		k := labelGCRefContent + "." + prefixes[i]
		info.Labels[k] = ch.Digest.String()
		paths = append(paths, "labels."+k)
	}
	if _, err := cs.Update(ctx, info, paths...); err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return fmt.Errorf("archive lacks blob %s: %w", desc.Digest, err)
		}
		return err
	}
	return nil
}
