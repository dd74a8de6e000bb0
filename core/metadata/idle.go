package metadata

import (
	"context"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/namespaces"
)

// leaseUse tracks, in memory, when each lease was last used and how many
// operations are using it now, for leases.IdleExpireLabel. In memory
// because writing a time to the database on every request that carries a
// lease would double the writes of a pull; the price is that a restart
// forgets it, and every lease then counts as used when the database was
// opened, which only keeps leases longer.
type leaseUse struct {
	mu     sync.Mutex
	last   map[leaseKey]time.Time
	active map[leaseKey]int
	opened time.Time
}

type leaseKey struct{ ns, id string }

// touch records a use of lease id of namespace ns now.
func (u *leaseUse) touch(ns, id string, now time.Time) {
	u.mu.Lock()
	if u.last == nil {
		u.last = map[leaseKey]time.Time{}
	}
	u.last[leaseKey{ns, id}] = now
	u.mu.Unlock()
}

// hold counts an operation using the lease until the returned func, which
// counts as a use when it ends.
func (u *leaseUse) hold(ns, id string, now func() time.Time) func() {
	k := leaseKey{ns, id}
	u.mu.Lock()
	if u.active == nil {
		u.active = map[leaseKey]int{}
	}
	u.active[k]++
	u.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			u.mu.Lock()
			if u.active[k]--; u.active[k] <= 0 {
				delete(u.active, k)
			}
			if u.last == nil {
				u.last = map[leaseKey]time.Time{}
			}
			u.last[k] = now()
			u.mu.Unlock()
		})
	}
}

// idleSince returns when lease id was last used, and false if an operation
// is using it now.
func (u *leaseUse) idleSince(ns, id string) (time.Time, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	k := leaseKey{ns, id}
	if u.active[k] > 0 {
		return time.Time{}, false
	}
	last := u.last[k]
	if last.Before(u.opened) {
		last = u.opened
	}
	return last, true
}

// prune drops what is known of leases not in alive that were last used
// before since: those the collection that began at since found expired or
// missing. Uses after since are kept, as they may be of leases created since.
func (u *leaseUse) prune(alive map[leaseKey]bool, since time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for k, t := range u.last {
		if !alive[k] && t.Before(since) {
			delete(u.last, k)
		}
	}
}

// forget drops what is known of a deleted lease.
func (u *leaseUse) forget(ns, id string) {
	u.mu.Lock()
	delete(u.last, leaseKey{ns, id})
	u.mu.Unlock()
}

// useLease records that ctx's operation uses the lease it carries, if any.
func (db *DB) useLease(ctx context.Context, ns string) {
	if id, ok := leases.FromContext(ctx); ok {
		db.use.touch(ns, id, db.now())
	}
}

// HoldLease keeps the lease that ctx carries from idle expiry until the
// returned func is called: for operations that use a lease for long without
// calling the metadata store, such as applying a layer or streaming a blob.
// Without a lease in ctx it holds nothing.
func (db *DB) HoldLease(ctx context.Context) func() {
	id, ok := leases.FromContext(ctx)
	ns, nsok := namespaces.Namespace(ctx)
	if !ok || !nsok {
		return func() {}
	}
	return db.use.hold(ns, id, db.now)
}

// leaseExpiry returns when the lease with labels, last used as use knows,
// expires by either of its labels; zero if it never does.
func (db *DB) leaseExpiry(ns, id string, labels map[string]string) time.Time {
	var at time.Time
	if v, ok := labels[leases.ExpireLabel]; ok {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			at = t
		}
	}
	if idle, ok, err := leases.IdleTimeout(labels); ok && err == nil {
		if since, idleNow := db.use.idleSince(ns, id); idleNow {
			if t := since.Add(idle); at.IsZero() || t.Before(at) {
				at = t
			}
		} else if at.IsZero() {
			// In use now: the earliest it can expire is one idle period
			// after the use ends, so look again then.
			at = db.now().Add(idle)
		}
	}
	return at
}

// noteExpiry tells the collector that something may expire at t, so that
// it runs then if nothing earlier makes it run.
func (db *DB) noteExpiry(t time.Time) {
	if t.IsZero() {
		return
	}
	db.expiryMu.Lock()
	lowered := db.nextExpiry.IsZero() || t.Before(db.nextExpiry)
	if lowered {
		db.nextExpiry = t
	}
	db.expiryMu.Unlock()
	if lowered {
		select {
		case db.gcWake <- struct{}{}:
		default:
		}
	}
}

// scanExpiries sets the collector's next expiry from every lease in the
// database, as the collection does after each run. Only idle expiry is
// scheduled: leases with no more than containerd's expiry label are
// collected by whatever collection comes after their time, as in containerd.
func (db *DB) scanExpiries() error {
	next := time.Time{}
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketV1).ForEachBucket(func(ns []byte) error {
			return forEachRecord(tx.Bucket(bucketV1).Bucket(ns).Bucket(bucketLeases), func(id string, r *leaseRecord) error {
				if _, idle := r.Labels[leases.IdleExpireLabel]; !idle {
					return nil
				}
				if t := db.leaseExpiry(string(ns), id, r.Labels); !t.IsZero() && (next.IsZero() || t.Before(next)) {
					next = t
				}
				return nil
			})
		})
	})
	db.setNextExpiry(next)
	return err
}

// setNextExpiry replaces the collector's next expiry (after a collection,
// which saw every lease).
func (db *DB) setNextExpiry(t time.Time) {
	db.expiryMu.Lock()
	db.nextExpiry = t
	db.expiryMu.Unlock()
	select {
	case db.gcWake <- struct{}{}:
	default:
	}
}

func (db *DB) expiryDue() time.Time {
	db.expiryMu.Lock()
	defer db.expiryMu.Unlock()
	return db.nextExpiry
}
