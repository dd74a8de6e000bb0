package testimage

import (
	"encoding/json"

	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Index is a multi-platform image built in memory: an OCI image index and
// the images it lists.
type Index struct {
	Index     Blob
	Manifests []*Image
}

// NewIndex builds an OCI image index of platformImages, in that order, each
// entry's platform taken from its image's config (see NewFor). It panics if
// an image's config is not JSON, which images from this package always are.
func NewIndex(platformImages ...*Image) *Index {
	idx := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{},
	}
	for _, img := range platformImages {
		p, err := img.Platform()
		if err != nil {
			panic(err)
		}
		desc := img.Manifest.Desc
		desc.Platform = &p
		idx.Manifests = append(idx.Manifests, desc)
	}
	ib, _ := json.Marshal(idx)
	return &Index{Index: blob(ocispec.MediaTypeImageIndex, ib), Manifests: platformImages}
}

// Blobs returns every blob of the index once, the index first, then each
// image's manifest, config and layers; blobs that images share appear once.
func (idx *Index) Blobs() []Blob {
	seen := map[string]bool{}
	out := []Blob{}
	add := func(b Blob) {
		if !seen[b.Desc.Digest.String()] {
			seen[b.Desc.Digest.String()] = true
			out = append(out, b)
		}
	}
	add(idx.Index)
	for _, img := range idx.Manifests {
		for _, b := range img.Blobs() {
			add(b)
		}
	}
	return out
}
