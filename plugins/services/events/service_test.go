package events

import (
	"context"
	"errors"
	"fmt"
	"github.com/hullrt/hull/internal/servicetest"
	"io"
	"sync"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	api "github.com/containerd/containerd/api/services/events/v1"
	ttrpcevents "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hullrt/hull/core/events"
	"github.com/hullrt/hull/core/events/exchange"
	"github.com/hullrt/hull/plugin"
)

// signalling is the real exchange, telling when a subscription is in
// place so that a test publishes only after it.
type signalling struct {
	*exchange.Exchange
	subscribed chan struct{}
	once       sync.Once
}

func (s *signalling) Subscribe(ctx context.Context, fs ...string) (<-chan *events.Envelope, <-chan error) {
	ch, errs := s.Exchange.Subscribe(ctx, fs...)
	s.once.Do(func() { close(s.subscribed) })
	return ch, errs
}

// newClient builds both events plugins through their registrations over
// bus and serves the gRPC one; it returns a client and the ttrpc service.
func newClient(t *testing.T, bus eventBus) (api.EventsClient, ttrpcEventsService) {
	t.Helper()
	set := &plugin.Set{}
	set.Add(&plugin.Plugin{Registration: &plugin.Registration{Type: plugin.EventPlugin, ID: "exchange"}, Instance: bus})
	reg := &plugin.Registry{}
	Register(reg)
	var (
		grpcSvc  *eventsService
		ttrpcSvc ttrpcEventsService
	)
	for _, r := range reg.Graph(nil) {
		p := set.Init(r, &plugin.InitContext{Context: t.Context()})
		if p.Err != nil {
			t.Fatal(p.Err)
		}
		switch inst := p.Instance.(type) {
		case *eventsService:
			grpcSvc = inst
		case ttrpcEventsService:
			ttrpcSvc = inst
		}
	}
	if grpcSvc == nil || ttrpcSvc.bus == nil {
		t.Fatal("the events plugins were not both registered")
	}
	return api.NewEventsClient(servicetest.Serve(t, grpcSvc)), ttrpcSvc
}

func TestPublishSubscribe(t *testing.T) {
	bus := &signalling{Exchange: exchange.New(), subscribed: make(chan struct{})}
	c, _ := newClient(t, bus)
	ctx, cancel := context.WithCancel(servicetest.ClientCtx(t, "ns1"))
	defer cancel()
	sub, err := c.Subscribe(ctx, &api.SubscribeRequest{Filters: []string{`topic=="/tests/hello"`}})
	if err != nil {
		t.Fatal(err)
	}
	<-bus.subscribed

	ev, err := typeurl.MarshalAnyToProto(&eventstypes.ContainerCreate{ID: "c1", Image: "img"})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Second)
	// Not matching the filter: not delivered.
	if _, err := c.Publish(servicetest.ClientCtx(t, "ns1"), &api.PublishRequest{Topic: "/tests/other", Event: ev}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(servicetest.ClientCtx(t, "ns1"), &api.PublishRequest{Topic: "/tests/hello", Event: ev}); err != nil {
		t.Fatal(err)
	}
	env, err := sub.Recv()
	if err != nil {
		t.Fatal(err)
	}
	// The namespace is the publisher's header; the exchange stamps the time.
	if env.Namespace != "ns1" || env.Topic != "/tests/hello" || env.Timestamp.AsTime().Before(before) {
		t.Errorf("envelope %v", env)
	}
	if !proto.Equal(env.Event, ev) {
		t.Errorf("event %v, want %v", env.Event, ev)
	}
	got, err := typeurl.UnmarshalAny(env.Event)
	if err != nil {
		t.Fatal(err)
	}
	if cc, ok := got.(*eventstypes.ContainerCreate); !ok || cc.ID != "c1" || cc.Image != "img" {
		t.Errorf("decoded %#v", got)
	}

	// Forwarded envelopes keep their own namespace and time.
	at := time.Date(2023, 4, 5, 6, 7, 8, 0, time.UTC)
	fwd := &types.Envelope{Timestamp: timestamppb.New(at), Namespace: "ns2", Topic: "/tests/hello", Event: ev}
	if _, err := c.Forward(servicetest.ClientCtx(t, "ns1"), &api.ForwardRequest{Envelope: fwd}); err != nil {
		t.Fatal(err)
	}
	env, err = sub.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(env, fwd) {
		t.Errorf("forwarded %v, want %v", env, fwd)
	}

	// When the client goes, the subscription ends.
	cancel()
	if _, err := sub.Recv(); err == nil {
		t.Error("subscription still delivering after its context ended")
	}
}

