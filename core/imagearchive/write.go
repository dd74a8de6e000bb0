package imagearchive

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	distref "github.com/distribution/reference"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/images"
)

// WriteOptions choose what Write puts in an archive.
type WriteOptions struct {
	// Platform picks the manifests of an index; nil: this host's, strictly.
	Platform platforms.MatchComparer
	// AllPlatforms writes every manifest of an index that is in the store.
	AllPlatforms bool
	// SkipDockerManifest leaves out manifest.json (docker load's index).
	SkipDockerManifest bool
}

// Write writes imgs to w as an OCI image layout archive with a docker
// manifest.json, which containerd, docker and podman all load. Each blob is
// written once, streamed from the content store. An index's manifests of
// other platforms, and those the store lacks, are left out; a manifest's
// config and layers must all be there.
func Write(ctx context.Context, cs Store, w io.Writer, imgs []images.Image, o WriteOptions) error {
	if len(imgs) == 0 {
		return fmt.Errorf("export: name at least one image: %w", errdefs.ErrInvalidArgument)
	}
	if o.Platform == nil {
		o.Platform = platforms.DefaultStrict()
	}
	var (
		index  = ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
		blobs  []ocispec.Descriptor
		seen   = map[string]bool{}
		docker []dockerEntry
	)
	for _, img := range imgs {
		manifests, err := collect(ctx, cs, img.Target, &o, seen, &blobs)
		if err != nil {
			return fmt.Errorf("export %s: %w", img.Name, err)
		}
		desc := ocispec.Descriptor{MediaType: img.Target.MediaType, Digest: img.Target.Digest, Size: img.Target.Size,
			Annotations: map[string]string{AnnotationImageName: img.Name, ocispec.AnnotationRefName: RefName(img.Name)}}
		// Where the image came from, as containerd's exports say: the
		// target's distribution source labels, so that an importer can
		// push it with cross-repository mounts.
		if info, err := cs.Info(ctx, img.Target.Digest); err == nil {
			for k, v := range info.Labels {
				if strings.HasPrefix(k, images.LabelDistributionSource) {
					desc.Annotations[k] = v
				}
			}
		}
		index.Manifests = append(index.Manifests, desc)
		if !o.SkipDockerManifest && len(manifests) > 0 {
			e, err := dockerEntryFor(ctx, cs, img.Name, manifests[0])
			if err != nil {
				return fmt.Errorf("export %s: %w", img.Name, err)
			}
			docker = append(docker, e)
		}
	}
	// Headers as containerd's: no times, and the format left to the
	// writer, which takes plain ustar where a blob's path fits. A time
	// of now needed a PAX header of its own per entry (two more 512-byte
	// blocks), half of an archive of small blobs, and made two exports of
	// one image differ.
	tw := tar.NewWriter(w)
	// One copy buffer for every file: io.Copy would make one per blob,
	// as neither end offers a shortcut, and most blobs are far smaller.
	buf := make([]byte, 32<<10)
	file := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o444, Size: size, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := io.CopyBuffer(tw, r, buf)
		return err
	}
	jsonFile := func(name string, v any) error {
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return file(name, int64(len(data)), strings.NewReader(string(data)))
	}
	if err := jsonFile(ocispec.ImageLayoutFile, ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion}); err != nil {
		return err
	}
	// The directories before the blobs in them, as containerd's and
	// docker's archives have them: tools that extract an archive without
	// making parents need them.
	dirs := map[string]bool{}
	for _, b := range blobs {
		for _, d := range []string{"blobs/", "blobs/" + b.Digest.Algorithm().String() + "/"} {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Name: d, Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
				return err
			}
		}
	}
	for _, b := range blobs {
		ra, err := cs.ReaderAt(ctx, b)
		if err != nil {
			return fmt.Errorf("export blob %s: %w", b.Digest, err)
		}
		err = file(blobPath(b), ra.Size(), io.NewSectionReader(ra, 0, ra.Size()))
		ra.Close()
		if err != nil {
			return fmt.Errorf("export blob %s: %w", b.Digest, err)
		}
	}
	if err := jsonFile(ocispec.ImageIndexFile, index); err != nil {
		return err
	}
	if len(docker) > 0 {
		if err := jsonFile("manifest.json", docker); err != nil {
			return err
		}
	}
	return tw.Close()
}

func blobPath(d ocispec.Descriptor) string {
	return "blobs/" + d.Digest.Algorithm().String() + "/" + d.Digest.Encoded()
}

// collect appends desc and what it references to blobs, once each, and
// returns the platform manifests reached, best match first.
func collect(ctx context.Context, cs Store, desc ocispec.Descriptor, o *WriteOptions, seen map[string]bool, blobs *[]ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	if _, err := cs.Info(ctx, desc.Digest); err != nil {
		return nil, fmt.Errorf("%s %s: %w", desc.MediaType, desc.Digest, err)
	}
	if !seen[desc.Digest.String()] {
		seen[desc.Digest.String()] = true
		*blobs = append(*blobs, desc)
	}
	if !images.IsIndex(desc.MediaType) && !images.IsManifest(desc.MediaType) {
		return nil, nil
	}
	data, err := images.ReadManifest(ctx, cs, desc)
	if err != nil {
		return nil, err
	}
	children, _, err := images.ParseChildren(desc, data)
	if err != nil {
		return nil, err
	}
	if images.IsManifest(desc.MediaType) {
		for _, ch := range children {
			if _, err := collect(ctx, cs, ch, o, seen, blobs); err != nil {
				return nil, err
			}
		}
		return []ocispec.Descriptor{desc}, nil
	}
	var manifests []ocispec.Descriptor
	for _, ch := range children {
		if images.IsManifest(ch.MediaType) && ch.Platform != nil && !o.AllPlatforms && !o.Platform.Match(*ch.Platform) {
			continue
		}
		if _, err := cs.Info(ctx, ch.Digest); errdefs.IsNotFound(err) {
			continue // another platform, not pulled
		}
		ms, err := collect(ctx, cs, ch, o, seen, blobs)
		if err != nil {
			return nil, err
		}
		manifests = append(manifests, ms...)
	}
	// The host's best match first: docker load takes one manifest per name.
	for i := 1; i < len(manifests); i++ {
		if p := manifests[i].Platform; p != nil && (manifests[0].Platform == nil || o.Platform.Less(*p, *manifests[0].Platform)) {
			manifests[0], manifests[i] = manifests[i], manifests[0]
		}
	}
	return manifests, nil
}

// dockerEntryFor describes manifest m as an image of a docker
// manifest.json, tagged with name in docker's short form.
func dockerEntryFor(ctx context.Context, cs Store, name string, m ocispec.Descriptor) (dockerEntry, error) {
	data, err := images.ReadManifest(ctx, cs, m)
	if err != nil {
		return dockerEntry{}, err
	}
	var mf ocispec.Manifest
	if err := json.Unmarshal(data, &mf); err != nil {
		return dockerEntry{}, fmt.Errorf("manifest %s: %v: %w", m.Digest, err, errdefs.ErrInvalidArgument)
	}
	e := dockerEntry{Config: blobPath(mf.Config), RepoTags: []string{}}
	for _, l := range mf.Layers {
		e.Layers = append(e.Layers, blobPath(l))
	}
	if ref, err := distref.ParseDockerRef(name); err == nil {
		if _, tagged := ref.(distref.Tagged); tagged {
			e.RepoTags = append(e.RepoTags, distref.FamiliarString(ref))
		}
	}
	return e, nil
}
