// Package manager is hull's mount manager, the model behind containerd 2.2's
// Mounts service (containerd.services.mounts.v1).
//
// Some mount lists cannot be handed to a shim as they are: a mount may be
// a template over mounts before it ("format/overlay" whose lowerdir is
// "{{ mount 0 }}"), or a filesystem image that needs a loop device. The
// manager performs the mounts that need the daemon's help in a directory of
// its own, one directory per activation, and returns the mounts that are
// left for the caller (the "system" mounts), filled in with the paths of
// the mounts it made.
//
// An activation has a name unique in its namespace and a record in a Store
// (hull's metadata store). The record is written before anything is
// mounted and completed after, so a crash in between leaves a record that
// Recover finds and undoes. Records carry the lease of the context that
// activated them and containerd's gc labels: the metadata store's garbage
// collector removes an activation whose lease has ended and whose back
// references (containerd.io/gc.bref.container, .image, .content,
// .snapshot.<snapshotter>) name nothing that exists, and keeps what an
// activation's containerd.io/gc.ref.* labels name. Release unmounts what
// the collector removed.
//
// What happens to a mount list, as in containerd:
//   - a type "<transform>/<type>" is transformed before it is mounted:
//     "format" fills in templates ({{ source i }}, {{ target i }},
//     {{ mount i }}, {{ overlay a b }}) from the mounts before it, "mkdir"
//     creates the directories its X-containerd.mkdir.path options name;
//   - every mount before the last one that needs a transform is performed
//     by the manager, since that one refers to them; with Temporary, all
//     of them are, and the caller gets one bind mount of the last;
//   - a list in which nothing needs the manager is NotImplemented: the
//     caller performs it as it is.
package manager

import (
	"context"
	"time"

	"github.com/hullrt/hull/core/mount"
)

// ActiveMount is a mount the manager performed.
type ActiveMount struct {
	mount.Mount
	// MountedAt is when it was mounted.
	MountedAt time.Time
	// MountPoint is where it is mounted, in the manager's directory.
	MountPoint string
	// Data is information about the mount for later mounts; hull's own
	// mounts leave it empty.
	Data map[string]string
}

// ActivationInfo describes an activation.
type ActivationInfo struct {
	// Name is unique in the namespace.
	Name string
	// Active are the mounts the manager performed, in order.
	Active []ActiveMount
	// System are the mounts left for the caller, templates filled in.
	System []mount.Mount
	// Labels of the activation, containerd's gc labels among them.
	Labels map[string]string
}

// ActivateOptions change what Activate does.
type ActivateOptions struct {
	// Labels are stored with the activation.
	Labels map[string]string
	// Temporary asks for every mount to be performed, and one bind
	// mount of the result as the system mounts.
	Temporary bool
	// AllowMountTypes are mount types the caller performs itself.
	AllowMountTypes []string
	// AllowTransforms are transforms ("format", "mkdir") the caller
	// applies itself.
	AllowTransforms []string
}

// ActivateOpt is an option of Activate.
type ActivateOpt func(*ActivateOptions)

// WithTemporary makes an activation perform every mount.
func WithTemporary(o *ActivateOptions) { o.Temporary = true }

// WithLabels sets the labels of an activation.
func WithLabels(labels map[string]string) ActivateOpt {
	return func(o *ActivateOptions) { o.Labels = labels }
}

// WithAllowMountType says the caller performs mounts of type t itself.
func WithAllowMountType(t string) ActivateOpt {
	return func(o *ActivateOptions) { o.AllowMountTypes = append(o.AllowMountTypes, t) }
}

// WithAllowTransform says the caller applies transform t itself.
func WithAllowTransform(t string) ActivateOpt {
	return func(o *ActivateOptions) { o.AllowTransforms = append(o.AllowTransforms, t) }
}

// Activator is what the Mounts service and the tasks service use: the
// operations of containerd's mount.Manager.
type Activator interface {
	// Activate performs what mounts need of the daemon and records the
	// activation as name; AlreadyExists when name is active,
	// NotImplemented when nothing needs the manager.
	Activate(ctx context.Context, name string, mounts []mount.Mount, opts ...ActivateOpt) (ActivationInfo, error)
	// Deactivate unmounts what name's activation mounted and removes it.
	Deactivate(ctx context.Context, name string) error
	// Info returns name's activation.
	Info(ctx context.Context, name string) (ActivationInfo, error)
	// Update changes the labels of info.Name ("labels", "labels.<key>").
	Update(ctx context.Context, info ActivationInfo, fieldpaths ...string) (ActivationInfo, error)
	// List returns the activations that match any of filters (containerd's
	// filter syntax over name and labels).
	List(ctx context.Context, filters ...string) ([]ActivationInfo, error)
}

// Record is an activation as a Store keeps it.
type Record struct {
	// Namespace is set by Store.All.
	Namespace string
	Name      string
	// ID is unique in the store across namespaces; it names the
	// activation's directory.
	ID uint64
	// Lease is the lease of the context that activated it, if any.
	Lease  string
	Labels map[string]string
	// Complete is false from Reserve until Complete: the mounts are
	// being made, or a crash interrupted them.
	Complete             bool
	Active               []ActiveMount
	System               []mount.Mount
	CreatedAt, UpdatedAt time.Time
}

// Info returns the record as an ActivationInfo.
func (r Record) Info() ActivationInfo {
	return ActivationInfo{Name: r.Name, Active: r.Active, System: r.System, Labels: r.Labels}
}

// Store keeps activation records, per namespace (the namespace of ctx).
type Store interface {
	// Reserve records a new, incomplete activation name with labels and
	// the lease of ctx, and gives it an ID. AlreadyExists if name has a
	// record.
	Reserve(ctx context.Context, name string, labels map[string]string) (Record, error)
	// Complete stores the mounts of activation name (ID id) and marks it
	// complete.
	Complete(ctx context.Context, name string, id uint64, active []ActiveMount, system []mount.Mount) (Record, error)
	// Get returns name's record; NotFound if there is none.
	Get(ctx context.Context, name string) (Record, error)
	// UpdateLabels applies the label field paths ("labels",
	// "labels.<key>") of labels to name's record.
	UpdateLabels(ctx context.Context, name string, labels map[string]string, fieldpaths ...string) (Record, error)
	// List returns the records matching any of filters.
	List(ctx context.Context, filters ...string) ([]Record, error)
	// Delete removes name's record if its ID is id; NotFound otherwise.
	Delete(ctx context.Context, name string, id uint64) error
	// All returns the records of every namespace.
	All(ctx context.Context) ([]Record, error)
}
