package metadata

import (
	"context"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/namespaces"
)

// A lease's resources are keys of their own; those an earlier version
// recorded inside the lease record still count, for listing, for gc and
// for removal; deleting the lease removes its keys.
func TestLeaseResourcesOfBothForms(t *testing.T) {
	db := openDB(t)
	ctx := namespaces.WithNamespace(context.Background(), "ns")
	ls := db.Leases()
	if _, err := ls.Create(ctx, "l1", nil); err != nil {
		t.Fatal(err)
	}
	kept := put(t, ctx, db, "kept by the new form", nil)
	old := put(t, ctx, db, "kept by the old form", nil)
	if err := ls.AddResource(ctx, "l1", leases.Resource{Type: "content", ID: kept.String()}); err != nil {
		t.Fatal(err)
	}
	if err := ls.AddResource(ctx, "l1", leases.Resource{Type: "content", ID: kept.String()}); err != nil {
		t.Fatal(err)
	}
	// The record as an earlier version wrote it, holding old itself.
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketV1).Bucket([]byte("ns")).Bucket(bucketLeases)
		var r leaseRecord
		if _, err := getRecord(b, "l1", &r); err != nil {
			return err
		}
		r.Resources = map[string][]string{"content": {old.String(), kept.String()}}
		return putRecord(b, "l1", &r)
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := ls.ListResources(ctx, "l1")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range res {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	want := []string{kept.String(), old.String()}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("resources %v, want %v once each", ids, want)
	}
	if _, err := db.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	if !exists(ctx, db, kept) || !exists(ctx, db, old) {
		t.Fatal("gc took content the lease holds")
	}
	// Removing the old form's resource lets gc take it.
	if err := ls.DeleteResource(ctx, "l1", leases.Resource{Type: "content", ID: old.String()}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	if exists(ctx, db, old) || !exists(ctx, db, kept) {
		t.Fatalf("after removing one resource: old there %v, kept there %v", exists(ctx, db, old), exists(ctx, db, kept))
	}
	if err := ls.Delete(ctx, "l1", true); err != nil {
		t.Fatal(err)
	}
	if exists(ctx, db, kept) {
		t.Fatal("content of a deleted lease was kept")
	}
	db.bolt.View(func(tx *bolt.Tx) error {
		if leaseResourceBucket(tx.Bucket(bucketV1).Bucket([]byte("ns")), "l1") != nil {
			t.Error("the deleted lease's resources are left")
		}
		return nil
	})
	if err := ls.AddResource(ctx, "l1", leases.Resource{Type: "content", ID: kept.String()}); err == nil {
		t.Fatal("a resource was added to a deleted lease")
	}
}
