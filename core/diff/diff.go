// Package diff defines how layers and filesystem trees turn into each other:
// an Applier writes a layer (a tar, maybe compressed) onto mounts, and a
// Comparer produces a layer from the difference between two mount sets.
package diff

import (
	"context"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/mount"
)

// Applier applies layers.
type Applier interface {
	// Apply reads layer desc from the content store, decompresses it
	// (gzip, zstd or none, from its media type, checked against the
	// stream), writes it onto mounts, and returns the descriptor of the
	// uncompressed tar (its digest is the diffID), which it verified
	// against WithExpectedDiffID when given.
	Apply(ctx context.Context, desc ocispec.Descriptor, mounts []mount.Mount, opts ...ApplyOpt) (ocispec.Descriptor, error)
}

// ApplyConfig holds ApplyOpt settings.
type ApplyConfig struct {
	// ExpectedDiffID, when set, is checked against the uncompressed
	// stream; a mismatch fails the apply.
	ExpectedDiffID string
}

// ApplyOpt sets an ApplyConfig field.
type ApplyOpt func(*ApplyConfig)

// WithExpectedDiffID makes Apply verify the uncompressed digest.
func WithExpectedDiffID(d string) ApplyOpt {
	return func(c *ApplyConfig) { c.ExpectedDiffID = d }
}

// Comparer makes layers.
type Comparer interface {
	// Compare writes the changes from lower to upper as a layer into the
	// content store and returns its descriptor.
	Compare(ctx context.Context, lower, upper []mount.Mount, opts ...CompareOpt) (ocispec.Descriptor, error)
}

// CompareConfig holds CompareOpt settings.
type CompareConfig struct {
	// MediaType of the layer: OCI tar, tar+gzip (default) or tar+zstd.
	MediaType string
	// Ref names the content ingest; default a unique one.
	Ref string
	// Labels are set on the layer blob.
	Labels map[string]string
}

// CompareOpt sets a CompareConfig field.
type CompareOpt func(*CompareConfig)

// WithMediaType sets the media type of the produced layer.
func WithMediaType(mt string) CompareOpt { return func(c *CompareConfig) { c.MediaType = mt } }

// WithReference sets the ingest ref of the produced layer.
func WithReference(ref string) CompareOpt { return func(c *CompareConfig) { c.Ref = ref } }

// WithLabels sets labels on the produced layer blob.
func WithLabels(l map[string]string) CompareOpt { return func(c *CompareConfig) { c.Labels = l } }
