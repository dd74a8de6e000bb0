package images

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
)

// memStore is a content.Provider over blobs in memory; broken makes
// reading one digest fail with an error that is not NotFound.
type memStore struct {
	blobs  map[digest.Digest][]byte
	broken digest.Digest
}

type memReader struct{ *bytes.Reader }

func (memReader) Close() error { return nil }

func (s *memStore) ReaderAt(_ context.Context, d ocispec.Descriptor) (content.ReaderAt, error) {
	if d.Digest == s.broken {
		return nil, errors.New("disk on fire")
	}
	b, ok := s.blobs[d.Digest]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", d.Digest, errdefs.ErrNotFound)
	}
	return memReader{bytes.NewReader(b)}, nil
}

// put stores v as JSON (or as the bytes it is) and returns its descriptor.
func (s *memStore) put(mt string, v any) ocispec.Descriptor {
	b, ok := v.([]byte)
	if !ok {
		b, _ = json.Marshal(v)
	}
	d := digest.FromBytes(b)
	s.blobs[d] = b
	return ocispec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(b))}
}

// image stores a manifest with a config for platform p and the layers,
// and returns the manifest's descriptor.
func (s *memStore) image(p ocispec.Platform, layers ...ocispec.Descriptor) ocispec.Descriptor {
	cfg := s.put(ocispec.MediaTypeImageConfig, ocispec.Image{Platform: p})
	return s.put(ocispec.MediaTypeImageManifest, ocispec.Manifest{Config: cfg, Layers: layers})
}

func formatted(ps []ocispec.Platform) []string {
	var out []string
	for _, p := range ps {
		out = append(out, platforms.Format(p))
	}
	slices.Sort(out)
	return out
}

func TestWalkIndex(t *testing.T) {
	ctx := context.Background()
	s := &memStore{blobs: map[digest.Digest][]byte{}}
	shared := s.put(ocispec.MediaTypeImageLayerGzip, []byte("shared layer"))
	amd := s.image(ocispec.Platform{OS: "linux", Architecture: "amd64"}, shared, s.put(ocispec.MediaTypeImageLayerGzip, []byte("amd64 layer")))
	arm := s.image(ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, shared)
	amd.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	// A manifest the index names but the store lacks: a partial pull.
	gone := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("gone"), Size: 10,
		Platform: &ocispec.Platform{OS: "linux", Architecture: "s390x"}}
	idx := s.put(ocispec.MediaTypeImageIndex, ocispec.Index{Manifests: []ocispec.Descriptor{amd, arm, gone}})

	var c Contents
	if err := c.Walk(ctx, s, idx); err != nil {
		t.Fatal(err)
	}
	// index, 3 manifests, 2 configs, 2 layers (shared once)
	if len(c.Blobs) != 8 {
		t.Errorf("%d blobs reached, want 8: %v", len(c.Blobs), c.Blobs)
	}
	var want int64
	for _, d := range c.Blobs {
		want += d.Size
	}
	if c.Size() != want || c.Blobs[shared.Digest].Size != shared.Size {
		t.Errorf("size %d, want %d", c.Size(), want)
	}
	if c.Unreadable != 1 {
		t.Errorf("unreadable %d, want 1 (the missing manifest)", c.Unreadable)
	}
	if got := formatted(c.Platforms); !slices.Equal(got, []string{"linux/amd64", "linux/arm64/v8", "linux/s390x"}) {
		t.Errorf("platforms %v", got)
	}

	// A second image sharing the content adds only its own blobs: its
	// manifest (its config is amd64's, byte for byte).
	lone := s.image(ocispec.Platform{OS: "linux", Architecture: "amd64"}, shared)
	if err := c.Walk(ctx, s, lone); err != nil {
		t.Fatal(err)
	}
	if len(c.Blobs) != 9 || len(c.Platforms) != 3 {
		t.Errorf("after a second image: %d blobs, platforms %v", len(c.Blobs), formatted(c.Platforms))
	}
}

func TestWalkLoneManifest(t *testing.T) {
	ctx := context.Background()
	s := &memStore{blobs: map[digest.Digest][]byte{}}
	m := s.image(ocispec.Platform{OS: "linux", Architecture: "riscv64"}, s.put(ocispec.MediaTypeImageLayer, []byte("l")))
	var c Contents
	if err := c.Walk(ctx, s, m); err != nil {
		t.Fatal(err)
	}
	if got := formatted(c.Platforms); !slices.Equal(got, []string{"linux/riscv64"}) || len(c.Blobs) != 3 || c.Unreadable != 0 {
		t.Errorf("platforms %v, %d blobs, %d unreadable", got, len(c.Blobs), c.Unreadable)
	}

	// A manifest that does not decode is unreadable, not an error.
	bad := s.put(ocispec.MediaTypeImageManifest, []byte("{"))
	if err := c.Walk(ctx, s, bad); err != nil || c.Unreadable != 1 {
		t.Errorf("broken manifest: %v, %d unreadable", err, c.Unreadable)
	}

	// Any other failure of the store ends the walk.
	s.broken = m.Digest
	var c2 Contents
	if err := c2.Walk(ctx, s, m); err == nil || errdefs.IsNotFound(err) {
		t.Errorf("store failure: %v", err)
	}
}
