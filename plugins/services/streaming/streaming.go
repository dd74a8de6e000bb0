// Package streaming registers containerd's Streaming service: the stream
// manager (io.containerd.streaming.v1.manager, a core/streaming Manager)
// and the gRPC adapter that opens streams for clients
// (containerd.services.streaming.v1.Streaming).
package streaming

import (
	"context"
	"sync"

	"fmt"

	streamingapi "github.com/containerd/containerd/api/services/streaming/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/core/namespaces"
	corestreaming "github.com/hullrt/hull/core/streaming"
	"github.com/hullrt/hull/internal/errgrpc"
	"github.com/hullrt/hull/plugin"
)

// Register adds the stream manager and the Streaming gRPC service to r.
func Register(r *plugin.Registry) {
	r.Register(&plugin.Registration{
		Type: plugin.StreamingPlugin, ID: "manager",
		Init: func(*plugin.InitContext) (any, error) { return corestreaming.NewManager(), nil },
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "streaming", Requires: []plugin.Type{plugin.StreamingPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			m, err := plugin.Instance[Manager](ic, plugin.StreamingPlugin, "manager")
			if err != nil {
				return nil, err
			}
			return &Server{manager: m}, nil
		},
	})
}

// Manager is what the gRPC service needs of the stream manager.
type Manager interface {
	Register(ctx context.Context, name string, s corestreaming.Stream) error
	Unregister(ns, name string)
}

// Server is the Streaming gRPC service.
type Server struct {
	streamingapi.UnimplementedStreamingServer
	manager Manager
}

// RegisterGRPC registers the service on srv.
func (s *Server) RegisterGRPC(srv *grpc.Server) { streamingapi.RegisterStreamingServer(srv, s) }

// Stream takes the client's StreamInit, registers the stream under its ID,
// acknowledges with an Empty and keeps the stream open until the transfer
// using it closes it or the client goes away.
func (s *Server) Stream(srv streamingapi.Streaming_StreamServer) error {
	ctx := srv.Context()
	first, err := srv.Recv()
	if err != nil {
		return err
	}
	var init streamingapi.StreamInit
	if err := typeurl.UnmarshalTo(first, &init); err != nil {
		return errgrpc.ToGRPC(fmt.Errorf("first message of a stream is %q, not a StreamInit: %w", first.GetTypeUrl(), errdefs.ErrInvalidArgument))
	}
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return errgrpc.ToGRPC(err)
	}
	ss := &serverStream{srv: srv, closed: make(chan struct{})}
	if err := s.manager.Register(ctx, init.ID, ss); err != nil {
		return errgrpc.ToGRPC(err)
	}
	defer s.manager.Unregister(ns, init.ID)
	ack, err := anypb.New(&emptypb.Empty{})
	if err != nil {
		return err
	}
	if err := srv.Send(ack); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-ss.closed:
	}
	return nil
}

// serverStream is a client's stream as core/streaming sees it; Close ends
// the RPC, which the client reads as the end of the stream.
type serverStream struct {
	srv    streamingapi.Streaming_StreamServer
	closed chan struct{}
	once   sync.Once
}

func (s *serverStream) Send(a typeurl.Any) error {
	return errgrpc.ToNative(s.srv.Send(&anypb.Any{TypeUrl: a.GetTypeUrl(), Value: a.GetValue()}))
}

func (s *serverStream) Recv() (typeurl.Any, error) {
	a, err := s.srv.Recv()
	if err != nil {
		return nil, errgrpc.ToNative(err)
	}
	return a, nil
}

func (s *serverStream) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}
