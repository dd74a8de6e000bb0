package sandboxes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"

	api "github.com/containerd/containerd/api/services/sandbox/v1"
	"github.com/containerd/containerd/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcmd "google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/hullrt/hull/core/namespaces"
	coresandboxes "github.com/hullrt/hull/core/sandboxes"
	"github.com/hullrt/hull/internal/servicetest"
	"github.com/hullrt/hull/plugin"
)

// serveUnix serves svc on a unix socket in a temporary directory, moving
// the namespace header into the context as hulld does, and returns a
// client connection to it. The server stops when the test ends.
func serveUnix(t *testing.T, svc interface{ RegisterGRPC(*grpc.Server) }) *grpc.ClientConn {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	nsCtx := func(ctx context.Context) context.Context {
		if v := grpcmd.ValueFromIncomingContext(ctx, namespaces.GRPCHeader); len(v) > 0 {
			return namespaces.WithNamespace(ctx, v[0])
		}
		return ctx
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return h(nsCtx(ctx), req)
	}))
	svc.RegisterGRPC(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("serve: %v", err)
		}
	})
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// newClient serves the sandbox store adapter, built by its registrations
// over a metadata store, and returns a client.
func newClient(t *testing.T) api.StoreClient {
	t.Helper()
	db := servicetest.OpenDB(t)
	svc := servicetest.Adapter(t, Register, servicetest.Dep(plugin.MetadataPlugin, "bolt", db))
	return api.NewStoreClient(serveUnix(t, svc))
}

var (
	specAny = &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", Value: []byte(`{"ociVersion":"1.1.0"}`)}
	optsAny = &anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: []byte("opts")}
	extAny  = &anypb.Any{TypeUrl: "example.com/Ext", Value: []byte("ext")}
)

func record(id string) *types.Sandbox {
	return &types.Sandbox{
		SandboxID: id, Labels: map[string]string{"app": id},
		Runtime:    &types.Sandbox_Runtime{Name: "io.containerd.runc.v2", Options: optsAny},
		Spec:       specAny,
		Extensions: map[string]*anypb.Any{"ext": extAny},
		Sandboxer:  "podsandbox",
	}
}

// sameRecord compares what the client set, leaving out the store's times,
// which must be there.
func sameRecord(t *testing.T, got, want *types.Sandbox) {
	t.Helper()
	g := proto.Clone(got).(*types.Sandbox)
	if g.CreatedAt == nil || g.UpdatedAt == nil {
		t.Errorf("sandbox %s has no times: %v", g.SandboxID, g)
	}
	g.CreatedAt, g.UpdatedAt = nil, nil
	if !proto.Equal(g, want) {
		t.Errorf("sandbox\n%v\nwant\n%v", g, want)
	}
}

