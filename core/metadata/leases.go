package metadata

import (
	"context"
	"fmt"
	bolt "go.etcd.io/bbolt"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/hullrt/hull/core/filters"
	"github.com/hullrt/hull/core/labels"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/namespaces"
)

// Leases returns the lease manager.
func (db *DB) Leases() leases.Manager { return leaseStore{db} }

type leaseStore struct{ db *DB }

var _ leases.Manager = leaseStore{}

type leaseRecord struct {
	CreatedAt time.Time         `json:"created"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Resources maps a resource type to the IDs held, in records written
	// by earlier versions; a lease's resources are now keys of its bucket
	// under bucketLeaseResources, so that adding one to a lease holding
	// hundreds (a pull of many layers) does not rewrite them all.
	Resources map[string][]string `json:"resources,omitempty"`
}

// leaseResourceKey is the key of resource (typ, id) in a lease's bucket.
func leaseResourceKey(typ, id string) []byte { return []byte(typ + "\x00" + id) }

// forEachLeaseResource calls fn with each resource lease id holds, those
// of its record (written by earlier versions) and those of its bucket in
// nsb, once each.
func forEachLeaseResource(nsb *bolt.Bucket, id string, r *leaseRecord, fn func(typ, rid string)) error {
	seen := map[string]bool{}
	for typ, ids := range r.Resources {
		for _, rid := range ids {
			seen[typ+"\x00"+rid] = true
			fn(typ, rid)
		}
	}
	rb := leaseResourceBucket(nsb, id)
	if rb == nil {
		return nil
	}
	return rb.ForEach(func(k, _ []byte) error {
		typ, rid, ok := strings.Cut(string(k), "\x00")
		if !ok {
			return fmt.Errorf("lease %q: resource key %q has no type", id, k)
		}
		if !seen[string(k)] {
			fn(typ, rid)
		}
		return nil
	})
}

// leaseResourceBucket is the bucket of lease id's resources in nsb, nil
// when it holds none.
func leaseResourceBucket(nsb *bolt.Bucket, id string) *bolt.Bucket {
	if nsb == nil {
		return nil
	}
	all := nsb.Bucket(bucketLeaseResources)
	if all == nil {
		return nil
	}
	return all.Bucket([]byte(id))
}

// deleteLeaseResources removes lease id's bucket of resources.
func deleteLeaseResources(nsb *bolt.Bucket, id string) error {
	all := nsb.Bucket(bucketLeaseResources)
	if all == nil || all.Bucket([]byte(id)) == nil {
		return nil
	}
	return all.DeleteBucket([]byte(id))
}

func validateResource(r leases.Resource) error {
	if r.ID == "" {
		return invalid("lease resource of type %q: id must not be empty", r.Type)
	}
	switch {
	case r.Type == "content":
		return validDigest(digest.Digest(r.ID))
	case r.Type == "ingests":
		return nil
	case strings.HasPrefix(r.Type, "snapshots/") && len(r.Type) > len("snapshots/"):
		return nil
	}
	return invalid("lease resource type %q is unknown: use content, ingests or snapshots/<snapshotter>", r.Type)
}

func (s leaseStore) Create(ctx context.Context, id string, lbls map[string]string) (leases.Lease, error) {
	if id == "" {
		return leases.Lease{}, invalid("lease id must not be empty")
	}
	if err := labels.ValidateAll(lbls); err != nil {
		return leases.Lease{}, err
	}
	if v, ok := lbls[leases.ExpireLabel]; ok {
		if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
			return leases.Lease{}, invalid("lease %q: label %s=%q is not an RFC 3339 time", id, leases.ExpireLabel, v)
		}
	}
	if _, _, err := leases.IdleTimeout(lbls); err != nil {
		return leases.Lease{}, fmt.Errorf("lease %q: %w", id, err)
	}
	l := leases.Lease{ID: id, CreatedAt: time.Now().UTC(), Labels: copyLabels(lbls)}
	err := s.db.update(ctx, func(t *nsTx) error {
		b, err := t.createBucket(bucketLeases)
		if err != nil {
			return err
		}
		if b.Get([]byte(id)) != nil {
			return alreadyExists("lease %q", id)
		}
		return putRecord(b, id, &leaseRecord{CreatedAt: l.CreatedAt, Labels: l.Labels})
	})
	if err == nil {
		ns, _ := namespaces.Namespace(ctx)
		s.db.use.touch(ns, id, s.db.now())
		if _, idle := l.Labels[leases.IdleExpireLabel]; idle {
			s.db.noteExpiry(s.db.leaseExpiry(ns, id, l.Labels))
		}
	}
	return l, err
}

// Delete removes lease id. With sync it also runs a collection and waits
// for it, even when the lease is not there (and still answers NotFound):
// the caller wants what the lease held to be freed, and a lease gone by
// expiry still left it for a collection to free. Clients also use a sync
// delete of a lease that does not exist to collect when the disk is too
// full to create one.
func (s leaseStore) Delete(ctx context.Context, id string, sync bool) error {
	err := s.db.updateFreeing(ctx, func(t *nsTx) error {
		b := t.bucket(bucketLeases)
		if b == nil || b.Get([]byte(id)) == nil {
			return notFound("lease %q", id)
		}
		if err := deleteLeaseResources(t.nsBucket(), id); err != nil {
			return err
		}
		return b.Delete([]byte(id))
	})
	if errdefs.IsNotFound(err) && sync {
		if _, gcErr := s.db.GarbageCollect(ctx); gcErr != nil {
			return gcErr
		}
		return err
	}
	if err != nil {
		return err
	}
	if ns, ok := namespaces.Namespace(ctx); ok {
		s.db.use.forget(ns, id)
	}
	return s.db.collectAfterDelete(ctx, sync)
}

func (s leaseStore) List(ctx context.Context, fs ...string) ([]leases.Lease, error) {
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		return nil, err
	}
	var out []leases.Lease
	err = s.db.view(ctx, func(t *nsTx) error {
		return forEachRecord(t.bucket(bucketLeases), func(id string, r *leaseRecord) error {
			l := leases.Lease{ID: id, CreatedAt: r.CreatedAt, Labels: r.Labels}
			if filter.Match(filters.AdapterFunc(func(fp []string) (string, bool) {
				switch fp[0] {
				case "id":
					return l.ID, true
				case "labels":
					return labelField(l.Labels, fp)
				}
				return "", false
			})) {
				out = append(out, l)
			}
			return nil
		})
	})
	return out, err
}

func (s leaseStore) AddResource(ctx context.Context, id string, r leases.Resource) error {
	if err := validateResource(r); err != nil {
		return err
	}
	return s.db.update(ctx, func(t *nsTx) error { return addLeaseResource(t, id, r) })
}

func (s leaseStore) DeleteResource(ctx context.Context, id string, r leases.Resource) error {
	if err := validateResource(r); err != nil {
		return err
	}
	err := s.db.update(ctx, func(t *nsTx) error { return deleteLeaseResource(t, id, r) })
	if err == nil {
		s.db.kickGC()
	}
	return err
}

func (s leaseStore) ListResources(ctx context.Context, id string) ([]leases.Resource, error) {
	var out []leases.Resource
	err := s.db.view(ctx, func(t *nsTx) error {
		var r leaseRecord
		ok, err := getRecord(t.bucket(bucketLeases), id, &r)
		if err != nil {
			return err
		}
		if !ok {
			return notFound("lease %q", id)
		}
		return forEachLeaseResource(t.nsBucket(), id, &r, func(typ, rid string) {
			out = append(out, leases.Resource{Type: typ, ID: rid})
		})
	})
	return out, err
}

func addLeaseResource(t *nsTx, id string, res leases.Resource) error {
	b := t.bucket(bucketLeases)
	if b == nil || b.Get([]byte(id)) == nil {
		return notFound("lease %q", id)
	}
	all, err := t.createBucket(bucketLeaseResources)
	if err != nil {
		return err
	}
	rb, err := all.CreateBucketIfNotExists([]byte(id))
	if err != nil {
		return err
	}
	return rb.Put(leaseResourceKey(res.Type, res.ID), nil)
}

func deleteLeaseResource(t *nsTx, id string, res leases.Resource) error {
	b := t.bucket(bucketLeases)
	var r leaseRecord
	ok, err := getRecord(b, id, &r)
	if err != nil {
		return err
	}
	if !ok {
		return notFound("lease %q", id)
	}
	if rb := leaseResourceBucket(t.nsBucket(), id); rb != nil {
		if err := rb.Delete(leaseResourceKey(res.Type, res.ID)); err != nil {
			return err
		}
	}
	// A resource an earlier version recorded in the lease itself.
	ids := r.Resources[res.Type]
	for i, x := range ids {
		if x == res.ID {
			r.Resources[res.Type] = append(ids[:i:i], ids[i+1:]...)
			if len(r.Resources[res.Type]) == 0 {
				delete(r.Resources, res.Type)
			}
			return putRecord(b, id, &r)
		}
	}
	return nil
}
