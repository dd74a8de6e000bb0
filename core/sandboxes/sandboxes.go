// Package sandboxes defines sandbox records: containerd's record of a pod
// (or any group of containers sharing an execution environment), kept per
// namespace in the Sandbox store (containerd.services.sandbox.v1.Store).
//
// A record is metadata only: it names the sandboxer that manages the
// sandbox and the runtime it runs on, and carries its spec, labels and
// extensions. It owns no processes and, in hull, keeps nothing alive for
// garbage collection: its labels, gc.ref ones included, are not followed.
// Containers join a sandbox through their own SandboxID.
package sandboxes

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/typeurl/v2"

	"github.com/hullrt/hull/core/containers"
)

// RuntimeInfo names the runtime (shim) of the sandbox and carries its
// options.
type RuntimeInfo struct {
	// Name is a runtime name such as "io.containerd.runc.v2".
	Name string
	// Options is runtime specific, encoded as a typed Any; nil for none.
	Options typeurl.Any
}

// Sandbox is the record of one sandbox.
type Sandbox struct {
	// ID is unique in its namespace and follows the rules of container
	// ids (ValidateID).
	ID string
	// Labels are user metadata.
	Labels map[string]string
	// Runtime is the runtime the sandbox runs on.
	Runtime RuntimeInfo
	// Spec is the sandbox's spec as a typed Any, usually an OCI runtime
	// spec; nil for none.
	Spec typeurl.Any
	// CreatedAt and UpdatedAt are set by the store.
	CreatedAt time.Time
	UpdatedAt time.Time
	// Extensions are client defined typed values kept with the record.
	Extensions map[string]typeurl.Any
	// Sandboxer names the controller that manages the sandbox (the CRI's
	// "podsandbox", say); it never changes after creation.
	Sandboxer string
}

// Store keeps the sandboxes of the namespace carried by the context.
// Every change publishes an event after it commits: /sandboxes/create,
// /sandboxes/update or /sandboxes/delete.
type Store interface {
	// Create records sandbox and returns it with CreatedAt and UpdatedAt
	// set. The id must pass ValidateID (InvalidArgument otherwise); an id
	// in use is AlreadyExists.
	Create(ctx context.Context, sandbox Sandbox) (Sandbox, error)
	// Update changes the fields named by fieldpaths ("labels",
	// "labels.<key>", "extensions", "extensions.<key>", "spec",
	// "runtime"); none: all of them, and then Runtime.Name and Sandboxer
	// must be those recorded (InvalidArgument otherwise). A missing
	// sandbox is NotFound.
	Update(ctx context.Context, sandbox Sandbox, fieldpaths ...string) (Sandbox, error)
	// Get returns sandbox id; NotFound naming it if there is none.
	Get(ctx context.Context, id string) (Sandbox, error)
	// List returns the sandboxes matching any of filters (containerd's
	// filter syntax); fields are "id", "labels.<key>", "runtime.name" and
	// "sandboxer".
	List(ctx context.Context, filters ...string) ([]Sandbox, error)
	// Delete removes the record (NotFound if there is none). The
	// sandbox's containers keep their records.
	Delete(ctx context.Context, id string) error
}

// ValidateID checks a sandbox id. Sandbox ids follow the rules of container
// ids (containers.ValidateID): a pod's id names directories and cgroups as a
// container's does. The error is InvalidArgument and names the value.
func ValidateID(id string) error {
	if err := containers.ValidateID(id); err != nil {
		return fmt.Errorf("sandbox id %q must follow the rules of container ids: %w", id, err)
	}
	return nil
}
