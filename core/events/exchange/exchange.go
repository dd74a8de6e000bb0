// Package exchange is hull's in-process event bus: the core publishes to it,
// shims' events are forwarded into it, and the events API streams out of it.
//
// Delivery is best effort towards slow subscribers, never towards
// publishers: publishing never waits for a subscriber. Each subscriber has a
// queue of QueueLength envelopes; a subscriber that lets its queue overflow
// is dropped (see Subscribe) rather than allowed to hold up the bus or grow
// its memory without bound.
package exchange

import (
	"context"
	"fmt"
	"reflect"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"

	"github.com/hullrt/hull/core/events"
	"github.com/hullrt/hull/core/filters"
	"github.com/hullrt/hull/core/namespaces"
)

// QueueLength is how many envelopes may wait for a subscriber before it is
// dropped: enough to absorb bursts (an image pull or a mass container exit)
// while a client is momentarily busy, small enough that a stuck client costs
// little memory.
const QueueLength = 4096

// maxTopicLength bounds topics as containerd does, so that a forwarded
// envelope cannot carry an arbitrarily large header.
const maxTopicLength = 1024

var topicRe = regexp.MustCompile(`^(?:/[A-Za-z0-9_.-]+)+$`)

// Exchange broadcasts envelopes to subscribers. It is safe for concurrent
// use; the zero value is ready to use, though New is the conventional way to
// make one.
type Exchange struct {
	// mu serializes broadcasts, so that every subscriber sees envelopes in
	// the same order, and guards subscribers.
	mu          sync.Mutex
	subscribers map[*subscriber]struct{}
	// recent is a ring of the last RecentLength envelopes, for debug
	// dumps; next is where the next one goes.
	recent []*events.Envelope
	next   int
}

// RecentLength is how many envelopes Recent keeps: enough to see what led
// up to a problem in a debug dump, at a bounded cost.
const RecentLength = 1000

var (
	_ events.Publisher  = (*Exchange)(nil)
	_ events.Forwarder  = (*Exchange)(nil)
	_ events.Subscriber = (*Exchange)(nil)
)

// New returns an exchange without subscribers.
func New() *Exchange {
	return &Exchange{subscribers: make(map[*subscriber]struct{})}
}

// subscriber is one Subscribe call. Publishers put envelopes on queue under
// Exchange.mu; the subscriber's goroutine alone takes them off and hands
// them to the client.
type subscriber struct {
	filter filters.Filter
	queue  chan *events.Envelope
	// wake tells the goroutine that the queue overflowed, in case it is
	// waiting on an empty queue.
	wake chan struct{}
	// overflowed is set once, under Exchange.mu, when an envelope found the
	// queue full; from then on nothing more is queued, so that what the
	// client receives is a gapless prefix of what was published.
	overflowed atomic.Bool
	// dropped counts the matching envelopes not queued since the overflow.
	// Guarded by Exchange.mu.
	dropped int
}

// Publish stamps event with the namespace of ctx and the current time and
// broadcasts it under topic. event is marshaled with typeurl.MarshalAny, so
// it must be a registered type or a proto message (or already a
// typeurl.Any); as with containerd, it must be a pointer.
func (e *Exchange) Publish(ctx context.Context, topic string, event any) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	if err := validateTopic(topic); err != nil {
		return err
	}
	if isNil(event) {
		return fmt.Errorf("publish to topic %q: event must not be nil: %w", topic, errdefs.ErrInvalidArgument)
	}
	a, ok := event.(typeurl.Any)
	if !ok {
		// typeurl panics on anything but a pointer.
		if reflect.TypeOf(event).Kind() != reflect.Pointer {
			return fmt.Errorf("publish to topic %q: event of type %T must be a pointer: %w", topic, event, errdefs.ErrInvalidArgument)
		}
		if a, err = typeurl.MarshalAny(event); err != nil {
			return fmt.Errorf("publish to topic %q: marshal event of type %T: %w: %w", topic, event, err, errdefs.ErrInvalidArgument)
		}
	}
	e.broadcast(&events.Envelope{
		Timestamp: time.Now().UTC(),
		Namespace: ns,
		Topic:     topic,
		Event:     a,
	})
	return nil
}

// Forward broadcasts an envelope stamped elsewhere (by a shim, say) after
// checking its header, since it comes from outside the core.
func (e *Exchange) Forward(ctx context.Context, envelope *events.Envelope) error {
	if envelope == nil {
		return fmt.Errorf("forward: envelope must not be nil: %w", errdefs.ErrInvalidArgument)
	}
	if err := namespaces.Validate(envelope.Namespace); err != nil {
		return fmt.Errorf("forward to topic %q: %w", envelope.Topic, err)
	}
	if err := validateTopic(envelope.Topic); err != nil {
		return err
	}
	if isNil(envelope.Event) {
		return fmt.Errorf("forward to topic %q: event must not be nil: %w", envelope.Topic, errdefs.ErrInvalidArgument)
	}
	env := *envelope // the caller keeps its envelope
	e.broadcast(&env)
	return nil
}

