package introspection

import (
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcmd "google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/hullrt/hull/core/namespaces"
)

// serve registers svc on a gRPC server listening in memory and returns a
// client connection to it. The interceptors move the containerd-namespace
// header into the context, as hulld's do (daemon/interceptors.go).
func serve(t *testing.T, svc interface{ RegisterGRPC(*grpc.Server) }) *grpc.ClientConn {
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

// clientCtx is a client context carrying namespace ns in the gRPC header.
func clientCtx(t *testing.T, ns string) context.Context {
	return grpcmd.AppendToOutgoingContext(t.Context(), namespaces.GRPCHeader, ns)
}

// wantCode fails unless err is a gRPC status with code and a message
// naming every one of names.
func wantCode(t *testing.T, err error, code codes.Code, names ...string) {
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
