// Package diff defines how layers and filesystem trees turn into each other:
// an Applier writes a layer (a tar, maybe compressed) onto mounts, and a
// Comparer produces a layer from the difference between two mount sets.
package diff

import (
	"context"
	"errors"

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
	// Detached says that the mounts are those of a snapshot prepared
	// without parent that will be committed onto the layers below this
	// one (snapshots.WithParent), which may not be committed yet. The
	// layer is written as it would be into an overlay upper directory
	// over them: whiteouts as 0/0 character devices, opaque directories
	// marked with trusted.overlay.opaque; a directory the layer writes
	// into without listing it is recorded for the snapshotter to give it
	// the lower layers' metadata at that commit
	// (archive.WithDetachedUpper). A layer that needs the lower layers'
	// content otherwise (a hard link to a file below) fails with an error
	// wrapping ErrNeedsLower; the caller then applies it the ordinary
	// way, on a snapshot of its parent.
	Detached bool
}

// ErrNeedsLower is what a Detached apply fails with when the layer needs
// the content of the layers below it. Through the diff gRPC service it
// arrives as a FailedPrecondition whose message says so.
var ErrNeedsLower = errors.New("the layer needs the layers below it")

// PayloadDetached is the key of ApplyRequest.payloads that carries
// WithDetached through the diff gRPC API, which has no field for it; only
// hulld's diff service knows it.
const PayloadDetached = "hull.io/diff.detached"

// WithDetached makes Apply write a layer for a snapshot that will be given
// its parent when committed: see ApplyConfig.Detached.
func WithDetached() ApplyOpt {
	return func(c *ApplyConfig) { c.Detached = true }
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
