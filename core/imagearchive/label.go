package imagearchive

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/images"
)

// LabelStore is what Label needs of a content store: Store, and setting
// labels.
type LabelStore interface {
	Store
	Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error)
}

// Label checks that desc, read from an archive, and what it needs are
// stored, and sets the gc reference labels by which each parent keeps its
// children, so that a recorded image keeps its content once the import's
// lease ends. Of an index, manifests of platforms match rejects, and those
// left out of the archive, are skipped (and so collected); a manifest must
// have its config and every layer.
func Label(ctx context.Context, cs LabelStore, desc ocispec.Descriptor, match platforms.Matcher) error {
	if _, err := cs.Info(ctx, desc.Digest); err != nil {
		if errdefs.IsNotFound(err) {
			return fmt.Errorf("archive lacks %s %s: %w", desc.MediaType, desc.Digest, err)
		}
		return err
	}
	if !images.IsIndex(desc.MediaType) && !images.IsManifest(desc.MediaType) {
		return nil
	}
	data, err := images.ReadManifest(ctx, cs, desc)
	if err != nil {
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
			if ch.Platform != nil && !match.Match(*ch.Platform) {
				continue
			}
			if _, err := cs.Info(ctx, ch.Digest); errdefs.IsNotFound(err) {
				continue // another platform, left out of the archive
			}
		}
		if err := Label(ctx, cs, ch, match); err != nil {
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

// Entries returns the descriptors index (as ReadIndex returns it) lists:
// the archive's images, with their annotations.
func Entries(ctx context.Context, cs Store, index ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	data, err := images.ReadManifest(ctx, cs, index)
	if err != nil {
		return nil, fmt.Errorf("archive index %s: %w", index.Digest, err)
	}
	entries, _, err := images.ParseChildren(index, data)
	if err != nil {
		return nil, fmt.Errorf("archive index %s: %w", index.Digest, err)
	}
	return entries, nil
}
