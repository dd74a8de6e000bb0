// Package streaming holds the streams of containerd's Streaming API: a
// client opens a stream, names it in its first message, and a later call
// (a Transfer) finds it by that name to exchange typed messages with the
// client while the call runs.
//
// A Manager keeps the open streams of each namespace. On top of a Stream,
// NewReader and NewWriter carry a byte stream the way containerd's transfer
// service does: the receiving side grants window (WindowUpdate messages) and
// the sending side sends Data messages only within the window granted, so
// neither side buffers more than a window.
package streaming

import (
	"context"
	"fmt"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"

	"github.com/hullrt/hull/core/namespaces"
)

// Stream is one open stream: typed messages both ways.
type Stream interface {
	// Send sends a message to the client.
	Send(typeurl.Any) error
	// Recv waits for the client's next message; io.EOF when the client has
	// closed its side.
	Recv() (typeurl.Any, error)
	// Close ends the stream for the client (it sees the end of the
	// stream) and removes it from its Manager.
	Close() error
}

// Getter finds a registered stream by name in the context's namespace.
type Getter interface {
	Get(ctx context.Context, name string) (Stream, error)
}

// Manager keeps the open streams by namespace and name.
type Manager struct {
	mu      sync.Mutex
	streams map[string]map[string]*managed
}

// NewManager returns an empty Manager.
func NewManager() *Manager { return &Manager{streams: map[string]map[string]*managed{}} }

// Register makes s findable as name in the context's namespace until it is
// closed or Unregister is called. A name already open is AlreadyExists.
func (m *Manager) Register(ctx context.Context, name string, s Stream) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	if name == "" {
		return fmt.Errorf("stream name must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	byName := m.streams[ns]
	if byName == nil {
		byName = map[string]*managed{}
		m.streams[ns] = byName
	}
	if _, ok := byName[name]; ok {
		return fmt.Errorf("stream %q in namespace %q: %w", name, ns, errdefs.ErrAlreadyExists)
	}
	byName[name] = &managed{Stream: s, m: m, ns: ns, name: name}
	return nil
}

// Unregister forgets stream name of namespace ns (the client went away).
func (m *Manager) Unregister(ns, name string) { m.remove(ns, name, nil) }

func (m *Manager) remove(ns, name string, only *managed) {
	m.mu.Lock()
	defer m.mu.Unlock()
	byName := m.streams[ns]
	if s, ok := byName[name]; !ok || (only != nil && s != only) {
		return
	}
	delete(byName, name)
	if len(byName) == 0 {
		delete(m.streams, ns)
	}
}

// Get returns stream name of the context's namespace; NotFound if no such
// stream is open.
func (m *Manager) Get(ctx context.Context, name string) (Stream, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.streams[ns][name]
	if !ok {
		return nil, fmt.Errorf("stream %q in namespace %q: %w", name, ns, errdefs.ErrNotFound)
	}
	return s, nil
}

// Len returns how many streams are open in all namespaces.
func (m *Manager) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, byName := range m.streams {
		n += len(byName)
	}
	return n
}

// managed is a registered stream; closing it also unregisters it.
type managed struct {
	Stream
	m        *Manager
	ns, name string
}

func (s *managed) Close() error {
	s.m.remove(s.ns, s.name, s)
	return s.Stream.Close()
}
