package leases

import (
	"context"
	"fmt"
	"github.com/hullrt/hull/internal/servicetest"
	"maps"
	"slices"
	"testing"
	"time"

	api "github.com/containerd/containerd/api/services/leases/v1"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	coreleases "github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/plugins/services"
)

// newClient serves the leases adapter, built by its registrations over a
// metadata store, and returns a client and the leases service plugin.
func newClient(t *testing.T) (api.LeasesClient, coreleases.Manager) {
	t.Helper()
	db := servicetest.OpenDB(t)
	set := &plugin.Set{}
	set.Add(&plugin.Plugin{Registration: &plugin.Registration{Type: plugin.MetadataPlugin, ID: "bolt"}, Instance: db})
	reg := &plugin.Registry{}
	Register(reg)
	var (
		svc   services.GRPCService
		local coreleases.Manager
	)
	for _, r := range reg.Graph(nil) {
		p := set.Init(r, &plugin.InitContext{Context: t.Context()})
		if p.Err != nil {
			t.Fatal(p.Err)
		}
		switch inst := p.Instance.(type) {
		case services.GRPCService:
			svc = inst
		case coreleases.Manager:
			local = inst
		}
	}
	return api.NewLeasesClient(servicetest.Serve(t, svc)), local
}

func TestLeases(t *testing.T) {
	c, _ := newClient(t)
	ctx := servicetest.ClientCtx(t, "ns1")
	before := time.Now().Add(-time.Second)

	cr, err := c.Create(ctx, &api.CreateRequest{ID: "l1", Labels: map[string]string{"a": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if l := cr.Lease; l.ID != "l1" || !maps.Equal(l.Labels, map[string]string{"a": "1"}) || l.CreatedAt.AsTime().Before(before) {
		t.Errorf("created %v", l)
	}
	_, err = c.Create(ctx, &api.CreateRequest{ID: "l1"})
	servicetest.WantCode(t, err, codes.AlreadyExists, `"l1"`)
	_, err = c.Create(ctx, &api.CreateRequest{ID: "l2", Labels: map[string]string{coreleases.ExpireLabel: "tomorrow"}})
	servicetest.WantCode(t, err, codes.InvalidArgument, `"l2"`, "tomorrow")

	// A lease without an ID gets a random one, over gRPC too.
	anon, err := c.Create(ctx, &api.CreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := uuid.Parse(anon.Lease.ID); err != nil {
		t.Errorf("lease created without an id has id %q, not a UUID", anon.Lease.ID)
	}

	list, err := c.List(ctx, &api.ListRequest{Filters: []string{"labels.a==1"}})
	if err != nil || len(list.Leases) != 1 || list.Leases[0].ID != "l1" || list.Leases[0].Labels["a"] != "1" || list.Leases[0].CreatedAt == nil {
		t.Fatalf("list: %v, %v", list, err)
	}
	if list, err := c.List(servicetest.ClientCtx(t, "ns2"), &api.ListRequest{}); err != nil || len(list.Leases) != 0 {
		t.Errorf("another namespace lists %v, %v", list, err)
	}
	_, err = c.List(ctx, &api.ListRequest{Filters: []string{"id~=["}})
	servicetest.WantCode(t, err, codes.InvalidArgument, "id~=[")

	res := []*api.Resource{{ID: "sha256:" + fmt.Sprintf("%064x", 1), Type: "content"}, {ID: "k1", Type: "snapshots/native"}}
	for _, r := range res {
		if _, err := c.AddResource(ctx, &api.AddResourceRequest{ID: "l1", Resource: r}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = c.AddResource(ctx, &api.AddResourceRequest{ID: "l1", Resource: &api.Resource{ID: "x", Type: "bogus"}})
	servicetest.WantCode(t, err, codes.InvalidArgument, `"bogus"`)
	_, err = c.AddResource(ctx, &api.AddResourceRequest{ID: "nope", Resource: res[0]})
	servicetest.WantCode(t, err, codes.NotFound, `"nope"`)

	rs, err := c.ListResources(ctx, &api.ListResourcesRequest{ID: "l1"})
	if err != nil {
		t.Fatal(err)
	}
	key := func(r *api.Resource) string { return r.Type + " " + r.ID }
	var got, want []string
	for _, r := range rs.Resources {
		got = append(got, key(r))
	}
	for _, r := range res {
		want = append(want, key(r))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("resources %v, want %v", got, want)
	}

	if _, err := c.DeleteResource(ctx, &api.DeleteResourceRequest{ID: "l1", Resource: res[1]}); err != nil {
		t.Fatal(err)
	}
	rs, err = c.ListResources(ctx, &api.ListResourcesRequest{ID: "l1"})
	if err != nil || len(rs.Resources) != 1 || key(rs.Resources[0]) != key(res[0]) {
		t.Errorf("resources after delete: %v, %v", rs, err)
	}
	_, err = c.ListResources(ctx, &api.ListResourcesRequest{ID: "nope"})
	servicetest.WantCode(t, err, codes.NotFound, `"nope"`)

	if _, err := c.Delete(ctx, &api.DeleteRequest{ID: "l1", Sync: true}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Delete(ctx, &api.DeleteRequest{ID: "l1"})
	servicetest.WantCode(t, err, codes.NotFound, `"l1"`)
}

func TestServicePluginGeneratesIDs(t *testing.T) {
	// In-process callers of the service plugin get the random ID too; an
	// ID given is kept.
	_, local := newClient(t)
	ctx := namespaces.WithNamespace(t.Context(), "ns1")
	l, err := local.Create(ctx, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := uuid.Parse(l.ID); err != nil {
		t.Errorf("id %q is not a UUID", l.ID)
	}
	if l, err := local.Create(ctx, "named", nil); err != nil || l.ID != "named" {
		t.Errorf("create named: %v, %v", l, err)
	}
}

// recordingManager fails every call with err, naming its arguments, and
// records the sync flag of Delete.
type recordingManager struct {
	err  error
	sync bool
}

func (m *recordingManager) Create(ctx context.Context, id string, labels map[string]string) (coreleases.Lease, error) {
	return coreleases.Lease{}, fmt.Errorf("create %q: %w", id, m.err)
}
func (m *recordingManager) Delete(ctx context.Context, id string, sync bool) error {
	m.sync = sync
	return fmt.Errorf("delete %q: %w", id, m.err)
}
func (m *recordingManager) List(ctx context.Context, filters ...string) ([]coreleases.Lease, error) {
	return nil, fmt.Errorf("list %q: %w", filters, m.err)
}
func (m *recordingManager) AddResource(ctx context.Context, id string, r coreleases.Resource) error {
	return fmt.Errorf("add %s %q to %q: %w", r.Type, r.ID, id, m.err)
}
func (m *recordingManager) DeleteResource(ctx context.Context, id string, r coreleases.Resource) error {
	return fmt.Errorf("remove %s %q from %q: %w", r.Type, r.ID, id, m.err)
}
func (m *recordingManager) ListResources(ctx context.Context, id string) ([]coreleases.Resource, error) {
	return nil, fmt.Errorf("resources of %q: %w", id, m.err)
}

func TestErrorCodes(t *testing.T) {
	for _, tc := range servicetest.ErrorClasses {
		t.Run(tc.Code.String(), func(t *testing.T) {
			m := &recordingManager{err: tc.Class}
			c := api.NewLeasesClient(servicetest.Serve(t, &leasesService{manager: m}))
			ctx := servicetest.ClientCtx(t, "ns1")
			_, err := c.Create(ctx, &api.CreateRequest{ID: "c1"})
			servicetest.WantCode(t, err, tc.Code, `"c1"`)
			_, err = c.Delete(ctx, &api.DeleteRequest{ID: "d1", Sync: true})
			servicetest.WantCode(t, err, tc.Code, `"d1"`)
			if !m.sync {
				t.Error("Delete's sync flag did not reach the manager")
			}
			_, err = c.List(ctx, &api.ListRequest{Filters: []string{"id==l1"}})
			servicetest.WantCode(t, err, tc.Code, "id==l1")
			r := &api.Resource{ID: "r1", Type: "content"}
			_, err = c.AddResource(ctx, &api.AddResourceRequest{ID: "a1", Resource: r})
			servicetest.WantCode(t, err, tc.Code, `content "r1" to "a1"`)
			_, err = c.DeleteResource(ctx, &api.DeleteResourceRequest{ID: "a2", Resource: r})
			servicetest.WantCode(t, err, tc.Code, `content "r1" from "a2"`)
			_, err = c.ListResources(ctx, &api.ListResourcesRequest{ID: "a3"})
			servicetest.WantCode(t, err, tc.Code, `"a3"`)
		})
	}
}
