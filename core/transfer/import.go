package transfer

import (
	"context"
	"fmt"
	"io"
	"maps"

	transfertypes "github.com/containerd/containerd/api/types/transfer"

	"github.com/hullrt/hull/core/imagearchive"
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
	entries, err := imagearchive.Entries(ctx, s.Content, index)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	for _, e := range entries {
		if err := imagearchive.Label(ctx, s.Content, e, match); err != nil {
			return fmt.Errorf("import: %w", err)
		}
	}
	if err := imagearchive.Label(ctx, s.Content, index, match); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	for _, e := range entries {
		if err := s.unpackAll(ctx, e, dst.GetUnpacks(), progress, nil); err != nil {
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
