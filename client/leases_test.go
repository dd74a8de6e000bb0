package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/internal/hulltest"
)

func hasLease(t *testing.T, ctx context.Context, c *client.Client, id string) bool {
	t.Helper()
	ls, err := c.LeasesService().List(ctx)
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

// WithLease's lease outlives its idle period for as long as the work runs,
// because the client renews it, while a lease with the same idle period
// that nobody renews is collected; done removes it.
func TestWithLeaseIsRenewedUntilDone(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	c := newClient(t, d)
	ctx := testCtx(t)
	// Long enough against a loaded machine: a renewal comes every
	// half second, four per period.
	const idle = 2 * time.Second
	lctx, done, err := c.WithLease(ctx, client.WithLeaseIdle(idle))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := leases.FromContext(lctx)
	ls, err := c.LeasesService().List(ctx, "id=="+id)
	if err != nil || len(ls) != 1 {
		t.Fatalf("list lease %s: %v, %v", id, ls, err)
	}
	if ls[0].Labels[leases.IdleExpireLabel] != idle.String() || ls[0].Labels[leases.ExpireLabel] == "" {
		t.Errorf("lease labels %v: want %s=%s and an expiry for containerd", ls[0].Labels, leases.IdleExpireLabel, idle)
	}
	if _, err := c.LeasesService().Create(ctx, "unrenewed", map[string]string{leases.IdleExpireLabel: idle.String()}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	hulltest.Eventually(t, 30*time.Second, "the unrenewed lease to be collected", func() error {
		if hasLease(t, ctx, c, "unrenewed") {
			return fmt.Errorf("still there after %v", time.Since(start))
		}
		return nil
	})
	// Three idle periods in all, the renewed lease present all along.
	hulltest.Eventually(t, 30*time.Second, "three idle periods with the renewed lease", func() error {
		if !hasLease(t, ctx, c, id) {
			t.Fatalf("the renewed lease was collected after %v", time.Since(start))
		}
		if time.Since(start) < 3*idle {
			return fmt.Errorf("%v passed", time.Since(start))
		}
		return nil
	})
	if err := done(ctx); err != nil {
		t.Fatal(err)
	}
	if hasLease(t, ctx, c, id) {
		t.Error("lease still there after done")
	}
}

// A client that dies without calling done (a pull killed during its
// unpack) stops renewing: its lease, and what the lease held, blobs and
// half-written snapshots, go one idle period later, not a day later.
func TestWithLeaseOfADeadClientIsCollected(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	c := newClient(t, d)
	ctx := testCtx(t)
	dying, err := client.New(d.Address)
	if err != nil {
		t.Fatal(err)
	}
	lctx, _, err := dying.WithLease(ctx, client.WithLeaseIdle(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := leases.FromContext(lctx)
	data := []byte("half a pull")
	w, err := dying.ContentStore().Writer(lctx, content.WithRef("interrupted"))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Commit(lctx, int64(len(data)), digest.FromBytes(data)); err != nil {
		t.Fatal(err)
	}
	// And an unpack it had begun: a snapshot half written.
	sn, err := dying.DefaultSnapshotter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dying.SnapshotService(sn).Prepare(lctx, "extract-interrupted", ""); err != nil {
		t.Fatal(err)
	}
	dying.Close() // done is never called
	hulltest.Eventually(t, 30*time.Second, "the dead client's lease to be collected", func() error {
		if hasLease(t, ctx, c, id) {
			return fmt.Errorf("lease %s still there", id)
		}
		return nil
	})
	hulltest.Eventually(t, 30*time.Second, "the dead client's blob and snapshot to be collected", func() error {
		if _, err := c.ContentStore().Info(ctx, digest.FromBytes(data)); !errdefs.IsNotFound(err) {
			return fmt.Errorf("blob: %v", err)
		}
		if _, err := c.SnapshotService(sn).Stat(ctx, "extract-interrupted"); !errdefs.IsNotFound(err) {
			return fmt.Errorf("snapshot: %v", err)
		}
		return nil
	})
}
