package compat

import (
	"context"
	"testing"

	api "github.com/containerd/containerd/api/services/sandbox/v1"
	"github.com/containerd/containerd/v2/core/sandbox"
	"github.com/containerd/containerd/v2/core/sandbox/proxy"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
)

// TestSandboxStoreWithContainerdsClient drives hulld's sandbox store with
// containerd v2.4.2's own client of it, the one `ctr sandboxes ls`, create
// and rm use: records round-trip, filters select, and errors keep their
// class across the wire.
func TestSandboxStoreWithContainerdsClient(t *testing.T) {
	d := startHulld(t)
	store := proxy.NewSandboxStore(api.NewStoreClient(dial(t, d.Address)))
	ctx := namespaces.WithNamespace(context.Background(), "compat")

	created, err := store.Create(ctx, sandbox.Sandbox{
		ID:        "pod-a",
		Labels:    map[string]string{"app": "web"},
		Runtime:   sandbox.RuntimeOpts{Name: "io.containerd.runc.v2"},
		Sandboxer: "podsandbox",
	})
	if err != nil {
		t.Fatal(err)
	}
	if created.CreatedAt.IsZero() || created.UpdatedAt.IsZero() {
		t.Fatalf("the store set no times: %+v", created)
	}
	if _, err := store.Create(ctx, sandbox.Sandbox{ID: "pod-b", Runtime: sandbox.RuntimeOpts{Name: "io.containerd.hull.v2"}, Sandboxer: "podsandbox"}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(ctx, sandbox.Sandbox{ID: "pod-a", Sandboxer: "podsandbox"}); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("a second pod-a: %v; want AlreadyExists", err)
	}

	all, err := store.List(ctx) // what `ctr sandboxes ls` asks
	if err != nil || len(all) != 2 {
		t.Fatalf("List: %d sandboxes, %v", len(all), err)
	}
	web, err := store.List(ctx, "labels.app==web")
	if err != nil || len(web) != 1 || web[0].ID != "pod-a" || web[0].Runtime.Name != "io.containerd.runc.v2" {
		t.Fatalf("List by label: %+v, %v", web, err)
	}

	updated, err := store.Update(ctx, sandbox.Sandbox{ID: "pod-a", Labels: map[string]string{"tier": "front"}}, "labels.tier")
	if err != nil || updated.Labels["tier"] != "front" || updated.Labels["app"] != "web" {
		t.Fatalf("Update labels.tier: %+v, %v", updated, err)
	}
	got, err := store.Get(ctx, "pod-a")
	if err != nil || got.Labels["tier"] != "front" || got.Sandboxer != "podsandbox" {
		t.Fatalf("Get: %+v, %v", got, err)
	}

	if err := store.Delete(ctx, "pod-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get(ctx, "pod-a"); !errdefs.IsNotFound(err) {
		t.Fatalf("Get of a deleted sandbox: %v; want NotFound", err)
	}
	if err := store.Delete(ctx, "pod-a"); !errdefs.IsNotFound(err) {
		t.Fatalf("second Delete: %v; want NotFound", err)
	}
	other, err := store.List(namespaces.WithNamespace(context.Background(), "elsewhere"))
	if err != nil || len(other) != 0 {
		t.Fatalf("another namespace sees %d sandboxes (%v)", len(other), err)
	}
	if err := store.Delete(ctx, "pod-b"); err != nil {
		t.Fatal(err)
	}
}
