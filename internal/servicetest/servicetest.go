// Package servicetest serves a gRPC service adapter in memory for the unit
// tests of plugins/services: a bufconn server whose interceptors move the
// namespace header into the context as hulld's do, the client context that
// sends it, the check of a gRPC error's code and message, and a metadata
// store in a temporary directory.
package servicetest

import (
	"context"
	"github.com/containerd/errdefs"
	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/plugins/services"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcmd "google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/hullrt/hull/core/content/local"
	"github.com/hullrt/hull/core/metadata"
	"github.com/hullrt/hull/core/namespaces"
)

// Serve registers svc on a gRPC server listening in memory and returns a
// client connection to it. The interceptors move the containerd-namespace
// header into the context, as hulld's do (daemon/interceptors.go).
func Serve(t testing.TB, svc interface{ RegisterGRPC(*grpc.Server) }) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			return h(nsFromHeader(ctx), req)
		}),
		grpc.StreamInterceptor(func(s any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(s, nsStream{ss, nsFromHeader(ss.Context())})
		}),
	)
	svc.RegisterGRPC(srv)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func nsFromHeader(ctx context.Context) context.Context {
	if v := grpcmd.ValueFromIncomingContext(ctx, namespaces.GRPCHeader); len(v) > 0 {
		return namespaces.WithNamespace(ctx, v[0])
	}
	return ctx
}

type nsStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s nsStream) Context() context.Context { return s.ctx }

// ClientCtx is a client context carrying namespace ns in the gRPC header.
func ClientCtx(t testing.TB, ns string) context.Context {
	return grpcmd.AppendToOutgoingContext(t.Context(), namespaces.GRPCHeader, ns)
}

// WantCode fails unless err is a gRPC status with code and a message
// naming every one of names.
func WantCode(t testing.TB, err error, code codes.Code, names ...string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("got error %v, want code %s", err, code)
	}
	for _, n := range names {
		if !strings.Contains(st.Message(), n) {
			t.Errorf("message %q does not name %q", st.Message(), n)
		}
	}
}

// OpenDB opens a metadata store over a local blob store, both in a
// temporary directory; neither needs root.
func OpenDB(t testing.TB) *metadata.DB {
	t.Helper()
	dir := t.TempDir()
	backend, err := local.NewStore(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := metadata.Open(filepath.Join(dir, "meta.db"), backend, metadata.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Adapter runs the registrations register adds, over a plugin set holding
// deps, and returns the gRPC adapter among them: the service plugin and its
// adapter built exactly as hulld builds them.
func Adapter(t testing.TB, register func(*plugin.Registry), deps ...*plugin.Plugin) services.GRPCService {
	t.Helper()
	set := &plugin.Set{}
	for _, d := range deps {
		set.Add(d)
	}
	reg := &plugin.Registry{}
	register(reg)
	var svc services.GRPCService
	for _, r := range reg.Graph(nil) {
		p := set.Init(r, &plugin.InitContext{Context: context.Background()})
		if p.Err != nil {
			t.Fatal(p.Err)
		}
		if s, ok := p.Instance.(services.GRPCService); ok {
			svc = s
		}
	}
	if svc == nil {
		t.Fatal("the registrations hold no gRPC service")
	}
	return svc
}

// Dep is a running plugin of type typ and id whose instance is inst, for
// Adapter.
func Dep(typ plugin.Type, id string, inst any) *plugin.Plugin {
	return &plugin.Plugin{Registration: &plugin.Registration{Type: typ, ID: id}, Instance: inst}
}

// ErrorClass is an errdefs class and the gRPC code an adapter must map it
// to.
type ErrorClass struct {
	Class error
	Code  codes.Code
}

// ErrorClasses are the classes every adapter maps, each with its code.
var ErrorClasses = []ErrorClass{
	{errdefs.ErrNotFound, codes.NotFound},
	{errdefs.ErrAlreadyExists, codes.AlreadyExists},
	{errdefs.ErrInvalidArgument, codes.InvalidArgument},
	{errdefs.ErrFailedPrecondition, codes.FailedPrecondition},
	{errdefs.ErrUnavailable, codes.Unavailable},
	{errdefs.ErrNotImplemented, codes.Unimplemented},
}
