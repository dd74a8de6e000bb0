// Package containers defines container records: the metadata a task is
// created from (OCI spec, runtime, rootfs snapshot, image), kept per
// namespace. A container record owns no processes; tasks do.
package containers

import (
	"context"
	"time"

	"github.com/containerd/typeurl/v2"
)

// RuntimeInfo names the runtime (shim) that runs the container's tasks
// and carries its options, e.g. runc options with BinaryName or Root.
type RuntimeInfo struct {
	// Name is a runtime name such as "io.containerd.runc.v2" or
	// "io.containerd.hull.v2".
	Name string
	// Options is runtime specific, encoded as a typed Any; nil for none.
	Options typeurl.Any
}

// Container is the record of one container.
type Container struct {
	// ID is unique in its namespace.
	ID string
	// Labels are user metadata; gc reads the containerd.io/gc.* ones.
	Labels map[string]string
	// Image is the name of the image the container was made from, if any.
	Image string
	// Runtime selects the shim for the container's tasks.
	Runtime RuntimeInfo
	// Spec is the OCI runtime spec, as a typed Any (types.containerd.io/
	// opencontainers/runtime-spec/1/Spec).
	Spec typeurl.Any
	// SnapshotKey is the active snapshot holding the root filesystem, in
	// Snapshotter.
	SnapshotKey string
	// Snapshotter names the snapshotter of SnapshotKey.
	Snapshotter string
	// CreatedAt and UpdatedAt are set by the store.
	CreatedAt time.Time
	UpdatedAt time.Time
	// Extensions are client defined typed values kept with the record.
	Extensions map[string]typeurl.Any
	// SandboxID groups the container into a sandbox (pod), if set.
	SandboxID string
}

// Store keeps the containers of the namespace carried by the context.
type Store interface {
	Get(ctx context.Context, id string) (Container, error)
	// List returns containers matching any of filters; fields are "id",
	// "image", "runtime.name", "snapshotter", "snapshotkey", "sandbox"
	// and "labels.<key>".
	List(ctx context.Context, filters ...string) ([]Container, error)
	Create(ctx context.Context, container Container) (Container, error)
	// Update changes the fields named by fieldpaths ("labels",
	// "labels.<key>", "spec", "image", "snapshotkey", "extensions",
	// "extensions.<key>", "runtime"); none: every mutable field. ID,
	// Snapshotter and SandboxID never change.
	Update(ctx context.Context, container Container, fieldpaths ...string) (Container, error)
	Delete(ctx context.Context, id string) error
}
