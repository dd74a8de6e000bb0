package events

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// sink is a daemon's events service that records topics in arrival
// order and counts the connections its listener has open.
type sink struct {
	mu     sync.Mutex
	topics []string
	open   int
}

func (s *sink) Forward(ctx context.Context, r *eventsapi.ForwardRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	s.topics = append(s.topics, r.Envelope.Topic)
	s.mu.Unlock()
	return &emptypb.Empty{}, nil
}

func (s *sink) state() ([]string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.topics...), s.open
}

type countingListener struct {
	net.Listener
	s *sink
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.s.mu.Lock()
	l.s.open++
	l.s.mu.Unlock()
	return &countedConn{Conn: c, s: l.s}, nil
}

type countedConn struct {
	net.Conn
	s    *sink
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		c.s.open--
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

// waitFor polls until cond holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPublisherConnectsPerBurst: events arrive in order, and once the
// queue is empty the publisher hangs up, so an idle shim holds no
// connection (nor the daemon a connection per shim); the next event
// connects again.
func TestPublisherConnectsPerBurst(t *testing.T) {
	addr := filepath.Join(t.TempDir(), "events.sock")
	l, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{}
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	eventsapi.RegisterTTRPCEventsService(srv, s)
	served := make(chan struct{})
	go func() { srv.Serve(context.Background(), countingListener{l, s}); close(served) }()
	defer func() { srv.Close(); <-served }()

	p := NewPublisher(addr, "ns", slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer p.Close()
	p.Publish(TopicCreate, &eventstypes.TaskCreate{ContainerID: "c"})
	p.Publish(TopicStart, &eventstypes.TaskStart{ContainerID: "c"})
	p.Publish(TopicExit, &eventstypes.TaskExit{ContainerID: "c"})
	waitFor(t, "three events and no connection left", func() bool {
		topics, open := s.state()
		return len(topics) == 3 && open == 0
	})
	p.Publish(TopicDelete, &eventstypes.TaskDelete{ContainerID: "c"})
	waitFor(t, "the fourth event and no connection left", func() bool {
		topics, open := s.state()
		return len(topics) == 4 && open == 0
	})
	topics, _ := s.state()
	want := []string{TopicCreate, TopicStart, TopicExit, TopicDelete}
	for i := range want {
		if topics[i] != want[i] {
			t.Fatalf("topics %v, want %v", topics, want)
		}
	}
}
