package metadata

import (
	"context"
	"slices"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/mount/manager"
	"github.com/hullrt/hull/core/namespaces"
)

// activate records a complete activation name with labels, in the lease of
// ctx if it has one.
func activate(t *testing.T, ctx context.Context, db *DB, name string, labels map[string]string) manager.Record {
	t.Helper()
	r, err := db.Mounts().Reserve(ctx, name, labels)
	if err != nil {
		t.Fatal(err)
	}
	r, err = db.Mounts().Complete(ctx, name, r.ID, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mountNames(t *testing.T, ctx context.Context, db *DB) []string {
	t.Helper()
	rs, err := db.Mounts().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range rs {
		names = append(names, r.Name)
	}
	slices.Sort(names)
	return names
}

func TestMountRecordsGC(t *testing.T) {
	db := openDB(t)
	s := withNative(t, db)
	ctx := namespaces.WithNamespace(context.Background(), "ns")
	var released []string
	db.SetMountRelease(func(_ context.Context, rs []manager.Record) {
		for _, r := range rs {
			released = append(released, r.Namespace+"/"+r.Name)
		}
	})
	layer(t, ctx, s, "kept", "")
	layer(t, ctx, s, "dropped", "")
	if _, err := db.Leases().Create(ctx, "l1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Containers().Create(ctx, containers.Container{ID: "c1", Runtime: containers.RuntimeInfo{Name: "r"}, Spec: spec(`{}`)}); err != nil {
		t.Fatal(err)
	}
	// Kept by its lease; it keeps the committed snapshot "kept", which
	// nothing else references.
	leased := activate(t, leases.WithLease(ctx, "l1"), db, "leased", map[string]string{LabelGCRefSnapshot + "native": "kept"})
	if leased.Lease != "l1" {
		t.Errorf("lease recorded %q", leased.Lease)
	}
	activate(t, ctx, db, "by-container", map[string]string{"containerd.io/gc.bref.container": "c1"})
	activate(t, ctx, db, "by-missing", map[string]string{"containerd.io/gc.bref.container.x": "nosuch"})
	activate(t, ctx, db, "unheld", nil)
	// An activation being made is never collected.
	if _, err := db.Mounts().Reserve(ctx, "pending", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := mountNames(t, ctx, db), []string{"by-container", "leased", "pending"}; !slices.Equal(got, want) {
		t.Errorf("after gc: %v, want %v", got, want)
	}
	slices.Sort(released)
	if want := []string{"ns/by-missing", "ns/unheld"}; !slices.Equal(released, want) {
		t.Errorf("released %v, want %v", released, want)
	}
	if _, err := s.Stat(ctx, "kept"); err != nil {
		t.Errorf("snapshot an activation references: %v", err)
	}
	if _, err := s.Stat(ctx, "dropped"); !errdefs.IsNotFound(err) {
		t.Errorf("snapshot nothing references: %v", err)
	}

	// The lease ends: its activation goes, and the snapshot with it; the
	// container's goes with the container.
	released = nil
	if err := db.Leases().Delete(ctx, "l1", true); err != nil {
		t.Fatal(err)
	}
	if err := db.Containers().Delete(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := mountNames(t, ctx, db), []string{"pending"}; !slices.Equal(got, want) {
		t.Errorf("after the lease and the container: %v, want %v", got, want)
	}
	if _, err := s.Stat(ctx, "kept"); !errdefs.IsNotFound(err) {
		t.Errorf("snapshot of a collected activation: %v", err)
	}
	slices.Sort(released)
	if want := []string{"ns/by-container", "ns/leased"}; !slices.Equal(released, want) {
		t.Errorf("released %v, want %v", released, want)
	}
}

func TestMountRecords(t *testing.T) {
	db := openDB(t)
	ctx := namespaces.WithNamespace(context.Background(), "ns")
	other := namespaces.WithNamespace(context.Background(), "other")
	a := activate(t, ctx, db, "a", map[string]string{"k": "v", "x": "1"})
	b := activate(t, other, db, "a", nil)
	if a.ID == b.ID {
		t.Errorf("two activations share ID %d", a.ID)
	}
	if _, err := db.Mounts().Reserve(ctx, "a", nil); !errdefs.IsAlreadyExists(err) {
		t.Errorf("reserve of an existing name: %v", err)
	}
	if _, err := db.Mounts().Get(ctx, "nosuch"); !errdefs.IsNotFound(err) {
		t.Errorf("get of nothing: %v", err)
	}
	r, err := db.Mounts().UpdateLabels(ctx, "a", map[string]string{"k": "w"}, "labels.k", "labels.x")
	if err != nil || r.Labels["k"] != "w" || len(r.Labels) != 1 {
		t.Errorf("update labels: %v %v", r.Labels, err)
	}
	if _, err := db.Mounts().UpdateLabels(ctx, "a", nil, "system"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("update of a field other than labels: %v", err)
	}
	activate(t, ctx, db, "b", map[string]string{"k": "z"})
	rs, err := db.Mounts().List(ctx, "labels.k==w", "name==b")
	if err != nil || len(rs) != 2 {
		t.Errorf("list with filters: %v %v", rs, err)
	}
	if rs, err := db.Mounts().List(ctx, "name==a"); err != nil || len(rs) != 1 || rs[0].Name != "a" {
		t.Errorf("list by name: %v %v", rs, err)
	}
	all, err := db.Mounts().All(ctx)
	if err != nil || len(all) != 3 {
		t.Errorf("all: %v %v", all, err)
	}
	if err := db.Mounts().Delete(ctx, "a", a.ID+100); !errdefs.IsNotFound(err) {
		t.Errorf("delete with another ID: %v", err)
	}
	if err := db.Mounts().Delete(ctx, "a", a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Mounts().Get(other, "a"); err != nil {
		t.Errorf("the other namespace's activation: %v", err)
	}
}
