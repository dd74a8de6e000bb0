package events

import (
	"context"
	"fmt"

	api "github.com/containerd/containerd/api/services/events/v1"
	ttrpcevents "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/core/events"
	"github.com/hullrt/hull/internal/errgrpc"
	"github.com/hullrt/hull/internal/protoconv"
)

// eventBus is what the events service needs of the exchange.
type eventBus interface {
	events.Publisher
	events.Forwarder
	events.Subscriber
}

type eventsService struct {
	api.UnimplementedEventsServer
	bus eventBus
}

func (s *eventsService) RegisterGRPC(g *grpc.Server) { api.RegisterEventsServer(g, s) }

func (s *eventsService) Publish(ctx context.Context, req *api.PublishRequest) (*emptypb.Empty, error) {
	if req.Event == nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("publish to %q: event must be set: %w", req.Topic, errdefs.ErrInvalidArgument))
	}
	if err := s.bus.Publish(ctx, req.Topic, typeurl.Any(req.Event)); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *eventsService) Forward(ctx context.Context, req *api.ForwardRequest) (*emptypb.Empty, error) {
	if err := forward(ctx, s.bus, req.GetEnvelope()); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// forward relays an envelope from a client or a shim onto the bus.
func forward(ctx context.Context, bus events.Forwarder, env *types.Envelope) error {
	if env == nil || env.Event == nil {
		return fmt.Errorf("forward: envelope and its event must be set: %w", errdefs.ErrInvalidArgument)
	}
	return bus.Forward(ctx, &events.Envelope{
		Timestamp: protoconv.FromTime(env.Timestamp), Namespace: env.Namespace, Topic: env.Topic, Event: env.Event,
	})
}

// ttrpcEventsService receives the events shims publish (TTRPC_ADDRESS).
type ttrpcEventsService struct{ bus eventBus }

func (s ttrpcEventsService) RegisterTTRPC(srv *ttrpc.Server) error {
	ttrpcevents.RegisterTTRPCEventsService(srv, s)
	return nil
}

func (s ttrpcEventsService) Forward(ctx context.Context, req *ttrpcevents.ForwardRequest) (*emptypb.Empty, error) {
	if err := forward(ctx, s.bus, req.GetEnvelope()); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *eventsService) Subscribe(req *api.SubscribeRequest, srv api.Events_SubscribeServer) error {
	ctx, cancel := context.WithCancel(srv.Context())
	defer cancel()
	ch, errs := s.bus.Subscribe(ctx, req.Filters...)
	for {
		select {
		case env, ok := <-ch:
			if !ok {
				// The events channel is closed: the bus may still hold
				// the reason (a bad filter, say), whichever of the two
				// it delivered first.
				if errs != nil {
					if err, ok := <-errs; ok && err != nil {
						return errgrpc.ToGRPC(err)
					}
				}
				return nil
			}
			if err := srv.Send(&types.Envelope{
				Timestamp: protoconv.ToTime(env.Timestamp), Namespace: env.Namespace, Topic: env.Topic,
				Event: &anypb.Any{TypeUrl: env.Event.GetTypeUrl(), Value: env.Event.GetValue()},
			}); err != nil {
				return err
			}
		case err, ok := <-errs:
			if ok && err != nil {
				return errgrpc.ToGRPC(err)
			}
			if !ok {
				errs = nil // closed without error: wait for the events to end
			}
		}
	}
}