func TestPublishErrors(t *testing.T) {
	c, _ := newClient(t, exchange.New())
	_, err := c.Publish(servicetest.ClientCtx(t, "ns1"), &api.PublishRequest{Topic: "/tests/none"})
	servicetest.WantCode(t, err, codes.InvalidArgument, `"/tests/none"`, "event")
	ev := &anypb.Any{TypeUrl: "x", Value: []byte("y")}
	_, err = c.Publish(servicetest.ClientCtx(t, "ns1"), &api.PublishRequest{Topic: "no-slash", Event: ev})
	servicetest.WantCode(t, err, codes.InvalidArgument, `"no-slash"`)
	// Without the namespace header the exchange refuses.
	_, err = c.Publish(t.Context(), &api.PublishRequest{Topic: "/tests/x", Event: ev})
	servicetest.WantCode(t, err, codes.FailedPrecondition, "namespace")
}

func TestForwardErrors(t *testing.T) {
	c, ttrpcSvc := newClient(t, exchange.New())
	ev := &anypb.Any{TypeUrl: "x", Value: []byte("y")}
	for _, env := range []*types.Envelope{nil, {Namespace: "ns1", Topic: "/tests/x"}} {
		_, err := c.Forward(servicetest.ClientCtx(t, "ns1"), &api.ForwardRequest{Envelope: env})
		servicetest.WantCode(t, err, codes.InvalidArgument, "envelope")
		_, err = ttrpcSvc.Forward(t.Context(), &ttrpcevents.ForwardRequest{Envelope: env})
		servicetest.WantCode(t, err, codes.InvalidArgument, "envelope")
	}
	_, err := c.Forward(servicetest.ClientCtx(t, "ns1"), &api.ForwardRequest{Envelope: &types.Envelope{Namespace: "bad/ns", Topic: "/tests/x", Event: ev}})
	servicetest.WantCode(t, err, codes.InvalidArgument, `"bad/ns"`)
}

func TestTTRPCForward(t *testing.T) {
	// What shims send on the ttrpc socket reaches the bus as they sent it.
	bus := &recordingBus{}
	_, svc := newClient(t, bus)
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := svc.RegisterTTRPC(srv); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2023, 4, 5, 6, 7, 8, 0, time.UTC)
	ev := &anypb.Any{TypeUrl: "containerd.events.TaskExit", Value: []byte("exit")}
	if _, err := svc.Forward(t.Context(), &ttrpcevents.ForwardRequest{Envelope: &types.Envelope{
		Timestamp: timestamppb.New(at), Namespace: "ns1", Topic: "/tasks/exit", Event: ev,
	}}); err != nil {
		t.Fatal(err)
	}
	if len(bus.forwarded) != 1 {
		t.Fatalf("bus got %d envelopes", len(bus.forwarded))
	}
	got := bus.forwarded[0]
	if got.Namespace != "ns1" || got.Topic != "/tasks/exit" || !got.Timestamp.Equal(at) || !proto.Equal(got.Event.(*anypb.Any), ev) {
		t.Errorf("forwarded %+v", got)
	}
	bus.err = fmt.Errorf("bus of %q: %w", "ns1", errdefs.ErrUnavailable)
	_, err = svc.Forward(t.Context(), &ttrpcevents.ForwardRequest{Envelope: &types.Envelope{Namespace: "ns1", Topic: "/t", Event: ev}})
	servicetest.WantCode(t, err, codes.Unavailable, `"ns1"`)
}

// recordingBus records forwarded envelopes and fails with err, naming
// the topic; its subscriptions yield envelopes, then subErr.
type recordingBus struct {
	mu        sync.Mutex
	err       error
	forwarded []*events.Envelope
	subEnvs   []*events.Envelope
	subErr    error
}

func (b *recordingBus) Publish(ctx context.Context, topic string, event any) error {
	if b.err != nil {
		return fmt.Errorf("publish to %q: %w", topic, b.err)
	}
	return nil
}

