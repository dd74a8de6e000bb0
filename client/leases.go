package client

import (
	"context"
	"strconv"
	"sync"
	"time"

	api "github.com/containerd/containerd/api/services/leases/v1"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc/connectivity"

	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/internal/protoconv"
)

// DefaultLeaseExpiration is how long a lease made by WithLease lives unless
// told otherwise: long enough for a slow pull, short enough that a crashed
// client's lease does not pin content for ever.
const DefaultLeaseExpiration = 24 * time.Hour

// DefaultLeaseIdle is how long after its client stops using it hulld
// collects a lease made by WithLease (leases.IdleExpireLabel). WithLease
// heartbeats well within it while the work runs, so only a client that died
// or hung loses its lease: an interrupted pull frees its space minutes
// later instead of after DefaultLeaseExpiration. Long enough that a client
// paused by a loaded machine or a slow daemon is not mistaken for a dead one.
const DefaultLeaseIdle = 3 * time.Minute

// LeasesService returns the daemon's lease manager for the namespace of each
// call's context.
func (c *Client) LeasesService() leases.Manager {
	return c.services.Leases
}

// closed reports whether Close was called on the client.
func (c *Client) closed() bool {
	return c.conn != nil && c.conn.GetState() == connectivity.Shutdown
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
	idle       time.Duration
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

// WithLeaseIdle sets how long after the client stops renewing it the lease
// is collected (DefaultLeaseIdle by default); 0 turns idle expiry and the
// heartbeat off, leaving only the expiration.
func WithLeaseIdle(d time.Duration) LeaseOpt {
	return func(c *leaseConfig) { c.idle = d }
}

// WithLease creates a lease and returns a context carrying it, so that what
// calls with that context write (blobs, ingests, snapshots) is kept from
// garbage collection until done deletes the lease.
//
// A client that dies before calling done must not pin that content for
// long, so the lease expires in two ways. hulld collects it DefaultLeaseIdle
// (see WithLeaseIdle) after the last call that carried it; until done is
// called, a goroutine renews it with a cheap call carrying the lease four
// times per idle period, however long the work runs. And it expires
// DefaultLeaseExpiration after creation (see WithLeaseExpiration), which is
// the only bound against containerd, where the idle label means nothing.
//
// If ctx already carries a lease, it is returned as is with a done that does
// nothing: the outer lease already protects the work, and whoever made it
// deletes it.
func (c *Client) WithLease(ctx context.Context, opts ...LeaseOpt) (context.Context, func(context.Context) error, error) {
	nop := func(context.Context) error { return nil }
	if _, ok := leases.FromContext(ctx); ok {
		return ctx, nop, nil
	}
	cfg := leaseConfig{labels: map[string]string{}, expiration: DefaultLeaseExpiration, idle: DefaultLeaseIdle}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.expiration > 0 {
		cfg.labels[leases.ExpireLabel] = time.Now().Add(cfg.expiration).UTC().Format(time.RFC3339)
	}
	if cfg.idle > 0 {
		cfg.labels[leases.IdleExpireLabel] = cfg.idle.String()
	}
	m := c.LeasesService()
	l, err := m.Create(ctx, cfg.id, cfg.labels)
	if err != nil {
		return ctx, nop, err
	}
	stop := func() {}
	if cfg.idle > 0 {
		stop = c.renewLease(ctx, m, l.ID, cfg.idle)
	}
	// done is often called with a fresh context (the work's may be
	// cancelled by then): remember where the lease lives.
	ns, hasNS := c.namespace(ctx)
	done := func(dctx context.Context) error {
		stop()
		if _, ok := namespaces.Namespace(dctx); !ok && hasNS {
			dctx = namespaces.WithNamespace(dctx, ns)
		}
		return m.Delete(dctx, l.ID, false)
	}
	return leases.WithLease(ctx, l.ID), done, nil
}

// renewLease keeps lease id from idle expiry until the returned stop is
// called: every quarter of the idle period it lists the lease's resources
// with the lease in the call's headers, which hulld counts as a use. The
// leases API has no call to renew a lease, and this one works against
// containerd as well, where it is merely a cheap read. It gives up once the
// lease is gone or the client is closed. It runs apart from ctx's
// cancellation: the lease lives until done, whatever happens to the
// context of the work that took it. stop waits for the goroutine to end.
func (c *Client) renewLease(ctx context.Context, m leases.Manager, id string, idle time.Duration) (stop func()) {
	hctx, cancel := context.WithCancel(leases.WithLease(context.WithoutCancel(ctx), id))
	every := max(idle/4, 10*time.Millisecond)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
			}
			// A renewal that hangs (a daemon restarting) must not delay
			// the next one.
			cctx, ccancel := context.WithTimeout(hctx, every)
			_, err := m.ListResources(cctx, id)
			ccancel()
			if errdefs.IsNotFound(err) || c.closed() {
				return
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { cancel(); wg.Wait() }) }
}

// GarbageCollect runs a garbage collection now and waits for it. The API has
// no call of its own for this (as in containerd); deleting a lease with sync
// set runs one, so this creates a short-lived lease and deletes it that way.
//
// On a disk too full for hulld to record even that lease, it asks for the
// sync deletion of the lease it could not create: hulld runs the collection
// for a sync delete also when the lease is not found, and the NotFound that
// follows is the expected answer. (containerd answers NotFound without
// collecting: against it, on a full disk, this reports success without
// having collected.)
func (c *Client) GarbageCollect(ctx context.Context) error {
	lm := c.LeasesService()
	id := "hull-gc-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	l, err := lm.Create(ctx, id, nil)
	if errdefs.IsResourceExhausted(err) {
		if derr := lm.Delete(ctx, id, true); !errdefs.IsNotFound(derr) {
			return derr
		}
		return nil
	}
	if err != nil {
		return err
	}
	return lm.Delete(ctx, l.ID, true)
}
