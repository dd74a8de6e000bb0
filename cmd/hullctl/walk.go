package main

import (
	"context"
	"encoding/json"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/core/content"
)

// Docker's media types, which images pulled from Docker registries still use.
const (
	dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	dockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	dockerConfig       = "application/vnd.docker.container.image.v1+json"
)

// maxManifestSize bounds what is read as a manifest: a bigger "manifest" is
// not one, and reading it whole would be costly.
const maxManifestSize = 8 << 20

func isIndex(mt string) bool    { return mt == ocispec.MediaTypeImageIndex || mt == dockerManifestList }
func isManifest(mt string) bool { return mt == ocispec.MediaTypeImageManifest || mt == dockerManifest }

// manifestish holds the fields of an index or a manifest that point at other
// blobs; one struct decodes either.
type manifestish struct {
	MediaType string               `json:"mediaType"`
	Manifests []ocispec.Descriptor `json:"manifests"`
	Config    *ocispec.Descriptor  `json:"config"`
	Layers    []ocispec.Descriptor `json:"layers"`
	Subject   *ocispec.Descriptor  `json:"subject"`
	Blobs     []ocispec.Descriptor `json:"blobs"`
}

// imageWalk is what walking an image's content found.
type imageWalk struct {
	// seen holds every descriptor reached, by digest, whether or not the
	// blob is stored.
	seen map[digest.Digest]ocispec.Descriptor
	// platforms are the platforms the image is for, as os/arch[/variant].
	platforms map[string]bool
	// missing counts manifests and indexes that could not be read.
	missing int
}

func (w *imageWalk) size() int64 {
	var n int64
	for _, d := range w.seen {
		n += d.Size
	}
	return n
}

func (w *imageWalk) platformList() []string {
	out := make([]string, 0, len(w.platforms))
	for p := range w.platforms {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

func platformString(p *ocispec.Platform) string {
	if p == nil || p.OS == "" {
		return ""
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// walkImage follows root through indexes and manifests, reading them from
// cs, into w (which may be shared by several roots). withPlatforms also
// reads the configs of manifests to learn their platforms.
func walkImage(ctx context.Context, cs content.Store, root ocispec.Descriptor, w *imageWalk, withPlatforms bool) error {
	queue := []ocispec.Descriptor{root}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		if d.Digest == "" {
			continue
		}
		if _, ok := w.seen[d.Digest]; ok {
			continue
		}
		w.seen[d.Digest] = d
		if !isIndex(d.MediaType) && !isManifest(d.MediaType) && !(d.MediaType == "" && d.Size <= maxManifestSize) {
			continue
		}
		if d.Size > maxManifestSize {
			continue
		}
		m, err := readManifest(ctx, cs, d)
		if err != nil {
			if errdefs.IsNotFound(err) || errdefs.IsInvalidArgument(err) {
				w.missing++
				continue
			}
			return err
		}
		mt := d.MediaType
		if mt == "" {
			mt = m.MediaType
		}
		for _, c := range m.Manifests {
			if p := platformString(c.Platform); p != "" && isIndex(mt) {
				w.platforms[p] = true
			}
			queue = append(queue, c)
		}
		if m.Config != nil {
			queue = append(queue, *m.Config)
			if withPlatforms && isManifest(mt) && d.Digest == root.Digest {
				// A lone manifest says its platform only in its config.
				if p := configPlatform(ctx, cs, *m.Config); p != "" {
					w.platforms[p] = true
				}
			}
		}
		queue = append(queue, m.Layers...)
		queue = append(queue, m.Blobs...)
		if m.Subject != nil {
			queue = append(queue, *m.Subject)
		}
	}
	return nil
}

func readManifest(ctx context.Context, cs content.Store, d ocispec.Descriptor) (*manifestish, error) {
	b, err := client.ReadBlob(ctx, cs, d)
	if err != nil {
		return nil, err
	}
	var m manifestish
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, errdefs.ErrInvalidArgument
	}
	if d.MediaType == "" && !isIndex(m.MediaType) && !isManifest(m.MediaType) {
		return &manifestish{}, nil
	}
	return &m, nil
}

func configPlatform(ctx context.Context, cs content.Store, d ocispec.Descriptor) string {
	if d.Size > maxManifestSize || (d.MediaType != ocispec.MediaTypeImageConfig && d.MediaType != dockerConfig) {
		return ""
	}
	b, err := client.ReadBlob(ctx, cs, d)
	if err != nil {
		return ""
	}
	var p ocispec.Platform
	if json.Unmarshal(b, &p) != nil {
		return ""
	}
	return platformString(&p)
}

// isContentRef tells containerd's labels that make one blob keep another.
func isContentRef(label string) bool {
	const prefix = "containerd.io/gc.ref.content"
	if !strings.HasPrefix(label, prefix) {
		return false
	}
	rest := label[len(prefix):]
	return rest == "" || rest[0] == '.' || rest[0] == '/'
}