func (b *recordingBus) Forward(ctx context.Context, env *events.Envelope) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.forwarded = append(b.forwarded, env)
	if b.err != nil {
		return fmt.Errorf("forward to %q: %w", env.Topic, b.err)
	}
	return nil
}

func (b *recordingBus) Subscribe(ctx context.Context, fs ...string) (<-chan *events.Envelope, <-chan error) {
	// As the exchange does: the events first, then the channel closes,
	// then the error, if any.
	ch := make(chan *events.Envelope)
	errs := make(chan error, 1)
	go func() {
		defer close(errs)
		for _, e := range b.subEnvs {
			select {
			case ch <- e:
			case <-ctx.Done():
			}
		}
		close(ch)
		if b.subErr != nil {
			errs <- b.subErr
		}
	}()
	return ch, errs
}

func TestErrorCodes(t *testing.T) {
	ev := &anypb.Any{TypeUrl: "x", Value: []byte("y")}
	for _, tc := range []struct {
		class error
		code  codes.Code
	}{
		{errdefs.ErrNotFound, codes.NotFound},
		{errdefs.ErrInvalidArgument, codes.InvalidArgument},
		{errdefs.ErrFailedPrecondition, codes.FailedPrecondition},
		{errdefs.ErrUnavailable, codes.Unavailable},
		{errdefs.ErrNotImplemented, codes.Unimplemented},
	} {
		t.Run(tc.code.String(), func(t *testing.T) {
			bus := &recordingBus{err: tc.class, subErr: fmt.Errorf("subscriber %q: %w", "s1", tc.class)}
			c, _ := newClient(t, bus)
			ctx := servicetest.ClientCtx(t, "ns1")
			_, err := c.Publish(ctx, &api.PublishRequest{Topic: "/p", Event: ev})
			servicetest.WantCode(t, err, tc.code, `"/p"`)
			_, err = c.Forward(ctx, &api.ForwardRequest{Envelope: &types.Envelope{Namespace: "ns1", Topic: "/f", Event: ev}})
			servicetest.WantCode(t, err, tc.code, `"/f"`)
			sub, err := c.Subscribe(ctx, &api.SubscribeRequest{})
			if err == nil {
				_, err = sub.Recv()
			}
			servicetest.WantCode(t, err, tc.code, `"s1"`)
		})
	}
}

func TestSubscribeEndsWithError(t *testing.T) {
	// The bus delivers what it has, closes the events and then says why:
	// the client gets the events, then the error's code.
	at := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	ev := &anypb.Any{TypeUrl: "x", Value: []byte("y")}
	bus := &recordingBus{
		subEnvs: []*events.Envelope{{Timestamp: at, Namespace: "ns1", Topic: "/a", Event: ev}},
		subErr:  fmt.Errorf("subscriber too slow: dropped %d events: %w", 3, errdefs.ErrUnavailable),
	}
	c, _ := newClient(t, bus)
	sub, err := c.Subscribe(servicetest.ClientCtx(t, "ns1"), &api.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	env, err := sub.Recv()
	if err != nil || env.Topic != "/a" || env.Namespace != "ns1" || !env.Timestamp.AsTime().Equal(at) || !proto.Equal(env.Event, ev) {
		t.Fatalf("first message %v, %v", env, err)
	}
	_, err = sub.Recv()
	servicetest.WantCode(t, err, codes.Unavailable, "dropped 3 events")

	// Closed without an error: the stream just ends.
	bus.subErr = nil
	sub, err = c.Subscribe(servicetest.ClientCtx(t, "ns1"), &api.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err = sub.Recv(); err != nil {
			break
		}
	}
	if !errors.Is(err, io.EOF) {
		t.Errorf("stream ended with %v, want its end", err)
	}
}

func TestSubscribeBadFilter(t *testing.T) {
	c, _ := newClient(t, exchange.New())
	sub, err := c.Subscribe(servicetest.ClientCtx(t, "ns1"), &api.SubscribeRequest{Filters: []string{"topic~=["}})
	if err == nil {
		_, err = sub.Recv()
	}
	servicetest.WantCode(t, err, codes.InvalidArgument, "topic~=[")
}
