// Package events sends the shim's task events to the daemon: over ttrpc to
// the address in TTRPC_ADDRESS, service containerd.services.events.ttrpc.v1.Events,
// method Forward. Events leave in the order they were published, from one
// goroutine with its own queue, so a slow or restarting daemon never blocks
// a task call; each is retried a few times before it is dropped. The
// connection lasts as long as there are events to send.
package events

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Topics of the task events, as containerd names them.
const (
	TopicCreate      = "/tasks/create"
	TopicStart       = "/tasks/start"
	TopicExit        = "/tasks/exit"
	TopicDelete      = "/tasks/delete"
	TopicOOM         = "/tasks/oom"
	TopicExecAdded   = "/tasks/exec-added"
	TopicExecStarted = "/tasks/exec-started"
	TopicPaused      = "/tasks/paused"
	TopicResumed     = "/tasks/resumed"
)

// namespaceKey is the ttrpc metadata key containerd reads the namespace
// from.
const namespaceKey = "containerd-namespace-ttrpc"

// Publisher queues events for the daemon at one address.
type Publisher struct {
	address   string
	namespace string
	log       *slog.Logger

	mu     sync.Mutex
	queue  []*types.Envelope
	wake   chan struct{}
	closed bool
	done   chan struct{}

	client *ttrpc.Client
}

// NewPublisher starts the sending goroutine; Close stops it after the queue
// is drained (or given up).
func NewPublisher(address, namespace string, log *slog.Logger) *Publisher {
	p := &Publisher{address: address, namespace: namespace, log: log,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	go p.run()
	return p
}

// Publish queues event under topic; it never blocks on the daemon.
func (p *Publisher) Publish(topic string, event any) {
	a, err := typeurl.MarshalAnyToProto(event)
	if err != nil {
		p.log.Error("marshal event", "topic", topic, "error", err)
		return
	}
	env := &types.Envelope{Timestamp: timestamppb.Now(), Namespace: p.namespace, Topic: topic, Event: a}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.queue = append(p.queue, env)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Close sends what is queued (within a few seconds) and stops.
func (p *Publisher) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

func (p *Publisher) run() {
	defer close(p.done)
	defer func() {
		if p.client != nil {
			p.client.Close()
		}
	}()
	for {
		p.mu.Lock()
		if len(p.queue) == 0 {
			closed := p.closed
			p.mu.Unlock()
			if closed {
				return
			}
			<-p.wake
			continue
		}
		env := p.queue[0]
		p.queue = p.queue[1:]
		p.mu.Unlock()
		p.send(env)
		p.mu.Lock()
		idle := len(p.queue) == 0
		p.mu.Unlock()
		if idle && p.client != nil {
			// Events come in bursts (a task's create and start, its
			// exit and delete), often hours apart. Kept open between
			// them, the connection would hold a goroutine and buffers
			// in the shim and in the daemon, per shim, for nothing; a
			// unix socket connect per burst costs microseconds.
			p.client.Close()
			p.client = nil
		}
	}
}

func (p *Publisher) send(env *types.Envelope) {
	const attempts = 5
	backoff := 50 * time.Millisecond
	for i := 0; i < attempts; i++ {
		if p.address == "" {
			return
		}
		if err := p.forward(env); err == nil {
			return
		} else if i == attempts-1 {
			p.log.Error("publish event", "topic", env.Topic, "address", p.address, "error", err)
			return
		}
		time.Sleep(backoff)
		backoff *= 2
	}
}

func (p *Publisher) forward(env *types.Envelope) error {
	if p.client == nil {
		conn, err := net.DialTimeout("unix", p.address, 5*time.Second)
		if err != nil {
			return err
		}
		p.client = ttrpc.NewClient(conn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx = ttrpc.WithMetadata(ctx, ttrpc.MD{namespaceKey: []string{p.namespace}})
	_, err := eventsapi.NewTTRPCEventsClient(p.client).Forward(ctx, &eventsapi.ForwardRequest{Envelope: env})
	if err != nil {
		// A broken connection is not reused; a refused event on a good
		// one is not retried forever either.
		p.client.Close()
		p.client = nil
	}
	return err
}
