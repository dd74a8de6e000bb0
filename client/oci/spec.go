// Package oci generates OCI runtime specs (config.json) for containers made
// through the client library.
//
// GenerateSpec starts from a default spec for an ordinary, unprivileged Linux
// container and applies SpecOpts in order; each option changes one aspect
// (process arguments, user, mounts, namespaces, resources, seccomp...). Later
// options win over earlier ones, so the usual order is: image config first,
// then the caller's own settings.
//
// The defaults follow containerd's so that a spec made here behaves like one
// made by containerd's client: a new pid, ipc, uts, mount and network
// namespace; the default Docker-era capability set in the bounding,
// effective and permitted sets only (never inheritable or ambient); the
// usual masked and read-only /proc and /sys paths; a device cgroup that
// denies everything but the standard character devices; and the cgroup path
// /<namespace>/<container id>.
//
// Options that resolve users (WithUser, WithUsername, WithUserID,
// WithAdditionalGIDs, WithImageConfig) read /etc/passwd and /etc/group from
// the container's root filesystem: the container's snapshot is mounted
// read-only in a temporary directory, or, for a container without a
// snapshot, the spec's absolute root path is read directly.
package oci

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/core/snapshots"
)

// Spec is the OCI runtime spec, the content of a bundle's config.json.
type Spec = specs.Spec

// Client is what spec options need from the client library. *client.Client
// satisfies it; tests use a fake.
type Client interface {
	// SnapshotService returns the snapshotter named snapshotter, used to
	// reach the container's root filesystem.
	SnapshotService(snapshotter string) snapshots.Snapshotter
}

// Image is what image-derived options read. The client library's image type
// implements it.
type Image interface {
	// Name is the image reference, used in error messages.
	Name() string
	// Config returns the image's config for the platform the client chose.
	Config(ctx context.Context) (ocispec.Image, error)
}

// SpecOpts changes s for container c. client gives access to the
// container's root filesystem for options that need it; options that do not
// ignore it.
type SpecOpts func(ctx context.Context, client Client, c *containers.Container, s *Spec) error

// GenerateSpec returns the default spec for container c (see the package
// documentation) with opts applied in order. The namespace in ctx is part of
// the cgroup path, so ctx must carry one.
//
// GenerateSpec does not call Validate: callers may still fill in parts (the
// process arguments, say) before the spec is used.
func GenerateSpec(ctx context.Context, client Client, c *containers.Container, opts ...SpecOpts) (*Spec, error) {
	if c == nil {
		return nil, fmt.Errorf("generate spec: no container: %w", errdefs.ErrInvalidArgument)
	}
	s, err := defaultSpec(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	if err := ApplyOpts(ctx, client, c, s, opts...); err != nil {
		return nil, err
	}
	return s, nil
}

// ApplyOpts applies opts to s in order and stops at the first error, which it
// returns as is.
func ApplyOpts(ctx context.Context, client Client, c *containers.Container, s *Spec, opts ...SpecOpts) error {
	ctx = withUserDBCache(ctx)
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(ctx, client, c, s); err != nil {
			return err
		}
	}
	return nil
}

// namespaceOf reads the namespace from ctx for the cgroup path; it is
// required because a cgroup path without it would let containers of two
// namespaces with the same id share a cgroup.
func namespaceOf(ctx context.Context) (string, error) {
	return namespaces.NamespaceRequired(ctx)
}
