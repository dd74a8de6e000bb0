// Package leases defines leases: named holds on resources (blobs, ingests,
// snapshots) that keep them from garbage collection while a client works,
// for example during a pull, until the lease is deleted or expires.
package leases

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"

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

// IdleExpireLabel on a lease holds a duration (Go syntax: "3m", "90s") after
// which hulld collects the lease once nobody has used it: no request
// carrying the lease and no call of the lease's own has been seen for that
// long, and none is in flight. A client that keeps using its lease, or
// heartbeats while it works, keeps it; one that dies loses it that long
// after, instead of at its ExpireLabel, which must be far enough ahead to
// cover a whole slow pull.
//
// The last use is kept in hulld's memory only: after a restart every such
// lease starts a fresh idle period, which keeps it a little longer, never
// shorter. containerd does not know the label and ignores it, so clients set
// ExpireLabel as well to bound a lease there.
const IdleExpireLabel = "hull.io/gc.expire-idle"

// IdleTimeout returns the idle period IdleExpireLabel sets in labels; ok is
// false if the label is absent. A value that is not a positive duration is
// an error, so that Create rejects it rather than keep the lease for ever.
func IdleTimeout(labels map[string]string) (d time.Duration, ok bool, err error) {
	v, ok := labels[IdleExpireLabel]
	if !ok {
		return 0, false, nil
	}
	d, err = time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, true, fmt.Errorf("label %s=%q: want a positive duration such as \"3m\": %w", IdleExpireLabel, v, errdefs.ErrInvalidArgument)
	}
	return d, true, nil
}
