// Package leases defines leases: named holds on resources (blobs, ingests,
// snapshots) that keep them from garbage collection while a client works,
// for example during a pull, until the lease is deleted or expires.
package leases

import (
	"context"
	"time"

	"github.com/hullrt/hull/core/labels"
)

// ExpireLabel holds an RFC 3339 time after which the lease is collected
// (labels.GCExpire, under the name this package's users know).
const ExpireLabel = labels.GCExpire

// Lease is a hold on resources.
type Lease struct {
	ID        string
	CreatedAt time.Time
	Labels    map[string]string
}

// Resource is something a lease holds. Type is "content", "ingests" or
// "snapshots/<snapshotter>"; ID is the digest, ref or snapshot key.
type Resource struct {
	ID   string
	Type string
}

// Manager keeps the leases of the namespace carried by the context.
type Manager interface {
	Create(ctx context.Context, id string, labels map[string]string) (Lease, error)
	// Delete removes the lease; sync waits for the garbage collection
	// that frees what it held.
	Delete(ctx context.Context, id string, sync bool) error
	// List returns leases matching any of filters ("id", "labels.<key>").
	List(ctx context.Context, filters ...string) ([]Lease, error)
	AddResource(ctx context.Context, id string, r Resource) error
	DeleteResource(ctx context.Context, id string, r Resource) error
	ListResources(ctx context.Context, id string) ([]Resource, error)
}

type leaseKey struct{}

// WithLease returns a context whose writes are held by lease id.
func WithLease(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, leaseKey{}, id)
}

// FromContext returns the lease carried by ctx, if any.
func FromContext(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(leaseKey{}).(string)
	return id, ok && id != ""
}

// GRPCHeader is the gRPC metadata key containerd clients put the lease in.
const GRPCHeader = "containerd-lease"

// Expired reports whether labels carry an expiry time before now.
func Expired(labels map[string]string, now time.Time) bool {
	v, ok := labels[ExpireLabel]
	if !ok {
		return false
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	return err == nil && now.After(t)
}
