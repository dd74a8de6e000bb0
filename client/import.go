package client

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/reference"
)

// AnnotationImageName is containerd's annotation for the full image name of
// a manifest in an archive's index.
const AnnotationImageName = "io.containerd.image.name"

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

// Docker's image media types, for `docker save` archives.
const (
	mediaTypeDockerManifest   = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerConfig     = "application/vnd.docker.container.image.v1+json"
	mediaTypeDockerLayer      = "application/vnd.docker.image.rootfs.diff.tar"
	mediaTypeDockerLayerGzip  = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	maxArchiveMetadataSize    = 16 << 20
	importIngestRefNamePrefix = "import-"
)

// dockerEntry is one image of a `docker save` manifest.json.
type dockerEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// Import reads an image archive from r and records its images: an OCI image
// layout (oci-layout, index.json, blobs/) or a `docker save` archive
// (manifest.json). Blobs are streamed into the content store as they come,
// never held in memory; the whole import holds a lease so that garbage
// collection cannot race it. OCI manifests become images named by their
// io.containerd.image.name annotation, or by org.opencontainers.image.ref.name
// when that is a full reference; docker images by their RepoTags. Indexes,
// manifests and configs get the gc reference labels containerd sets, so an
// image keeps its content alive.
func (c *Client) Import(ctx context.Context, r io.Reader, opts ...ImportOpt) ([]images.Image, error) {
	cfg := importConfig{platform: platforms.Default()}
	for _, o := range opts {
		o(&cfg)
	}
	ctx, done, err := c.WithLease(ctx)
	if err != nil {
		return nil, err
	}
	defer done(context.WithoutCancel(ctx))
	cs := c.ContentStore()
	var (
		index  *ocispec.Index
		docker []dockerEntry
		files  = map[string]ocispec.Descriptor{} // archive path -> stored blob
	)
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read archive: %w: %w", err, errdefs.ErrInvalidArgument)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		switch name {
		case "index.json":
			index = &ocispec.Index{}
			if err := decodeSmall(tr, index); err != nil {
				return nil, fmt.Errorf("archive index.json: %w", err)
			}
			continue
		case "manifest.json":
			if err := decodeSmall(tr, &docker); err != nil {
				return nil, fmt.Errorf("archive manifest.json: %w", err)
			}
			continue
		case "oci-layout", "repositories":
			continue
		}
		desc, err := importBlob(ctx, cs, name, h.Size, tr)
		if err != nil {
			return nil, err
		}
		if desc.Digest != "" {
			files[name] = desc
		}
	}
	var roots []namedDesc
	switch {
	case docker != nil:
		roots, err = dockerRoots(ctx, cs, docker, files)
	case index != nil:
		roots, err = ociRoots(*index, cfg.indexName)
	default:
		err = fmt.Errorf("archive has neither index.json nor manifest.json: %w", errdefs.ErrInvalidArgument)
	}
	if err != nil {
		return nil, err
	}
	var out []images.Image
	is := c.ImageService()
	for _, root := range roots {
		if root.data != nil {
			if err := WriteBlob(ctx, cs, importIngestRefNamePrefix+root.desc.Digest.String(), bytes.NewReader(root.data), root.desc); err != nil {
				return nil, err
			}
		}
		if err := labelTree(ctx, cs, root.desc, &cfg); err != nil {
			return nil, err
		}
		names := []string{}
		if root.name != "" {
			names = append(names, root.name)
		}
		if cfg.digests && root.name != "" && root.name != cfg.indexName {
			if ref, err := reference.Parse(root.name); err == nil {
				names = append(names, ref.Name()+"@"+root.desc.Digest.String())
			}
		}
		for _, name := range names {
			img, err := putImage(ctx, is, images.Image{Name: name, Target: root.desc})
			if err != nil {
				return nil, err
			}
			out = append(out, img)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("archive names no image (no %s or full %s annotation, no RepoTags): %w", AnnotationImageName, ocispec.AnnotationRefName, errdefs.ErrInvalidArgument)
	}
	return out, nil
}

// namedDesc is an image to record; data, when set, is the target's bytes,
// which the archive did not hold (a docker manifest, or the index kept by
// WithIndexName) and which are stored first.
type namedDesc struct {
	name string
	desc ocispec.Descriptor
	data []byte
}

func putImage(ctx context.Context, is images.Store, img images.Image) (images.Image, error) {
	out, err := is.Create(ctx, img)
	if errdefs.IsAlreadyExists(err) {
		out, err = is.Update(ctx, img, "target")
	}
	return out, err
}

func decodeSmall(r io.Reader, v any) error {
	data, err := io.ReadAll(io.LimitReader(r, maxArchiveMetadataSize+1))
	if err != nil {
		return err
	}
	if len(data) > maxArchiveMetadataSize {
		return fmt.Errorf("larger than %d bytes: %w", maxArchiveMetadataSize, errdefs.ErrInvalidArgument)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
	}
	return nil
}

