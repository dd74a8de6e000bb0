package transfer

import (
	"context"
	"fmt"
	"io"
	"maps"

	transfertypes "github.com/containerd/containerd/api/types/transfer"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/imagearchive"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/streaming"
)

// importArchive reads an archive from the client's stream into the content
// store and records its images by the destination's naming rules. Nothing
// is recorded until every blob the kept manifests need is stored and
// labelled, so a broken stream or archive leaves no image behind (its
// blobs go with the transfer's lease).
func (s *Service) importArchive(ctx context.Context, src *transfertypes.ImageImportStream, dst *transfertypes.ImageStore, progress func(Progress)) error {
	st, err := s.Streams.Get(ctx, src.GetStream())
	if err != nil {
		return fmt.Errorf("import stream: %w", err)
	}
	rc := streaming.NewReader(st)
	defer rc.Close()
	progress(Progress{Event: "Importing"})
	var r io.Reader = rc
	if src.GetMediaType() == "" {
		if r, err = imagearchive.Decompress(rc); err != nil {
			return err
		}
	}
	index, err := imagearchive.ReadIndex(ctx, s.Content, r)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	match, _ := platformMatcher(dst.GetPlatforms())
	data, err := images.ReadManifest(ctx, s.Content, index)
	if err != nil {
		return fmt.Errorf("import: archive index %s: %w", index.Digest, err)
	}
	entries, _, err := images.ParseChildren(index, data)
	if err != nil {
		return fmt.Errorf("import: archive index %s: %w", index.Digest, err)
	}
	for _, e := range entries {
		if err := s.labelTree(ctx, e, match, true); err != nil {
			return fmt.Errorf("import: %w", err)
		}
	}
	if err := s.labelTree(ctx, index, match, true); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	for _, e := range entries {
		if err := s.unpackAll(ctx, e, dst.GetUnpacks(), progress); err != nil {
			return err
		}
	}
	names := Names(dst, index, false)
	for _, e := range entries {
		e.Annotations = maps.Clone(e.Annotations)
		names = append(names, Names(dst, e, true)...)
	}
	imgs, err := s.record(ctx, names)
	if err != nil {
		return err
	}
	for _, img := range imgs {
		progress(Progress{Event: "saved", Name: img.Name, Desc: &img.Target})
	}
	progress(Progress{Event: "Completed import"})
	return nil
}

// labelTree checks that desc and what it needs are stored and sets the gc
// labels by which each parent keeps its children. Of an index, manifests of
// platforms not matched, or left out of the archive, are skipped; a
// manifest must have its config and every layer (required).
func (s *Service) labelTree(ctx context.Context, desc ocispec.Descriptor, match platforms.MatchComparer, required bool) error {
	if _, err := s.Content.Info(ctx, desc.Digest); err != nil {
		if errdefs.IsNotFound(err) {
			return fmt.Errorf("archive lacks %s %s: %w", desc.MediaType, desc.Digest, err)
		}
		return err
	}
	if !images.IsIndex(desc.MediaType) && !images.IsManifest(desc.MediaType) {
		return nil
	}
	data, err := images.ReadManifest(ctx, s.Content, desc)
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
			if _, err := s.Content.Info(ctx, ch.Digest); errdefs.IsNotFound(err) {
				continue // another platform, left out of the archive
			}
		}
		if err := s.labelTree(ctx, ch, match, true); err != nil {
			return err
		}
		k := images.LabelGCRefContent + "." + refs[i]
		info.Labels[k] = ch.Digest.String()
		paths = append(paths, "labels."+k)
	}
	if len(paths) == 0 {
		return nil
	}
	_, err = s.Content.Update(ctx, info, paths...)
	return err
}
