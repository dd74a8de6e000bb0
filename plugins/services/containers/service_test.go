package containers

import (
	"context"
	"fmt"
	"github.com/hullrt/hull/internal/servicetest"
	"io"
	"slices"
	"testing"

	api "github.com/containerd/containerd/api/services/containers/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	corecontainers "github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/plugin"
)

// newClient serves the containers adapter, built by its registrations over
// a metadata store, and returns a client.
func newClient(t *testing.T) api.ContainersClient {
	t.Helper()
	db := servicetest.OpenDB(t)
	svc := servicetest.Adapter(t, Register, servicetest.Dep(plugin.MetadataPlugin, "bolt", db))
	return api.NewContainersClient(servicetest.Serve(t, svc))
}

var (
	specAny = &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", Value: []byte(`{"ociVersion":"1.1.0"}`)}
	optsAny = &anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: []byte("opts")}
	extAny  = &anypb.Any{TypeUrl: "example.com/Ext", Value: []byte("ext")}
)

func record(id string) *api.Container {
	return &api.Container{
		ID: id, Labels: map[string]string{"app": id}, Image: "docker.io/library/busybox:latest",
		Runtime: &api.Container_Runtime{Name: "io.containerd.runc.v2", Options: optsAny},
		Spec:    specAny, Snapshotter: "overlayfs", SnapshotKey: id + "-snap", Sandbox: "pod1",
		Extensions: map[string]*anypb.Any{"ext": extAny},
	}
}

// sameRecord compares what the client set, leaving out the store's times.
func sameRecord(t *testing.T, got, want *api.Container) {
	t.Helper()
	g := proto.Clone(got).(*api.Container)
	if g.CreatedAt == nil || g.UpdatedAt == nil {
		t.Errorf("container %s has no times: %v", g.ID, g)
	}
	g.CreatedAt, g.UpdatedAt = nil, nil
	if !proto.Equal(g, want) {
		t.Errorf("container\n%v\nwant\n%v", g, want)
	}
}

