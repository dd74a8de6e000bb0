package metadata

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/internal/hulltest"
)

// fakeClock is the clock of lease expiry in tests that move time by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// withFakeClock makes db's lease expiry run on a clock the test moves,
// starting now, as if the database had just been opened.
func withFakeClock(db *DB) *fakeClock {
	c := &fakeClock{t: time.Now()}
	db.now = c.now
	db.use.mu.Lock()
	db.use.opened = c.t
	db.use.mu.Unlock()
	return c
}

func leaseExists(t *testing.T, ctx context.Context, db *DB, id string) bool {
	t.Helper()
	ls, err := db.Leases().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if l.ID == id {
			return true
		}
	}
	return false
}

func gc(t *testing.T, ctx context.Context, db *DB) GCStats {
	t.Helper()
	st, err := db.GarbageCollect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// A lease with an idle expiry lives while it is used and is collected, with
// what it holds, once it has not been used for its idle period.
func TestIdleLeaseExpiresAfterItsLastUse(t *testing.T) {
	db := openDB(t)
	clock := withFakeClock(db)
	ctx := namespaces.WithNamespace(context.Background(), "idle")
	if _, err := db.Leases().Create(ctx, "pull", map[string]string{leases.IdleExpireLabel: "3m"}); err != nil {
		t.Fatal(err)
	}
	lctx := leases.WithLease(ctx, "pull")
	blob := put(t, lctx, db, "layer", nil)

	clock.advance(2 * time.Minute)
	gc(t, ctx, db)
	if !leaseExists(t, ctx, db, "pull") || !exists(ctx, db, blob) {
		t.Fatal("lease or its blob collected 2m into a 3m idle period")
	}
	// Any call carrying the lease is a use.
	if _, err := db.Content().Info(lctx, blob); err != nil {
		t.Fatal(err)
	}
	clock.advance(2 * time.Minute) // 4m after creation, 2m after the use
	gc(t, ctx, db)
	if !leaseExists(t, ctx, db, "pull") {
		t.Fatal("lease collected 2m after its last use")
	}
	clock.advance(time.Minute + time.Second) // 3m1s after the use
	st := gc(t, ctx, db)
	if leaseExists(t, ctx, db, "pull") {
		t.Fatal("lease kept 3m1s after its last use")
	}
	if st.LeasesExpired != 1 || exists(ctx, db, blob) {
		t.Errorf("stats %+v, blob still recorded: %v; want the lease and its blob collected", st, exists(ctx, db, blob))
	}
	if _, err := db.Backend().Info(ctx, blob); !errdefs.IsNotFound(err) {
		t.Errorf("blob file still on disk: %v", err)
	}
}

// An operation in flight (here a content writer left open between writes)
// keeps its lease however long it takes; the idle period starts when it
// ends.
func TestIdleLeaseKeptWhileInUse(t *testing.T) {
	db := openDB(t)
	clock := withFakeClock(db)
	ctx := namespaces.WithNamespace(context.Background(), "idle")
	if _, err := db.Leases().Create(ctx, "slow", map[string]string{leases.IdleExpireLabel: "1m"}); err != nil {
		t.Fatal(err)
	}
	w, err := db.Content().Writer(leases.WithLease(ctx, "slow"), content.WithRef("slow-layer"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write([]byte("first half"))
	clock.advance(10 * time.Minute)
	gc(t, ctx, db)
	if !leaseExists(t, ctx, db, "slow") {
		t.Fatal("lease of an open writer collected")
	}
	if _, err := w.Write([]byte(", second half")); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx, 0, ""); err != nil {
		t.Fatal(err)
	}
	dgst := digest.FromString("first half, second half")
	clock.advance(59 * time.Second)
	gc(t, ctx, db)
	if !leaseExists(t, ctx, db, "slow") || !exists(ctx, db, dgst) {
		t.Fatal("lease or blob collected within the idle period after the writer ended")
	}
	clock.advance(2 * time.Second)
	gc(t, ctx, db)
	if leaseExists(t, ctx, db, "slow") || exists(ctx, db, dgst) {
		t.Fatal("lease or blob kept past the idle period after the writer ended")
	}
}

// After a restart nothing is known of past uses: every idle lease starts a
// fresh idle period, so it is kept longer, never less.
func TestIdleLeaseRestartsItsPeriodOnReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := namespaces.WithNamespace(context.Background(), "idle")
	db := openDBAt(t, dir)
	if _, err := db.Leases().Create(ctx, "old", map[string]string{leases.IdleExpireLabel: "1m"}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = openDBAt(t, dir)
	clock := withFakeClock(db)
	clock.advance(59 * time.Second)
	gc(t, ctx, db)
	if !leaseExists(t, ctx, db, "old") {
		t.Fatal("lease collected within the first idle period after reopening")
	}
	clock.advance(2 * time.Second)
	gc(t, ctx, db)
	if leaseExists(t, ctx, db, "old") {
		t.Fatal("lease kept an idle period after reopening")
	}
}

// The collector runs by itself when an idle lease is due: nothing else
// has to delete anything for the space to come back.
func TestCollectorRunsWhenIdleLeaseIsDue(t *testing.T) {
	db := openDB(t) // GCDelay is an hour: only the expiry timer can run it
	ctx := namespaces.WithNamespace(context.Background(), "idle")
	if _, err := db.Leases().Create(ctx, "dead-client", map[string]string{leases.IdleExpireLabel: "200ms"}); err != nil {
		t.Fatal(err)
	}
	blob := put(t, leases.WithLease(ctx, "dead-client"), db, "held", nil)
	hulltest.Eventually(t, 10*time.Second, "the idle lease to be collected", func() error {
		if leaseExists(t, ctx, db, "dead-client") {
			return errdefs.ErrAlreadyExists
		}
		return nil
	})
	if _, err := db.Backend().Info(ctx, blob); !errdefs.IsNotFound(err) {
		t.Errorf("the idle lease's blob is still on disk: %v", err)
	}
}

// A label that is not a positive duration is refused, and leases without
// the label keep containerd's behaviour: no idle expiry at all.
func TestIdleLabelValidatedAndOptional(t *testing.T) {
	db := openDB(t)
	clock := withFakeClock(db)
	ctx := namespaces.WithNamespace(context.Background(), "idle")
	if _, err := db.Leases().Create(ctx, "bad", map[string]string{leases.IdleExpireLabel: "0s"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("create with %s=0s: %v, want InvalidArgument", leases.IdleExpireLabel, err)
	}
	if _, err := db.Leases().Create(ctx, "plain", nil); err != nil {
		t.Fatal(err)
	}
	clock.advance(1000 * time.Hour)
	gc(t, ctx, db)
	if !leaseExists(t, ctx, db, "plain") {
		t.Error("a lease without labels expired")
	}
}
