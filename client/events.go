package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"

	api "github.com/containerd/containerd/api/services/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/hullrt/hull/core/events"
	"github.com/hullrt/hull/internal/protoconv"
)

// EventService is the daemon's event bus seen from a client: publish in the
// context's namespace, forward envelopes stamped elsewhere, and subscribe.
type EventService interface {
	events.Publisher
	events.Forwarder
	events.Subscriber
}

// EventService returns the daemon's event bus.
func (c *Client) EventService() EventService {
	return c.services.Events
}

type eventService struct {
	client api.EventsClient
}

func toProtoAny(v any) (*anypb.Any, error) {
	switch a := v.(type) {
	case *anypb.Any:
		return a, nil
	case typeurl.Any:
		return &anypb.Any{TypeUrl: a.GetTypeUrl(), Value: a.GetValue()}, nil
	}
	if v == nil || reflect.TypeOf(v).Kind() != reflect.Pointer {
		// typeurl panics on these rather than failing.
		return nil, fmt.Errorf("encode event %T: an event is a pointer to a protobuf or typeurl-registered type: %w", v, errdefs.ErrInvalidArgument)
	}
	a, err := typeurl.MarshalAnyToProto(v)
	if err != nil {
		return nil, fmt.Errorf("encode event %T: %w: %w", v, err, errdefs.ErrInvalidArgument)
	}
	return a, nil
}

// Publish sends event (a registered or protobuf type, or an already encoded
// typeurl.Any) under topic; the daemon stamps it with the context's
// namespace and the time.
func (s *eventService) Publish(ctx context.Context, topic string, event any) error {
	a, err := toProtoAny(event)
	if err != nil {
		return err
	}
	_, err = s.client.Publish(ctx, &api.PublishRequest{Topic: topic, Event: a})
	return err
}

func (s *eventService) Forward(ctx context.Context, env *events.Envelope) error {
	if env == nil || env.Event == nil {
		return fmt.Errorf("forward: envelope and its event must be set: %w", errdefs.ErrInvalidArgument)
	}
	a, err := toProtoAny(env.Event)
	if err != nil {
		return err
	}
	_, err = s.client.Forward(ctx, &api.ForwardRequest{Envelope: &types.Envelope{
		Timestamp: protoconv.ToTime(env.Timestamp), Namespace: env.Namespace, Topic: env.Topic, Event: a,
	}})
	return err
}

// Subscribe streams the envelopes matching any of filters until ctx is done
// or the stream fails. Both channels are closed at the end; the error
// channel first gets the failure, if any. Ending by cancelling ctx is not a
// failure.
//
// The subscription starts on the daemon shortly after Subscribe returns, not
// before: events published meanwhile may be missed.
func (s *eventService) Subscribe(ctx context.Context, filters ...string) (<-chan *events.Envelope, <-chan error) {
	ch := make(chan *events.Envelope)
	errs := make(chan error, 1)
	go func() {
		defer close(errs)
		defer close(ch)
		fail := func(err error) {
			if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, ctx.Err())) {
				if errors.Is(ctx.Err(), context.Canceled) {
					return
				}
				err = ctx.Err()
			}
			errs <- err
		}
		stream, err := s.client.Subscribe(ctx, &api.SubscribeRequest{Filters: filters})
		if err != nil {
			fail(err)
			return
		}
		for {
			env, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("the daemon ended the event stream: %w", io.EOF)
			}
			if err != nil {
				fail(err)
				return
			}
			out := &events.Envelope{
				Timestamp: protoconv.FromTime(env.Timestamp), Namespace: env.Namespace, Topic: env.Topic,
			}
			if env.Event != nil {
				out.Event = env.Event
			}
			select {
			case ch <- out:
			case <-ctx.Done():
				fail(ctx.Err())
				return
			}
		}
	}()
	return ch, errs
}
