// Package remotes defines how hull talks to registries: a Resolver turns a
// reference into a descriptor and hands out Fetchers and Pushers for it. The
// implementation over the OCI distribution HTTP API is in remotes/registry;
// which hosts it tries, with which TLS, headers and credentials, comes from
// remotes/hosts (containerd's hosts.toml).
package remotes

import (
	"context"
	"io"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
)

// Resolver finds what a reference points at and opens transfers for it.
type Resolver interface {
	// Resolve returns the canonical name of ref and the descriptor of its
	// target (an index or a manifest). A digest reference resolves to that
	// digest.
	Resolve(ctx context.Context, ref string) (name string, desc ocispec.Descriptor, err error)
	// Fetcher returns a Fetcher for the repository of ref.
	Fetcher(ctx context.Context, ref string) (Fetcher, error)
	// Pusher returns a Pusher for the repository of ref.
	Pusher(ctx context.Context, ref string) (Pusher, error)
}

// ManifestResolver is a Resolver that can also return what a reference
// points at, read in the same request: a pull that has no copy of the
// manifest saves a round trip to the registry before it can fetch anything
// else. (Resolve alone asks for the headers, which registries do not count
// as a pull, so that a pull of an image already stored reads nothing.)
type ManifestResolver interface {
	Resolver
	// ResolveManifest is Resolve returning the bytes of the index or
	// manifest too, verified against the descriptor.
	ResolveManifest(ctx context.Context, ref string) (name string, desc ocispec.Descriptor, manifest []byte, err error)
}

// Fetcher streams blobs and manifests of one repository.
type Fetcher interface {
	// Fetch returns the content of desc; the caller closes it. The bytes
	// are not verified here: callers write them through a content Writer,
	// which checks the digest.
	Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error)
}

// Pusher uploads blobs and manifests to one repository.
type Pusher interface {
	// Push returns a writer for desc; Commit finishes the upload. A
	// descriptor that the registry already has gives AlreadyExists.
	Push(ctx context.Context, desc ocispec.Descriptor) (content.Writer, error)
}

// RangeFetcher is a Fetcher that can fetch part of a blob, which a pull uses
// to resume a broken download where it stopped and to fetch large blobs in
// parallel chunks.
type RangeFetcher interface {
	Fetcher
	// FetchRange returns length bytes of desc from offset (to the end if
	// length < 0).
	FetchRange(ctx context.Context, desc ocispec.Descriptor, offset, length int64) (io.ReadCloser, error)
}
