// Package images defines image records: a name pointing at a target
// descriptor (an index or a manifest) in the content store, with labels.
package images

import (
	"context"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is a named reference to content.
type Image struct {
	Name      string
	Labels    map[string]string
	Target    ocispec.Descriptor
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Store keeps the images of the namespace carried by the context.
type Store interface {
	Get(ctx context.Context, name string) (Image, error)
	// List returns images matching any of filters; fields are "name",
	// "target.digest", "target.mediatype" and "labels.<key>".
	List(ctx context.Context, filters ...string) ([]Image, error)
	Create(ctx context.Context, image Image) (Image, error)
	// Update changes the fields named by fieldpaths ("labels",
	// "labels.<key>", "target", "annotations"); none: every field.
	Update(ctx context.Context, image Image, fieldpaths ...string) (Image, error)
	Delete(ctx context.Context, name string, opts ...DeleteOpt) error
}

// DeleteOptions are the options of Store.Delete.
type DeleteOptions struct {
	// Synchronous runs garbage collection before Delete returns.
	Synchronous bool
	// Target, when set, makes the delete conditional on the image still
	// pointing at this digest.
	Target *ocispec.Descriptor
}

// DeleteOpt sets a DeleteOptions field.
type DeleteOpt func(*DeleteOptions)

// SynchronousDelete makes Delete wait for garbage collection.
func SynchronousDelete() DeleteOpt { return func(o *DeleteOptions) { o.Synchronous = true } }

// DeleteTarget makes Delete fail unless the image still points at target.
func DeleteTarget(target *ocispec.Descriptor) DeleteOpt {
	return func(o *DeleteOptions) { o.Target = target }
}