func TestCreateGetListUpdateDelete(t *testing.T) {
	c := newClient(t)
	ctx := servicetest.ClientCtx(t, "k8s.io")

	created, err := c.Create(ctx, &api.StoreCreateRequest{Sandbox: record("p1")})
	if err != nil {
		t.Fatal(err)
	}
	sameRecord(t, created.Sandbox, record("p1"))
	if _, err := c.Create(ctx, &api.StoreCreateRequest{Sandbox: record("p2")}); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, &api.StoreGetRequest{SandboxID: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	sameRecord(t, got.Sandbox, record("p1"))
	if !proto.Equal(got.Sandbox.CreatedAt, created.Sandbox.CreatedAt) {
		t.Errorf("created_at %v, was %v at create", got.Sandbox.CreatedAt, created.Sandbox.CreatedAt)
	}

	_, err = c.Create(ctx, &api.StoreCreateRequest{Sandbox: record("p1")})
	servicetest.WantCode(t, err, codes.AlreadyExists, `"p1"`)
	_, err = c.Create(ctx, &api.StoreCreateRequest{Sandbox: record("bad/id")})
	servicetest.WantCode(t, err, codes.InvalidArgument, `"bad/id"`)
	_, err = c.Create(ctx, &api.StoreCreateRequest{})
	servicetest.WantCode(t, err, codes.InvalidArgument, "sandbox id")
	// Namespaces do not share sandboxes.
	_, err = c.Get(servicetest.ClientCtx(t, "other"), &api.StoreGetRequest{SandboxID: "p1"})
	servicetest.WantCode(t, err, codes.NotFound, `"p1"`)

	list, err := c.List(ctx, &api.StoreListRequest{Filters: []string{"labels.app==p2"}})
	if err != nil || len(list.List) != 1 {
		t.Fatalf("list: %v, %v", list, err)
	}
	sameRecord(t, list.List[0], record("p2"))
	list, err = c.List(ctx, &api.StoreListRequest{Filters: []string{"sandboxer==podsandbox,runtime.name==io.containerd.runc.v2"}})
	if err != nil || len(list.List) != 2 {
		t.Fatalf("list all: %v, %v", list, err)
	}
	_, err = c.List(ctx, &api.StoreListRequest{Filters: []string{"id~=["}})
	servicetest.WantCode(t, err, codes.InvalidArgument, "id~=[")

	upd := record("p1")
	upd.Labels = map[string]string{"app": "changed", "new": "x"}
	upd.Spec = nil
	updated, err := c.Update(ctx, &api.StoreUpdateRequest{Sandbox: upd, Fields: []string{"labels.new"}})
	if err != nil {
		t.Fatal(err)
	}
	// Only the named field changes.
	want := record("p1")
	want.Labels["new"] = "x"
	sameRecord(t, updated.Sandbox, want)
	// Without fields every mutable field is replaced.
	updated, err = c.Update(ctx, &api.StoreUpdateRequest{Sandbox: upd})
	if err != nil {
		t.Fatal(err)
	}
	want = record("p1")
	want.Labels, want.Spec = upd.Labels, nil
	sameRecord(t, updated.Sandbox, want)
	upd.Sandboxer = "other"
	_, err = c.Update(ctx, &api.StoreUpdateRequest{Sandbox: upd})
	servicetest.WantCode(t, err, codes.InvalidArgument, `"p1"`, "sandboxer")
	_, err = c.Update(ctx, &api.StoreUpdateRequest{Sandbox: record("p1"), Fields: []string{"bogus"}})
	servicetest.WantCode(t, err, codes.InvalidArgument, `"bogus"`)
	_, err = c.Update(ctx, &api.StoreUpdateRequest{Sandbox: record("p9")})
	servicetest.WantCode(t, err, codes.NotFound, `"p9"`)

	if _, err := c.Delete(ctx, &api.StoreDeleteRequest{SandboxID: "p1"}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Delete(ctx, &api.StoreDeleteRequest{SandboxID: "p1"})
	servicetest.WantCode(t, err, codes.NotFound, `"p1"`)
	_, err = c.Get(ctx, &api.StoreGetRequest{SandboxID: "p1"})
	servicetest.WantCode(t, err, codes.NotFound, `"p1"`)
	list, err = c.List(ctx, &api.StoreListRequest{})
	if err != nil || len(list.List) != 1 || list.List[0].SandboxID != "p2" {
		t.Fatalf("list after delete: %v, %v", list, err)
	}
}

// TestNoNamespace: a call without the namespace header fails as other
// namespaced calls do, naming what is missing.
func TestNoNamespace(t *testing.T) {
	c := newClient(t)
	_, err := c.List(t.Context(), &api.StoreListRequest{})
	servicetest.WantCode(t, err, codes.FailedPrecondition, "namespace")
}

// failingStore fails every call with err, naming its argument.
type failingStore struct{ err error }

func (f failingStore) Create(ctx context.Context, sb coresandboxes.Sandbox) (coresandboxes.Sandbox, error) {
	return coresandboxes.Sandbox{}, fmt.Errorf("create %q: %w", sb.ID, f.err)
}
func (f failingStore) Update(ctx context.Context, sb coresandboxes.Sandbox, paths ...string) (coresandboxes.Sandbox, error) {
	return coresandboxes.Sandbox{}, fmt.Errorf("update %q %v: %w", sb.ID, paths, f.err)
}
func (f failingStore) Get(ctx context.Context, id string) (coresandboxes.Sandbox, error) {
	return coresandboxes.Sandbox{}, fmt.Errorf("get %q: %w", id, f.err)
}
func (f failingStore) List(ctx context.Context, filters ...string) ([]coresandboxes.Sandbox, error) {
	return nil, fmt.Errorf("list %q: %w", filters, f.err)
}
func (f failingStore) Delete(ctx context.Context, id string) error {
	return fmt.Errorf("delete %q: %w", id, f.err)
}

func TestErrorCodes(t *testing.T) {
	for _, tc := range servicetest.ErrorClasses {
		t.Run(tc.Code.String(), func(t *testing.T) {
			c := api.NewStoreClient(serveUnix(t, &storeService{store: failingStore{tc.Class}}))
			ctx := servicetest.ClientCtx(t, "k8s.io")
			_, err := c.Get(ctx, &api.StoreGetRequest{SandboxID: "g1"})
			servicetest.WantCode(t, err, tc.Code, `"g1"`)
			_, err = c.List(ctx, &api.StoreListRequest{Filters: []string{"id==l1"}})
			servicetest.WantCode(t, err, tc.Code, "id==l1")
			_, err = c.Create(ctx, &api.StoreCreateRequest{Sandbox: record("c1")})
			servicetest.WantCode(t, err, tc.Code, `"c1"`)
			_, err = c.Update(ctx, &api.StoreUpdateRequest{Sandbox: record("u1"), Fields: []string{"spec"}})
			servicetest.WantCode(t, err, tc.Code, `"u1"`, "[spec]")
			_, err = c.Delete(ctx, &api.StoreDeleteRequest{SandboxID: "d1"})
			servicetest.WantCode(t, err, tc.Code, `"d1"`)
		})
	}
}
