package namespaces

import (
	"context"
	"fmt"
	"github.com/hullrt/hull/internal/servicetest"
	"maps"
	"strings"
	"testing"

	api "github.com/containerd/containerd/api/services/namespaces/v1"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/core/labels"
	"github.com/hullrt/hull/core/metadata"
	corenamespaces "github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/plugin"
)

// newClient serves the namespaces adapter, built by its registrations over
// a metadata store, and returns a client.
func newClient(t *testing.T) api.NamespacesClient {
	t.Helper()
	c, _ := newClientDB(t)
	return c
}

// newClientDB is newClient that also returns the metadata store, for tests
// that put objects in a namespace.
func newClientDB(t *testing.T) (api.NamespacesClient, *metadata.DB) {
	t.Helper()
	db := servicetest.OpenDB(t)
	svc := servicetest.Adapter(t, Register, servicetest.Dep(plugin.MetadataPlugin, "bolt", db))
	return api.NewNamespacesClient(servicetest.Serve(t, svc)), db
}

// Delete takes a namespace's leases with it and refuses while it holds
// containers, with the message containerd 2.x gives.
func TestDeleteAsContainerd2(t *testing.T) {
	c, db := newClientDB(t)
	ctx := t.Context()
	nctx := corenamespaces.WithNamespace(ctx, "leased")
	if _, err := db.Leases().Create(nctx, "l1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, &api.DeleteNamespaceRequest{Name: "leased"}); err != nil {
		t.Fatalf("delete a namespace holding a lease: %v", err)
	}
	_, err := c.Get(ctx, &api.GetNamespaceRequest{Name: "leased"})
	servicetest.WantCode(t, err, codes.NotFound, `namespace "leased": not found`)

	cctx := corenamespaces.WithNamespace(ctx, "busy")
	if _, err := db.Containers().Create(cctx, containers.Container{ID: "c1", Runtime: containers.RuntimeInfo{Name: "io.containerd.runc.v2"}, Spec: containers.NewAny("types.containerd.io/opencontainers/runtime-spec/1/Spec", []byte("{}"))}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Delete(ctx, &api.DeleteNamespaceRequest{Name: "busy"})
	servicetest.WantCode(t, err, codes.FailedPrecondition, `namespace "busy" must be empty, but it still has containers: failed precondition`)
	_, err = c.Delete(ctx, &api.DeleteNamespaceRequest{Name: "bad/name"})
	servicetest.WantCode(t, err, codes.InvalidArgument, `"bad/name"`)
}

func TestNamespaces(t *testing.T) {
	c := newClient(t)
	ctx := t.Context() // the namespaces API names its namespace in the request

	cr, err := c.Create(ctx, &api.CreateNamespaceRequest{Namespace: &api.Namespace{Name: "ns1", Labels: map[string]string{"a": "1"}}})
	if err != nil || cr.Namespace.Name != "ns1" || cr.Namespace.Labels["a"] != "1" {
		t.Fatalf("create: %v, %v", cr, err)
	}
	if _, err := c.Create(ctx, &api.CreateNamespaceRequest{Namespace: &api.Namespace{Name: "ns2"}}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Create(ctx, &api.CreateNamespaceRequest{Namespace: &api.Namespace{Name: "ns1"}})
	servicetest.WantCode(t, err, codes.AlreadyExists, `"ns1"`)
	_, err = c.Create(ctx, &api.CreateNamespaceRequest{Namespace: &api.Namespace{Name: "bad/name"}})
	servicetest.WantCode(t, err, codes.InvalidArgument, `"bad/name"`)

	get, err := c.Get(ctx, &api.GetNamespaceRequest{Name: "ns1"})
	if err != nil || get.Namespace.Name != "ns1" || !maps.Equal(get.Namespace.Labels, map[string]string{"a": "1"}) {
		t.Fatalf("get: %v, %v", get, err)
	}
	_, err = c.Get(ctx, &api.GetNamespaceRequest{Name: "nope"})
	servicetest.WantCode(t, err, codes.NotFound, `"nope"`)

	list, err := c.List(ctx, &api.ListNamespacesRequest{})
	if err != nil || len(list.Namespaces) != 2 {
		t.Fatalf("list: %v, %v", list, err)
	}
	for _, n := range list.Namespaces {
		if want := map[string]map[string]string{"ns1": {"a": "1"}, "ns2": nil}[n.Name]; !maps.Equal(n.Labels, want) {
			t.Errorf("listed %s with labels %v, want %v", n.Name, n.Labels, want)
		}
	}

	if _, err := c.Delete(ctx, &api.DeleteNamespaceRequest{Name: "ns2"}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Delete(ctx, &api.DeleteNamespaceRequest{Name: "ns2"})
	servicetest.WantCode(t, err, codes.NotFound, `"ns2"`)
}

func TestUpdate(t *testing.T) {
	c := newClient(t)
	ctx := t.Context()
	if _, err := c.Create(ctx, &api.CreateNamespaceRequest{Namespace: &api.Namespace{Name: "ns1", Labels: map[string]string{"a": "1", "b": "2"}}}); err != nil {
		t.Fatal(err)
	}
	update := func(labels map[string]string, paths ...string) (map[string]string, error) {
		req := &api.UpdateNamespaceRequest{Namespace: &api.Namespace{Name: "ns1", Labels: labels}}
		if paths != nil {
			req.UpdateMask = &fieldmaskpb.FieldMask{Paths: paths}
		}
		resp, err := c.Update(ctx, req)
		if err != nil {
			return nil, err
		}
		if resp.Namespace.Name != "ns1" {
			t.Errorf("updated %q, want ns1", resp.Namespace.Name)
		}
		return resp.Namespace.Labels, nil
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		paths  []string
		want   map[string]string
	}{
		// One key: only it changes; a key the request lacks is removed.
		{"one key", map[string]string{"a": "10", "b": "ignored"}, []string{"labels.a"}, map[string]string{"a": "10", "b": "2"}},
		{"remove a key", nil, []string{"labels.b"}, map[string]string{"a": "10"}},
		// "labels": the labels become the request's.
		{"all labels", map[string]string{"c": "3"}, []string{"labels"}, map[string]string{"c": "3"}},
		// No mask: the same.
		{"no mask", map[string]string{"d": "4", "e": "5"}, nil, map[string]string{"d": "4", "e": "5"}},
	} {
		got, err := update(tc.labels, tc.paths...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !maps.Equal(got, tc.want) {
			t.Errorf("%s: labels %v, want %v", tc.name, got, tc.want)
		}
	}

	_, err := update(nil, "name")
	servicetest.WantCode(t, err, codes.InvalidArgument, `"ns1"`, `"name"`)
	long := strings.Repeat("x", labels.MaxSize+1)
	_, err = update(map[string]string{"big": long}, "labels.big")
	servicetest.WantCode(t, err, codes.InvalidArgument, `"big"`)
	_, err = update(map[string]string{"big": long, "ok": "1"}, "labels.ok")
	servicetest.WantCode(t, err, codes.InvalidArgument, `"big"`)
	_, err = update(map[string]string{"big": long}, "labels")
	servicetest.WantCode(t, err, codes.InvalidArgument, `"big"`)
	// Nothing of the refused updates was applied.
	if got, _ := update(map[string]string{"d": "4", "e": "5"}, "labels.d"); !maps.Equal(got, map[string]string{"d": "4", "e": "5"}) {
		t.Errorf("labels after refused updates: %v", got)
	}

	// A missing namespace is created, with the labels the mask names, as
	// containerd 2.x does; under an invalid name nothing is created.
	for i, paths := range [][]string{nil, {"labels"}, {"labels.a"}} {
		name := fmt.Sprintf("new%d", i)
		req := &api.UpdateNamespaceRequest{Namespace: &api.Namespace{Name: name, Labels: map[string]string{"a": "1"}}}
		if paths != nil {
			req.UpdateMask = &fieldmaskpb.FieldMask{Paths: paths}
		}
		resp, err := c.Update(ctx, req)
		if err != nil || resp.Namespace.Name != name || !maps.Equal(resp.Namespace.Labels, map[string]string{"a": "1"}) {
			t.Fatalf("update of missing %s with mask %v: %v, %v", name, paths, resp, err)
		}
		get, err := c.Get(ctx, &api.GetNamespaceRequest{Name: name})
		if err != nil || !maps.Equal(get.Namespace.Labels, map[string]string{"a": "1"}) {
			t.Fatalf("get %s after update: %v, %v", name, get, err)
		}
	}
	// Even without labels to set.
	if _, err := c.Update(ctx, &api.UpdateNamespaceRequest{Namespace: &api.Namespace{Name: "bare"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, &api.GetNamespaceRequest{Name: "bare"}); err != nil {
		t.Fatalf("update without labels did not create the namespace: %v", err)
	}
	for _, bad := range []string{"bad/name", "", "-x"} {
		_, err := c.Update(ctx, &api.UpdateNamespaceRequest{Namespace: &api.Namespace{Name: bad, Labels: map[string]string{"a": "1"}}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels.a"}}})
		servicetest.WantCode(t, err, codes.InvalidArgument, "namespace name")
	}
	// A refused update of a missing namespace does not create it.
	_, err = c.Update(ctx, &api.UpdateNamespaceRequest{Namespace: &api.Namespace{Name: "refused", Labels: map[string]string{"big": long}}})
	servicetest.WantCode(t, err, codes.InvalidArgument, `"big"`)
	_, err = c.Get(ctx, &api.GetNamespaceRequest{Name: "refused"})
	servicetest.WantCode(t, err, codes.NotFound, `"refused"`)
	list, err := c.List(ctx, &api.ListNamespacesRequest{})
	if err != nil || len(list.Namespaces) != 5 {
		t.Fatalf("namespaces after the updates: %v, %v", list, err)
	}
}

// failingStore fails every call with err, naming its argument; Labels
// fails only for the names in bad, so that List can meet a namespace
// deleted between the listing and its labels.
type failingStore struct {
	err   error
	names []string
	bad   map[string]bool
}

func (f failingStore) Create(ctx context.Context, name string, labels map[string]string) error {
	return fmt.Errorf("create %q: %w", name, f.err)
}
func (f failingStore) Labels(ctx context.Context, name string) (map[string]string, error) {
	if f.names != nil && !f.bad[name] {
		return map[string]string{"n": name}, nil
	}
	return nil, fmt.Errorf("labels of %q: %w", name, f.err)
}
func (f failingStore) SetLabel(ctx context.Context, name, key, value string) error {
	return fmt.Errorf("set label %q of %q: %w", key, name, f.err)
}
func (f failingStore) List(ctx context.Context) ([]string, error) {
	if f.names != nil {
		return f.names, nil
	}
	return nil, fmt.Errorf("list of %q: %w", "all", f.err)
}
func (f failingStore) Delete(ctx context.Context, name string) error {
	return fmt.Errorf("delete %q: %w", name, f.err)
}

var _ corenamespaces.Store = failingStore{}

func TestListSkipsVanished(t *testing.T) {
	c := api.NewNamespacesClient(servicetest.Serve(t, &namespacesService{store: failingStore{
		err: errdefs.ErrNotFound, names: []string{"a", "gone", "b"}, bad: map[string]bool{"gone": true},
	}}))
	list, err := c.List(t.Context(), &api.ListNamespacesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range list.Namespaces {
		names = append(names, n.Name)
		if n.Labels["n"] != n.Name {
			t.Errorf("%s has labels %v", n.Name, n.Labels)
		}
	}
	if strings.Join(names, ",") != "a,b" {
		t.Errorf("listed %v, want a and b", names)
	}
}

func TestErrorCodes(t *testing.T) {
	for _, tc := range servicetest.ErrorClasses {
		t.Run(tc.Code.String(), func(t *testing.T) {
			c := api.NewNamespacesClient(servicetest.Serve(t, &namespacesService{store: failingStore{err: tc.Class}}))
			ctx := t.Context()
			_, err := c.Get(ctx, &api.GetNamespaceRequest{Name: "g1"})
			servicetest.WantCode(t, err, tc.Code, `"g1"`)
			_, err = c.List(ctx, &api.ListNamespacesRequest{})
			servicetest.WantCode(t, err, tc.Code, `"all"`)
			_, err = c.Create(ctx, &api.CreateNamespaceRequest{Namespace: &api.Namespace{Name: "c1"}})
			servicetest.WantCode(t, err, tc.Code, `"c1"`)
			_, err = c.Update(ctx, &api.UpdateNamespaceRequest{Namespace: &api.Namespace{Name: "u1"}})
			servicetest.WantCode(t, err, tc.Code, `"u1"`)
			// A store that finds the namespace but fails to set its label.
			c2 := api.NewNamespacesClient(servicetest.Serve(t, &namespacesService{store: failingStore{err: tc.Class, names: []string{"u2"}}}))
			_, err = c2.Update(ctx, &api.UpdateNamespaceRequest{Namespace: &api.Namespace{Name: "u2", Labels: map[string]string{"k": "v"}}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels.k"}}})
			servicetest.WantCode(t, err, tc.Code, `"u2"`, `"k"`)
			_, err = c.Delete(ctx, &api.DeleteNamespaceRequest{Name: "d1"})
			servicetest.WantCode(t, err, tc.Code, `"d1"`)
		})
	}
}