func TestCreateGetListUpdateDelete(t *testing.T) {
	c := newClient(t)
	ctx := servicetest.ClientCtx(t, "ns1")

	created, err := c.Create(ctx, &api.CreateContainerRequest{Container: record("c1")})
	if err != nil {
		t.Fatal(err)
	}
	sameRecord(t, created.Container, record("c1"))
	if _, err := c.Create(ctx, &api.CreateContainerRequest{Container: record("c2")}); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, &api.GetContainerRequest{ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	sameRecord(t, got.Container, record("c1"))

	_, err = c.Create(ctx, &api.CreateContainerRequest{Container: record("c1")})
	servicetest.WantCode(t, err, codes.AlreadyExists, `"c1"`)
	bad := record("bad/id")
	_, err = c.Create(ctx, &api.CreateContainerRequest{Container: bad})
	servicetest.WantCode(t, err, codes.InvalidArgument, `"bad/id"`)
	// Namespaces do not share containers.
	_, err = c.Get(servicetest.ClientCtx(t, "ns2"), &api.GetContainerRequest{ID: "c1"})
	servicetest.WantCode(t, err, codes.NotFound, `"c1"`)

	list, err := c.List(ctx, &api.ListContainersRequest{Filters: []string{"labels.app==c2"}})
	if err != nil || len(list.Containers) != 1 {
		t.Fatalf("list: %v, %v", list, err)
	}
	sameRecord(t, list.Containers[0], record("c2"))
	list, err = c.List(ctx, &api.ListContainersRequest{})
	if err != nil || len(list.Containers) != 2 {
		t.Fatalf("list all: %v, %v", list, err)
	}
	_, err = c.List(ctx, &api.ListContainersRequest{Filters: []string{"id~=["}})
	servicetest.WantCode(t, err, codes.InvalidArgument, "id~=[")

	upd := record("c1")
	upd.Labels = map[string]string{"app": "changed", "new": "x"}
	upd.Image = "ignored"
	updated, err := c.Update(ctx, &api.UpdateContainerRequest{Container: upd, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels.new"}}})
	if err != nil {
		t.Fatal(err)
	}
	// Only the masked field changes.
	want := record("c1")
	want.Labels["new"] = "x"
	sameRecord(t, updated.Container, want)
	_, err = c.Update(ctx, &api.UpdateContainerRequest{Container: record("c9")})
	servicetest.WantCode(t, err, codes.NotFound, `"c9"`)

	if _, err := c.Delete(ctx, &api.DeleteContainerRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Delete(ctx, &api.DeleteContainerRequest{ID: "c1"})
	servicetest.WantCode(t, err, codes.NotFound, `"c1"`)
}

func TestListStream(t *testing.T) {
	c := newClient(t)
	ctx := servicetest.ClientCtx(t, "ns1")
	for _, id := range []string{"a", "b", "c"} {
		if _, err := c.Create(ctx, &api.CreateContainerRequest{Container: record(id)}); err != nil {
			t.Fatal(err)
		}
	}
	s, err := c.ListStream(ctx, &api.ListContainersRequest{Filters: []string{"id==a", "id==c"}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for {
		m, err := s.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		sameRecord(t, m.Container, record(m.Container.ID))
		ids = append(ids, m.Container.ID)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"a", "c"}) {
		t.Errorf("streamed %v, want a and c, one per message", ids)
	}
	s, err = c.ListStream(ctx, &api.ListContainersRequest{Filters: []string{"id~=["}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Recv()
	servicetest.WantCode(t, err, codes.InvalidArgument, "id~=[")
}

// failingStore fails every call with err, naming its argument.
type failingStore struct{ err error }

func (f failingStore) Get(ctx context.Context, id string) (corecontainers.Container, error) {
	return corecontainers.Container{}, fmt.Errorf("get %q: %w", id, f.err)
}
func (f failingStore) List(ctx context.Context, filters ...string) ([]corecontainers.Container, error) {
	return nil, fmt.Errorf("list %q: %w", filters, f.err)
}
func (f failingStore) Create(ctx context.Context, c corecontainers.Container) (corecontainers.Container, error) {
	return corecontainers.Container{}, fmt.Errorf("create %q: %w", c.ID, f.err)
}
func (f failingStore) Update(ctx context.Context, c corecontainers.Container, paths ...string) (corecontainers.Container, error) {
	return corecontainers.Container{}, fmt.Errorf("update %q %v: %w", c.ID, paths, f.err)
}
func (f failingStore) Delete(ctx context.Context, id string) error {
	return fmt.Errorf("delete %q: %w", id, f.err)
}

func TestErrorCodes(t *testing.T) {
	for _, tc := range servicetest.ErrorClasses {
		t.Run(tc.Code.String(), func(t *testing.T) {
			c := api.NewContainersClient(servicetest.Serve(t, &containersService{store: failingStore{tc.Class}}))
			ctx := servicetest.ClientCtx(t, "ns1")
			_, err := c.Get(ctx, &api.GetContainerRequest{ID: "g1"})
			servicetest.WantCode(t, err, tc.Code, `"g1"`)
			_, err = c.List(ctx, &api.ListContainersRequest{Filters: []string{"id==l1"}})
			servicetest.WantCode(t, err, tc.Code, "id==l1")
			s, err := c.ListStream(ctx, &api.ListContainersRequest{Filters: []string{"id==l2"}})
			if err == nil {
				_, err = s.Recv()
			}
			servicetest.WantCode(t, err, tc.Code, "id==l2")
			_, err = c.Create(ctx, &api.CreateContainerRequest{Container: record("c1")})
			servicetest.WantCode(t, err, tc.Code, `"c1"`)
			_, err = c.Update(ctx, &api.UpdateContainerRequest{Container: record("u1"), UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"image"}}})
			servicetest.WantCode(t, err, tc.Code, `"u1"`, "[image]")
			_, err = c.Delete(ctx, &api.DeleteContainerRequest{ID: "d1"})
			servicetest.WantCode(t, err, tc.Code, `"d1"`)
		})
	}
}
