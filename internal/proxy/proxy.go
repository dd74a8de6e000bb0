// Package proxy holds clients of containerd's content and snapshots gRPC
// APIs that implement hull's core interfaces (content.Store,
// snapshots.Snapshotter). The client library uses them to reach hulld, and
// hulld uses them for [proxy_plugins], stores served by another process;
// sharing this package is what keeps the rest of the client library out of
// hulld.
package proxy

import (
	"context"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/internal/errgrpc"
)

// Dial connects to a proxy plugin's unix socket. Calls on the connection
// carry the namespace and lease of their context in containerd's headers,
// and their errors come back as errdefs classes.
func Dial(address string) (*grpc.ClientConn, error) {
	path := strings.TrimPrefix(address, "unix://")
	if path == "" {
		return nil, fmt.Errorf("proxy address must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	return grpc.NewClient("unix://"+path,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return errgrpc.ToNative(invoker(outgoing(ctx), method, req, reply, cc, opts...))
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			s, err := streamer(outgoing(ctx), desc, cc, method, opts...)
			if err != nil {
				return nil, errgrpc.ToNative(err)
			}
			return NativeStream{ClientStream: s}, nil
		}),
	)
}

// outgoing puts the namespace and lease of ctx into its gRPC metadata.
func outgoing(ctx context.Context) context.Context {
	if ns, ok := namespaces.Namespace(ctx); ok {
		ctx = metadata.AppendToOutgoingContext(ctx, namespaces.GRPCHeader, ns)
	}
	if id, ok := leases.FromContext(ctx); ok {
		ctx = metadata.AppendToOutgoingContext(ctx, leases.GRPCHeader, id)
	}
	return ctx
}

// NativeStream maps the errors of a stream's messages to errdefs classes;
// io.EOF, which ends a stream normally, passes through unchanged.
type NativeStream struct{ grpc.ClientStream }

// SendMsg sends m.
func (s NativeStream) SendMsg(m any) error { return errgrpc.ToNative(s.ClientStream.SendMsg(m)) }

// RecvMsg receives into m.
func (s NativeStream) RecvMsg(m any) error { return errgrpc.ToNative(s.ClientStream.RecvMsg(m)) }

// CloseSend closes the sending side.
func (s NativeStream) CloseSend() error { return errgrpc.ToNative(s.ClientStream.CloseSend()) }

// Header returns the stream's header metadata.
func (s NativeStream) Header() (metadata.MD, error) {
	md, err := s.ClientStream.Header()
	return md, errgrpc.ToNative(err)
}