// importBlob stores one archive file. Files under blobs/<alg>/<hex> are
// checked against their digest; other files (a docker archive's layers and
// configs) are stored under the digest of their bytes.
func importBlob(ctx context.Context, cs content.Store, name string, size int64, r io.Reader) (ocispec.Descriptor, error) {
	if parts := strings.Split(name, "/"); len(parts) == 3 && parts[0] == "blobs" {
		dgst := digest.NewDigestFromEncoded(digest.Algorithm(parts[1]), parts[2])
		if err := dgst.Validate(); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("archive entry %s is not named by a valid digest: %w", name, errdefs.ErrInvalidArgument)
		}
		desc := ocispec.Descriptor{Digest: dgst, Size: size}
		if err := WriteBlob(ctx, cs, importIngestRefNamePrefix+dgst.String(), r, desc); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("import blob %s: %w", dgst, err)
		}
		return desc, nil
	}
	if !strings.HasSuffix(name, ".tar") && !strings.HasSuffix(name, ".json") {
		return ocispec.Descriptor{}, nil // docker's per-layer VERSION and the like
	}
	w, err := OpenWriter(ctx, cs, content.WithRef(fmt.Sprintf("%s%s-%d", importIngestRefNamePrefix, name, time.Now().UnixNano())))
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer w.Close()
	if err := Copy(ctx, w, r, size, ""); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("import %s: %w", name, err)
	}
	return ocispec.Descriptor{Digest: w.Digest(), Size: size}, nil
}

// ociRoots lists the images an OCI layout's index names; with indexName, the
// index itself (written to the store by the caller) is one more.
func ociRoots(index ocispec.Index, indexName string) ([]namedDesc, error) {
	var out []namedDesc
	for _, m := range index.Manifests {
		name := m.Annotations[AnnotationImageName]
		if name == "" {
			if ref := m.Annotations[ocispec.AnnotationRefName]; strings.ContainsAny(ref, "/:") {
				name = ref
			}
		}
		out = append(out, namedDesc{name: name, desc: ocispec.Descriptor{MediaType: m.MediaType, Digest: m.Digest, Size: m.Size}})
	}
	if indexName != "" {
		if index.MediaType == "" {
			index.MediaType = ocispec.MediaTypeImageIndex
		}
		data, err := json.Marshal(index)
		if err != nil {
			return nil, err
		}
		out = append(out, namedDesc{name: indexName, data: data, desc: ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(data), Size: int64(len(data)),
		}})
	}
	return out, nil
}

// dockerRoots writes a Docker schema 2 manifest for each image of a `docker
// save` manifest.json and lists them under their RepoTags.
func dockerRoots(ctx context.Context, cs content.Store, entries []dockerEntry, files map[string]ocispec.Descriptor) ([]namedDesc, error) {
	var out []namedDesc
	for _, e := range entries {
		cfg, ok := files[path.Clean(e.Config)]
		if !ok {
			return nil, fmt.Errorf("docker archive: config %s is not in the archive: %w", e.Config, errdefs.ErrInvalidArgument)
		}
		m := ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: mediaTypeDockerManifest,
			Config:    ocispec.Descriptor{MediaType: mediaTypeDockerConfig, Digest: cfg.Digest, Size: cfg.Size},
		}
		for _, l := range e.Layers {
			ld, ok := files[path.Clean(l)]
			if !ok {
				return nil, fmt.Errorf("docker archive: layer %s is not in the archive: %w", l, errdefs.ErrInvalidArgument)
			}
			mt, err := layerMediaType(ctx, cs, ld)
			if err != nil {
				return nil, err
			}
			m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: mt, Digest: ld.Digest, Size: ld.Size})
		}
		data, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		desc := ocispec.Descriptor{MediaType: mediaTypeDockerManifest, Digest: digest.FromBytes(data), Size: int64(len(data))}
		if len(e.RepoTags) == 0 {
			out = append(out, namedDesc{desc: desc, data: data})
		}
		for _, tag := range e.RepoTags {
			ref, _, err := reference.ParseNormalized(tag)
			if err != nil {
				return nil, fmt.Errorf("docker archive: RepoTag %q: %w", tag, err)
			}
			out = append(out, namedDesc{name: ref.String(), desc: desc, data: data})
		}
	}
	return out, nil
}

// layerMediaType tells a gzip-compressed docker layer from a plain tar by
// its first bytes.
func layerMediaType(ctx context.Context, cs content.Store, desc ocispec.Descriptor) (string, error) {
	ra, err := cs.ReaderAt(ctx, desc)
	if err != nil {
		return "", err
	}
	defer ra.Close()
	magic := make([]byte, 2)
	if n, _ := ra.ReadAt(magic, 0); n == 2 && bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		return mediaTypeDockerLayerGzip, nil
	}
	return mediaTypeDockerLayer, nil
}

// labelTree sets the gc reference labels on desc (an index or manifest) and
// below it, so each parent keeps its children alive. Of an index, only the
// manifests of the chosen platforms are labelled (the others are collected),
// and manifests missing from the archive are skipped.
func labelTree(ctx context.Context, cs content.Store, desc ocispec.Descriptor, cfg *importConfig) error {
	if !images.IsIndex(desc.MediaType) && !images.IsManifest(desc.MediaType) {
		return nil
	}
	data, err := images.ReadManifest(ctx, cs, desc)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return fmt.Errorf("archive lacks %s %s: %w", desc.MediaType, desc.Digest, err)
		}
		return err
	}
	children, refs, err := images.ParseChildren(desc, data)
	if err != nil {
		return err
	}
	info := content.Info{Digest: desc.Digest, Labels: map[string]string{}}
	var paths []string
	for i, ch := range children {
		if images.IsIndex(desc.MediaType) {
			if ch.Platform != nil && !cfg.allPlatforms && !cfg.platform.Match(*ch.Platform) {
				continue
			}
			if _, err := cs.Info(ctx, ch.Digest); errdefs.IsNotFound(err) {
				continue // another platform, left out of the archive
			}
		}
		if err := labelTree(ctx, cs, ch, cfg); err != nil {
			return err
		}
		k := images.LabelGCRefContent + "." + refs[i]
		info.Labels[k] = ch.Digest.String()
		paths = append(paths, "labels."+k)
	}
	if len(paths) == 0 {
		return nil
	}
	_, err = cs.Update(ctx, info, paths...)
	return err
}
