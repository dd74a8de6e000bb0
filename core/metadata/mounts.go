package metadata

import (
	"context"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/hullrt/hull/core/filters"
	"github.com/hullrt/hull/core/labels"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/mount/manager"
)

// bucketMounts holds the mount manager's activation records, by name.
var bucketMounts = []byte("mounts")

// The back-reference labels of containerd 2.2's mount activations: an
// activation lives while the object a label names exists.
const (
	labelGCBackRefContainer = "containerd.io/gc.bref.container"
	labelGCBackRefContent   = "containerd.io/gc.bref.content"
	labelGCBackRefImage     = "containerd.io/gc.bref.image"
	labelGCBackRefSnapshot  = "containerd.io/gc.bref.snapshot."
)

// mountRecord is an activation as stored.
type mountRecord struct {
	ID        uint64                `json:"id"`
	Lease     string                `json:"lease,omitempty"`
	Labels    map[string]string     `json:"labels,omitempty"`
	Complete  bool                  `json:"complete,omitempty"`
	Active    []manager.ActiveMount `json:"active,omitempty"`
	System    []mount.Mount         `json:"system,omitempty"`
	CreatedAt time.Time             `json:"created"`
	UpdatedAt time.Time             `json:"updated"`
}

func (r *mountRecord) record(ns, name string) manager.Record {
	return manager.Record{
		Namespace: ns, Name: name, ID: r.ID, Lease: r.Lease, Labels: copyLabels(r.Labels),
		Complete: r.Complete, Active: r.Active, System: r.System, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}
}

// mountHooks is where the mount manager learns which activations the
// collector removed, so that it unmounts them.
type mountHooks struct {
	mu      sync.Mutex
	release func(context.Context, []manager.Record)
}

// Mounts returns the store of mount activation records.
func (db *DB) Mounts() manager.Store { return mountStore{db} }

// SetMountRelease makes the collector call release, after each collection
// that removed activations, with their records.
func (db *DB) SetMountRelease(release func(context.Context, []manager.Record)) {
	db.mountHooks.mu.Lock()
	defer db.mountHooks.mu.Unlock()
	db.mountHooks.release = release
}

// releaseMounts hands the activations a collection removed to the mount
// manager.
func (db *DB) releaseMounts(ctx context.Context, recs []manager.Record) {
	if len(recs) == 0 {
		return
	}
	db.mountHooks.mu.Lock()
	release := db.mountHooks.release
	db.mountHooks.mu.Unlock()
	if release == nil {
		db.log.Warn("gc: removed mount activations with no mount manager to unmount them", "count", len(recs))
		return
	}
	release(ctx, recs)
}

type mountStore struct{ db *DB }

var _ manager.Store = mountStore{}

func (s mountStore) Reserve(ctx context.Context, name string, lbls map[string]string) (manager.Record, error) {
	if err := labels.ValidateAll(lbls); err != nil {
		return manager.Record{}, err
	}
	lease, _ := leases.FromContext(ctx)
	var out manager.Record
	err := s.db.update(ctx, func(t *nsTx) error {
		b, err := t.createBucket(bucketMounts)
		if err != nil {
			return err
		}
		if b.Get([]byte(name)) != nil {
			return alreadyExists("mount %q", name)
		}
		// IDs name directories shared by all namespaces: one sequence.
		id, err := t.tx.Bucket(bucketV1).NextSequence()
		if err != nil {
			return err
		}
		now := time.Now().UTC()
		r := mountRecord{ID: id, Lease: lease, Labels: copyLabels(lbls), CreatedAt: now, UpdatedAt: now}
		if err := putRecord(b, name, &r); err != nil {
			return err
		}
		out = r.record(t.ns, name)
		return nil
	})
	return out, err
}

// getMount reads name's record in t; NotFound naming it if there is none.
func getMount(t *nsTx, name string) (*bolt.Bucket, mountRecord, error) {
	b := t.bucket(bucketMounts)
	var r mountRecord
	ok, err := getRecord(b, name, &r)
	if err != nil {
		return nil, r, err
	}
	if !ok {
		return nil, r, notFound("mount %q", name)
	}
	return b, r, nil
}

func (s mountStore) Complete(ctx context.Context, name string, id uint64, active []manager.ActiveMount, system []mount.Mount) (manager.Record, error) {
	var out manager.Record
	err := s.db.update(ctx, func(t *nsTx) error {
		b, r, err := getMount(t, name)
		if err != nil {
			return err
		}
		if r.ID != id {
			return notFound("mount %q with id %d", name, id)
		}
		r.Active, r.System, r.Complete, r.UpdatedAt = active, system, true, time.Now().UTC()
		if err := putRecord(b, name, &r); err != nil {
			return err
		}
		out = r.record(t.ns, name)
		return nil
	})
	return out, err
}

func (s mountStore) Get(ctx context.Context, name string) (manager.Record, error) {
	var out manager.Record
	err := s.db.view(ctx, func(t *nsTx) error {
		_, r, err := getMount(t, name)
		out = r.record(t.ns, name)
		return err
	})
	return out, err
}

