package client

import (
	"context"
	"strconv"
	"time"

	api "github.com/containerd/containerd/api/services/leases/v1"

	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/internal/protoconv"
)

// DefaultLeaseExpiration is how long a lease made by WithLease lives unless
// told otherwise: long enough for a slow pull, short enough that a crashed
// client's lease does not pin content for ever.
const DefaultLeaseExpiration = 24 * time.Hour

// LeasesService returns the daemon's lease manager for the namespace of each
// call's context.
func (c *Client) LeasesService() leases.Manager {
	return c.services.Leases
}

type leaseManager struct {
	client api.LeasesClient
}

func leaseFromProto(l *api.Lease) leases.Lease {
	return leases.Lease{ID: l.GetID(), CreatedAt: protoconv.FromTime(l.GetCreatedAt()), Labels: l.GetLabels()}
}

// Create makes lease id; an empty id lets the daemon choose one.
func (m *leaseManager) Create(ctx context.Context, id string, labels map[string]string) (leases.Lease, error) {
	resp, err := m.client.Create(ctx, &api.CreateRequest{ID: id, Labels: labels})
	if err != nil {
		return leases.Lease{}, err
	}
	return leaseFromProto(resp.Lease), nil
}

func (m *leaseManager) Delete(ctx context.Context, id string, sync bool) error {
	_, err := m.client.Delete(ctx, &api.DeleteRequest{ID: id, Sync: sync})
	return err
}

func (m *leaseManager) List(ctx context.Context, filters ...string) ([]leases.Lease, error) {
	resp, err := m.client.List(ctx, &api.ListRequest{Filters: filters})
	if err != nil {
		return nil, err
	}
	out := make([]leases.Lease, 0, len(resp.Leases))
	for _, l := range resp.Leases {
		out = append(out, leaseFromProto(l))
	}
	return out, nil
}

func (m *leaseManager) AddResource(ctx context.Context, id string, r leases.Resource) error {
	_, err := m.client.AddResource(ctx, &api.AddResourceRequest{ID: id, Resource: &api.Resource{ID: r.ID, Type: r.Type}})
	return err
}

func (m *leaseManager) DeleteResource(ctx context.Context, id string, r leases.Resource) error {
	_, err := m.client.DeleteResource(ctx, &api.DeleteResourceRequest{ID: id, Resource: &api.Resource{ID: r.ID, Type: r.Type}})
	return err
}

func (m *leaseManager) ListResources(ctx context.Context, id string) ([]leases.Resource, error) {
	resp, err := m.client.ListResources(ctx, &api.ListResourcesRequest{ID: id})
	if err != nil {
		return nil, err
	}
	out := make([]leases.Resource, 0, len(resp.Resources))
	for _, r := range resp.Resources {
		out = append(out, leases.Resource{ID: r.ID, Type: r.Type})
	}
	return out, nil
}

type leaseConfig struct {
	id         string
	labels     map[string]string
	expiration time.Duration
}

// LeaseOpt configures the lease WithLease creates.
type LeaseOpt func(*leaseConfig)

// WithLeaseID names the lease; by default the daemon picks a unique ID.
func WithLeaseID(id string) LeaseOpt {
	return func(c *leaseConfig) { c.id = id }
}

// WithLeaseLabels adds labels to the lease.
func WithLeaseLabels(labels map[string]string) LeaseOpt {
	return func(c *leaseConfig) {
		for k, v := range labels {
			c.labels[k] = v
		}
	}
}

// WithLeaseExpiration sets how long the lease lives; 0 makes it live until it
// is deleted.
func WithLeaseExpiration(d time.Duration) LeaseOpt {
	return func(c *leaseConfig) { c.expiration = d }
}

// WithLease creates a lease and returns a context carrying it, so that what
// calls with that context write (blobs, ingests) is kept from garbage
// collection until done deletes the lease. The lease expires after
// DefaultLeaseExpiration unless WithLeaseExpiration says otherwise, so that a
// client that dies before calling done does not pin content for ever.
//
// If ctx already carries a lease, it is returned as is with a done that does
// nothing: the outer lease already protects the work, and whoever made it
// deletes it.
func (c *Client) WithLease(ctx context.Context, opts ...LeaseOpt) (context.Context, func(context.Context) error, error) {
	nop := func(context.Context) error { return nil }
	if _, ok := leases.FromContext(ctx); ok {
		return ctx, nop, nil
	}
	cfg := leaseConfig{labels: map[string]string{}, expiration: DefaultLeaseExpiration}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.expiration > 0 {
		cfg.labels[leases.ExpireLabel] = time.Now().Add(cfg.expiration).UTC().Format(time.RFC3339)
	}
	m := c.LeasesService()
	l, err := m.Create(ctx, cfg.id, cfg.labels)
	if err != nil {
		return ctx, nop, err
	}
	// done is often called with a fresh context (the work's may be
	// cancelled by then): remember where the lease lives.
	ns, hasNS := c.namespace(ctx)
	done := func(dctx context.Context) error {
		if _, ok := namespaces.Namespace(dctx); !ok && hasNS {
			dctx = namespaces.WithNamespace(dctx, ns)
		}
		return m.Delete(dctx, l.ID, false)
	}
	return leases.WithLease(ctx, l.ID), done, nil
}

// GarbageCollect runs a garbage collection now and waits for it. The API has
// no call of its own for this (as in containerd); deleting a lease with sync
// set runs one, so this creates a short-lived lease and deletes it that way.
func (c *Client) GarbageCollect(ctx context.Context) error {
	lm := c.LeasesService()
	l, err := lm.Create(ctx, "hull-gc-"+strconv.FormatInt(time.Now().UnixNano(), 36), nil)
	if err != nil {
		return err
	}
	return lm.Delete(ctx, l.ID, true)
}