// Subscribe delivers the envelopes matching any of fs (see package filters;
// fields "topic" and "namespace"), in publish order, until ctx is done; then
// both channels are closed and errs carries no error. Every subscription
// holds a goroutine until ctx is done, so ctx must be cancelled eventually.
//
// Bad filters are reported on errs at once, wrapping
// errdefs.ErrInvalidArgument, and both channels are closed.
//
// A subscriber that falls QueueLength envelopes behind is dropped: it still
// receives every envelope queued before the overflow, then errs carries
// "subscriber too slow: dropped N events" (N counting the matching envelopes
// it missed; the error wraps errdefs.ErrUnavailable, since retrying can
// succeed) and both channels are closed. Clients should resubscribe and
// resynchronize their state from the List APIs.
//
// Envelopes are shared by all subscribers: receivers must not modify them.
func (e *Exchange) Subscribe(ctx context.Context, fs ...string) (<-chan *events.Envelope, <-chan error) {
	var (
		ch   = make(chan *events.Envelope)
		errs = make(chan error, 1)
	)
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		errs <- fmt.Errorf("subscribe: %w", err)
		close(errs)
		close(ch)
		return ch, errs
	}
	sub := &subscriber{
		filter: filter,
		queue:  make(chan *events.Envelope, QueueLength),
		wake:   make(chan struct{}, 1),
	}
	e.mu.Lock()
	if e.subscribers == nil {
		e.subscribers = make(map[*subscriber]struct{})
	}
	e.subscribers[sub] = struct{}{}
	e.mu.Unlock()

	go e.deliver(ctx, sub, ch, errs)
	return ch, errs
}

// broadcast queues env for every matching subscriber without ever waiting.
func (e *Exchange) broadcast(env *events.Envelope) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.recent) < RecentLength {
		e.recent = append(e.recent, env)
	} else {
		e.recent[e.next] = env
	}
	e.next = (e.next + 1) % RecentLength
	for sub := range e.subscribers {
		if !sub.filter.Match(env) {
			continue
		}
		if sub.overflowed.Load() {
			sub.dropped++
			continue
		}
		select {
		case sub.queue <- env:
		default:
			sub.overflowed.Store(true)
			sub.dropped++
			select {
			case sub.wake <- struct{}{}:
			default:
			}
		}
	}
}

// Recent returns the last envelopes broadcast (at most RecentLength),
// oldest first. They are shared: callers must not modify them.
func (e *Exchange) Recent() []*events.Envelope {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.recent) < RecentLength {
		return append([]*events.Envelope(nil), e.recent...)
	}
	out := make([]*events.Envelope, 0, RecentLength)
	out = append(out, e.recent[e.next:]...)
	return append(out, e.recent[:e.next]...)
}

// deliver is the subscriber's goroutine: it owns the client's channels and
// closes them when ctx is done or after the subscriber overflowed and its
// queue is drained.
func (e *Exchange) deliver(ctx context.Context, sub *subscriber, ch chan<- *events.Envelope, errs chan<- error) {
	defer close(errs)
	defer close(ch)
	for {
		if ctx.Err() != nil {
			e.unsubscribe(sub)
			return
		}
		// Once overflowed nothing more is queued, so an empty queue means
		// everything deliverable has been delivered.
		if sub.overflowed.Load() && len(sub.queue) == 0 {
			dropped := e.unsubscribe(sub)
			errs <- fmt.Errorf("subscriber too slow: dropped %d events: %w", dropped, errdefs.ErrUnavailable)
			return
		}
		select {
		case <-ctx.Done():
			e.unsubscribe(sub)
			return
		case <-sub.wake:
		case env := <-sub.queue:
			select {
			case ch <- env:
			case <-ctx.Done():
				e.unsubscribe(sub)
				return
			}
		}
	}
}

// unsubscribe stops the broadcasts to sub and returns how many envelopes it
// missed.
func (e *Exchange) unsubscribe(sub *subscriber) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.subscribers, sub)
	return sub.dropped
}

func validateTopic(topic string) error {
	if len(topic) > maxTopicLength {
		return fmt.Errorf("topic %q... is %d bytes long, the limit is %d: %w", topic[:64], len(topic), maxTopicLength, errdefs.ErrInvalidArgument)
	}
	if !topicRe.MatchString(topic) {
		return fmt.Errorf("topic %q is invalid: it must be '/'-separated components of letters, digits, '_', '.' and '-', starting with '/': %w", topic, errdefs.ErrInvalidArgument)
	}
	return nil
}

// isNil reports whether v is nil or a nil pointer, which typeurl would
// marshal into an event no subscriber can decode.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan:
		return rv.IsNil()
	}
	return false
}