func (s mountStore) UpdateLabels(ctx context.Context, name string, lbls map[string]string, fieldpaths ...string) (manager.Record, error) {
	var out manager.Record
	err := s.db.update(ctx, func(t *nsTx) error {
		b, r, err := getMount(t, name)
		if err != nil {
			return err
		}
		for _, p := range fieldpaths {
			if !applyLabelPaths(&r.Labels, lbls, p) {
				return invalid("mount %q: cannot update field %q: the fields are labels and labels.<key>", name, p)
			}
		}
		if err := labels.ValidateAll(r.Labels); err != nil {
			return err
		}
		r.UpdatedAt = time.Now().UTC()
		if err := putRecord(b, name, &r); err != nil {
			return err
		}
		out = r.record(t.ns, name)
		return nil
	})
	if err == nil {
		// A label that kept the activation or something it uses alive
		// may be gone.
		s.db.kickGC()
	}
	return out, err
}

func mountAdaptor(name string, r *mountRecord) filters.Adaptor {
	return filters.AdapterFunc(func(fp []string) (string, bool) {
		switch fp[0] {
		case "name":
			return name, true
		case "labels":
			return labelField(r.Labels, fp)
		}
		return "", false
	})
}

func (s mountStore) List(ctx context.Context, fs ...string) ([]manager.Record, error) {
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		return nil, err
	}
	var out []manager.Record
	err = s.db.view(ctx, func(t *nsTx) error {
		return forEachRecord(t.bucket(bucketMounts), func(name string, r *mountRecord) error {
			if filter.Match(mountAdaptor(name, r)) {
				out = append(out, r.record(t.ns, name))
			}
			return nil
		})
	})
	return out, err
}

func (s mountStore) Delete(ctx context.Context, name string, id uint64) error {
	return s.db.updateFreeing(ctx, func(t *nsTx) error {
		b, r, err := getMount(t, name)
		if err != nil {
			return err
		}
		if r.ID != id {
			return notFound("mount %q with id %d", name, id)
		}
		return b.Delete([]byte(name))
	})
}

func (s mountStore) All(ctx context.Context) ([]manager.Record, error) {
	var out []manager.Record
	err := s.db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketV1).ForEachBucket(func(ns []byte) error {
			return forEachRecord(tx.Bucket(bucketV1).Bucket(ns).Bucket(bucketMounts), func(name string, r *mountRecord) error {
				out = append(out, r.record(string(ns), name))
				return nil
			})
		})
	})
	return out, err
}

// collectMounts removes the namespace's activations nothing keeps: a
// complete activation lives while its lease lives (expiry tells when a
// lease ends) or while an
// object one of its back-reference labels names exists. Incomplete ones
// are being made (or were cut short by a crash, which the mount manager
// undoes when it starts) and are left alone. It returns the removed
// records, for the mount manager to unmount after the commit.
func collectMounts(nsb *bolt.Bucket, ns string, now time.Time, expiry func(id string, labels map[string]string) time.Time) ([]manager.Record, error) {
	b := nsb.Bucket(bucketMounts)
	if b == nil {
		return nil, nil
	}
	leaseAlive := func(id string) bool {
		var l leaseRecord
		ok, err := getRecord(nsb.Bucket(bucketLeases), id, &l)
		if err != nil || !ok {
			return false
		}
		t := expiry(id, l.Labels)
		return t.IsZero() || !now.After(t)
	}
	exists := func(kind []byte, key string) bool {
		kb := nsb.Bucket(kind)
		return kb != nil && kb.Get([]byte(key)) != nil
	}
	var gone []manager.Record
	err := forEachRecord(b, func(name string, r *mountRecord) error {
		if !r.Complete || (r.Lease != "" && leaseAlive(r.Lease)) {
			return nil
		}
		for k, v := range r.Labels {
			if backRef(k, labelGCBackRefContainer) && exists(bucketContainers, v) ||
				backRef(k, labelGCBackRefImage) && exists(bucketImages, v) ||
				backRef(k, labelGCBackRefContent) && exists(bucketContent, v) {
				return nil
			}
			if sn, ok := strings.CutPrefix(k, labelGCBackRefSnapshot); ok && sn != "" {
				if i := strings.IndexByte(sn, '/'); i >= 0 {
					sn = sn[:i]
				}
				if sb := nsb.Bucket(bucketSnapshots); sb != nil && sb.Bucket([]byte(sn)) != nil && sb.Bucket([]byte(sn)).Get([]byte(v)) != nil {
					return nil
				}
			}
		}
		gone = append(gone, r.record(ns, name))
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, r := range gone {
		if err := b.Delete([]byte(r.Name)); err != nil {
			return nil, err
		}
	}
	return gone, nil
}

// backRef reports whether label is prefix, or prefix followed by "." or
// "/" and a name of the caller's choosing.
func backRef(label, prefix string) bool {
	rest, ok := strings.CutPrefix(label, prefix)
	return ok && (rest == "" || rest[0] == '.' || rest[0] == '/')
}

// markMountRefs marks what the namespace's remaining activations name in
// their containerd.io/gc.ref.content* and gc.ref.snapshot.* labels: an
// active mount keeps what it uses.
func markMountRefs(nsb *bolt.Bucket, mark func(string), markSnap func(sn, key string)) error {
	return forEachRecord(nsb.Bucket(bucketMounts), func(_ string, r *mountRecord) error {
		markLabelRefs(r.Labels, mark, markSnap)
		return nil
	})
}
