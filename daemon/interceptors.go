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

// calls is what hulld does around every API call: it moves the request
// headers into the context, and counts and logs the call. One interceptor
// rather than a chain, and the
// clock is read only when something records the time: the daemon's own
// per-call work is what `ctr images ls` over many images waits for.
type calls struct {
	log     *slog.Logger
	debug   bool // log every call (the level is fixed at start)
	metrics *apiMetrics
}

func newCalls(log *slog.Logger, metrics *apiMetrics) *calls {
	return &calls{log: log, debug: log.Enabled(context.Background(), slog.LevelDebug), metrics: metrics}
}

// begin starts a call of method and returns the func that ends it.
func (c *calls) begin(method string) func(ns string, err error) {
	if !c.debug && c.metrics == nil {
		return func(string, error) {}
	}
	start := time.Now()
	return func(ns string, err error) {
		c.metrics.observe(method, start, err)
		if c.debug {
			c.logCall(method, ns, start, err)
		}
	}
}

func (c *calls) logCall(method, ns string, start time.Time, err error) {
	attrs := []any{"method", method, "namespace", ns, "duration", time.Since(start)}
	if err != nil {
		st, _ := status.FromError(err)
		attrs = append(attrs, "code", st.Code().String(), "error", st.Message())
	}
	c.log.Debug("api call", attrs...)
}

func (c *calls) unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		end := c.begin(info.FullMethod)
		ctx, ns := withRequestHeaders(ctx)
		resp, err := handler(ctx, req)
		end(ns, err)
		return resp, err
	}
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w wrappedStream) Context() context.Context { return w.ctx }

func (c *calls) stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		end := c.begin(info.FullMethod)
		ctx, ns := withRequestHeaders(ss.Context())
		err := handler(srv, wrappedStream{ss, ctx})
		end(ns, err)
		return err
	}
}
