// Package containers defines container records: the metadata a task is
// created from (OCI spec, runtime, rootfs snapshot, image), kept per
// namespace. A container record owns no processes; tasks do.
package containers

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"
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
	// Get returns the container id; NotFound naming it if there is none.
	Get(ctx context.Context, id string) (Container, error)
	// List returns containers matching any of filters; fields are "id",
	// "image", "runtime.name", "snapshotter", "snapshotkey", "sandbox"
	// and "labels.<key>".
	List(ctx context.Context, filters ...string) ([]Container, error)
	// Create records container and returns it with CreatedAt and
	// UpdatedAt set. The id must pass ValidateID and the spec and runtime
	// name must be set (InvalidArgument otherwise); an id in use is
	// AlreadyExists.
	Create(ctx context.Context, container Container) (Container, error)
	// Update changes the fields named by fieldpaths ("labels",
	// "labels.<key>", "spec", "image", "snapshotkey", "extensions",
	// "extensions.<key>", "runtime"); none: every mutable field. ID,
	// Snapshotter and SandboxID never change.
	Update(ctx context.Context, container Container, fieldpaths ...string) (Container, error)
	// Delete removes the record (NotFound if there is none). What the
	// container held, its snapshot among them, is left to garbage
	// collection, or to the caller to remove first.
	Delete(ctx context.Context, id string) error
}

// MaxIDLength is containerd's limit on identifiers (container ids among
// them), so that any id hull accepts is one containerd accepts too.
const MaxIDLength = 76

// ValidateID checks id against containerd's identifier grammar: letters
// and digits, in components joined by single '.', '_' or '-', starting and
// ending with a letter or digit, at most MaxIDLength characters. The
// container id becomes a directory name, a cgroup path component and a
// shim socket name, so anything outside this set is refused up front. The
// error is InvalidArgument and names the value.
func ValidateID(id string) error {
	if id == "" {
		return fmt.Errorf("container id must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	if len(id) > MaxIDLength {
		return fmt.Errorf("container id %q is %d characters long, the limit is %d: %w", id, len(id), MaxIDLength, errdefs.ErrInvalidArgument)
	}
	prevSep := true // the first character must not be a separator
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			prevSep = false
		case c == '.' || c == '_' || c == '-':
			if prevSep {
				return fmt.Errorf("container id %q is invalid: use letters, digits, and single '.', '_' or '-' between them: %w", id, errdefs.ErrInvalidArgument)
			}
			prevSep = true
		default:
			return fmt.Errorf("container id %q is invalid: character %q is not allowed (letters, digits, '.', '_' and '-'): %w", id, c, errdefs.ErrInvalidArgument)
		}
	}
	if prevSep {
		return fmt.Errorf("container id %q is invalid: it must end with a letter or digit: %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}

// NewAny returns a typed Any holding value, already encoded, under typeURL.
// Stores use it to hand back the Any values they keep as type URL and
// bytes without decoding them (they may be of types hull does not know).
func NewAny(typeURL string, value []byte) typeurl.Any {
	return &anypb.Any{TypeUrl: typeURL, Value: value}
}
