package daemon

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/namespaces"
)

// withRequestHeaders moves the namespace and lease headers containerd
// clients send into the context, where the core looks for them.
// It looks the two keys up rather than copying the whole metadata map, which
// every call would otherwise pay for.
func withRequestHeaders(ctx context.Context) (context.Context, string) {
	ns := ""
	if v := metadata.ValueFromIncomingContext(ctx, namespaces.GRPCHeader); len(v) > 0 {
		ns = v[0]
		ctx = namespaces.WithNamespace(ctx, ns)
	}
	if v := metadata.ValueFromIncomingContext(ctx, leases.GRPCHeader); len(v) > 0 && v[0] != "" {
		ctx = leases.WithLease(ctx, v[0])
	}
	return ctx, ns
}

func logCall(log *slog.Logger, method, ns string, start time.Time, err error) {
	if !log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	attrs := []any{"method", method, "namespace", ns, "duration", time.Since(start)}
	if err != nil {
		st, _ := status.FromError(err)
		attrs = append(attrs, "code", st.Code().String(), "error", st.Message())
	}
	log.Debug("api call", attrs...)
}

func unaryInterceptor(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		ctx, ns := withRequestHeaders(ctx)
		resp, err := handler(ctx, req)
		logCall(log, info.FullMethod, ns, start, err)
		return resp, err
	}
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w wrappedStream) Context() context.Context { return w.ctx }

func streamInterceptor(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		ctx, ns := withRequestHeaders(ss.Context())
		err := handler(srv, wrappedStream{ss, ctx})
		logCall(log, info.FullMethod, ns, start, err)
		return err
	}
}
