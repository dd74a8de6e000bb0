package compat

import (
	"context"
	"errors"
	"strings"
	"testing"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// containerd 2.4.2's Go client maps hulld's errors back to errdefs classes
// from the code and the message, as it does containerd's: every not-found
// is errdefs.NotFound and says so once; a namespace that cannot go is a
// FailedPrecondition naming what it holds; an invalid namespace name is an
// InvalidArgument naming it.
func TestErrorsKeepTheirClass(t *testing.T) {
	d := startHulld(t)
	c, err := containerd.New(d.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := namespaces.WithNamespace(context.Background(), "errors")

	once := func(what string, err error, class error, words string) {
		t.Helper()
		if !errors.Is(err, class) {
			t.Errorf("%s: %v is not %v", what, err, class)
			return
		}
		msg := err.Error()
		if !strings.HasSuffix(msg, ": "+class.Error()) || strings.Count(msg, class.Error()) != 1 || !strings.Contains(msg, words) {
			t.Errorf("%s: message %q does not name %s and end with %q once", what, msg, words, class)
		}
	}
	_, err = c.ContainerService().Get(ctx, "nosuch")
	once("container", err, errdefs.ErrNotFound, `"nosuch"`)
	_, err = c.ImageService().Get(ctx, "nosuch")
	once("image", err, errdefs.ErrNotFound, `"nosuch"`)
	err = c.LeasesService().Delete(ctx, leases.Lease{ID: "nosuch"})
	once("lease", err, errdefs.ErrNotFound, `"nosuch"`)
	dg := digest.FromString("nothing")
	_, err = c.ContentStore().Info(ctx, dg)
	once("content", err, errdefs.ErrNotFound, dg.String())
	_, err = c.SnapshotService("native").Stat(ctx, "nosuch")
	once("snapshot", err, errdefs.ErrNotFound, "nosuch")
	_, err = c.NamespaceService().Labels(ctx, "never")
	once("namespace", err, errdefs.ErrNotFound, `"never"`)

	// Namespaces as containerd 2.x: SetLabel creates, Delete takes the
	// leases and refuses a snapshot.
	ns := c.NamespaceService()
	if err := ns.SetLabel(ctx, "labelled", "a", "1"); err != nil {
		t.Fatalf("SetLabel of a missing namespace: %v", err)
	}
	if l, err := ns.Labels(ctx, "labelled"); err != nil || l["a"] != "1" {
		t.Fatalf("labels: %v %v", l, err)
	}
	err = ns.SetLabel(ctx, "bad/name", "a", "1")
	once("invalid namespace", err, errdefs.ErrInvalidArgument, `"bad/name"`)
	lctx := namespaces.WithNamespace(ctx, "labelled")
	if _, err := c.LeasesService().Create(lctx, leases.WithRandomID()); err != nil {
		t.Fatal(err)
	}
	if err := ns.Delete(ctx, "labelled"); err != nil {
		t.Fatalf("delete of a namespace holding a lease: %v", err)
	}
	sctx := namespaces.WithNamespace(ctx, "snapped")
	if _, err := c.SnapshotService("native").Prepare(sctx, "active", "", snapshots.WithLabels(map[string]string{"x": "y"})); err != nil {
		t.Fatal(err)
	}
	err = ns.Delete(ctx, "snapped")
	once("namespace with a snapshot", err, errdefs.ErrFailedPrecondition, `namespace "snapped" must be empty, but it still has snapshots on "native" snapshotter`)
	if err := c.SnapshotService("native").Remove(sctx, "active"); err != nil {
		t.Fatal(err)
	}
	if err := ns.Delete(ctx, "snapped"); err != nil {
		t.Fatalf("delete once empty: %v", err)
	}
}
