package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/labels"
)

// Media types of Docker's image format, which registries still serve beside
// the OCI ones.
const (
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerSchema1      = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// LabelGCRefContent prefixes the labels by which a blob keeps others
// alive: LabelGCRefContent + "." + a ref from ParseChildren names one
// child. It is labels.GCRefContent, here beside ParseChildren for the
// callers that label what it returns.
const LabelGCRefContent = labels.GCRefContent

// IsIndex reports whether mt is an index (OCI or Docker manifest list).
func IsIndex(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == MediaTypeDockerManifestList
}

// IsManifest reports whether mt is a single-platform manifest.
func IsManifest(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == MediaTypeDockerManifest
}

// maxManifestSize bounds how much of a manifest or index is read into memory.
const maxManifestSize = 4 << 20

// ParseChildren decodes the index or manifest data of desc and returns its
// children with the name of the gc reference label each gets
// ("m.<i>" for an index's manifests, "config" and "l.<i>" for a
// manifest's config and layers). Other media types have no children.
func ParseChildren(desc ocispec.Descriptor, data []byte) (children []ocispec.Descriptor, refs []string, err error) {
	switch {
	case IsIndex(desc.MediaType):
		var idx ocispec.Index
		if err := json.Unmarshal(data, &idx); err != nil {
			return nil, nil, fmt.Errorf("index %s: %v: %w", desc.Digest, err, errdefs.ErrInvalidArgument)
		}
		for i, m := range idx.Manifests {
			children = append(children, m)
			refs = append(refs, fmt.Sprintf("m.%d", i))
		}
	case IsManifest(desc.MediaType):
		var m ocispec.Manifest
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, nil, fmt.Errorf("manifest %s: %v: %w", desc.Digest, err, errdefs.ErrInvalidArgument)
		}
		children = append(children, m.Config)
		refs = append(refs, "config")
		for i, l := range m.Layers {
			children = append(children, l)
			refs = append(refs, fmt.Sprintf("l.%d", i))
		}
	}
	return children, refs, nil
}

// ReadManifest reads the index or manifest desc from p, refusing more than
// 4 MiB so that a hostile descriptor cannot exhaust memory.
func ReadManifest(ctx context.Context, p content.Provider, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size > maxManifestSize {
		return nil, fmt.Errorf("%s %s is %d bytes, more than the %d a manifest may have: %w", desc.MediaType, desc.Digest, desc.Size, maxManifestSize, errdefs.ErrInvalidArgument)
	}
	ra, err := p.ReaderAt(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer ra.Close()
	size := ra.Size()
	if size > maxManifestSize {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d a manifest may have: %w", desc.Digest, size, maxManifestSize, errdefs.ErrInvalidArgument)
	}
	buf := make([]byte, size)
	if _, err := ra.ReadAt(buf, 0); err != nil && err != io.EOF {
		return nil, err
	}
	return buf, nil
}

// EachConcurrently runs fn for every descriptor, each in its own goroutine,
// waits for all of them and returns their errors joined. Pull and push walk
// an image's children this way; the limit on parallel transfers is theirs.
func EachConcurrently(descs []ocispec.Descriptor, fn func(ocispec.Descriptor) error) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, d := range descs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(d); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
