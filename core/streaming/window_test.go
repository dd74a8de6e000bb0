package streaming

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	transfertypes "github.com/containerd/containerd/api/types/transfer"
	"github.com/containerd/typeurl/v2"

	"github.com/hullrt/hull/core/namespaces"
)

// pipeEnd is one end of an in-memory stream pair.
type pipeEnd struct {
	in, out chan typeurl.Any
	closed  chan struct{} // this end closed
	peer    *pipeEnd
	once    sync.Once
}

func pipe() (*pipeEnd, *pipeEnd) {
	a2b, b2a := make(chan typeurl.Any, 16), make(chan typeurl.Any, 16)
	a := &pipeEnd{in: b2a, out: a2b, closed: make(chan struct{})}
	b := &pipeEnd{in: a2b, out: b2a, closed: make(chan struct{})}
	a.peer, b.peer = b, a
	return a, b
}

func (p *pipeEnd) Send(a typeurl.Any) error {
	select {
	case <-p.closed:
		return io.ErrClosedPipe
	case <-p.peer.closed:
		return io.EOF
	case p.out <- a:
		return nil
	}
}

func (p *pipeEnd) Recv() (typeurl.Any, error) {
	select {
	case a := <-p.in:
		return a, nil
	case <-p.closed:
		return nil, io.ErrClosedPipe
	case <-p.peer.closed:
		select {
		case a := <-p.in:
			return a, nil
		default:
			return nil, io.EOF
		}
	}
}

func (p *pipeEnd) Close() error { p.once.Do(func() { close(p.closed) }); return nil }

// sender plays a client sending data within the window it is granted.
func sender(t *testing.T, s *pipeEnd, data []byte) {
	var window int32
	for len(data) > 0 {
		for window == 0 {
			a, err := s.Recv()
			if err != nil {
				return
			}
			v, _ := typeurl.UnmarshalAny(a)
			if u, ok := v.(*transfertypes.WindowUpdate); ok {
				window += u.Update
			}
		}
		n := min(int(window), len(data), MaxData)
		a, _ := typeurl.MarshalAny(&transfertypes.Data{Data: data[:n]})
		if s.Send(a) != nil {
			return
		}
		window -= int32(n)
		data = data[n:]
	}
	s.Close()
}

func TestReaderWriterRoundTrip(t *testing.T) {
	data := bytes.Repeat([]byte("hull"), 3*Window)
	server, client := pipe()
	go sender(t, client, data)
	r := NewReader(server)
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes (%v), want %d", len(got), err, len(data))
	}

	// The writer the other way, with the Reader as the client.
	server, client = pipe()
	w := NewWriter(context.Background(), server, time.Minute)
	done := make(chan []byte)
	go func() {
		r := NewReader(client)
		b, _ := io.ReadAll(r)
		r.Close()
		done <- b
	}()
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if got := <-done; !bytes.Equal(got, data) {
		t.Fatalf("client read %d bytes, want %d", len(got), len(data))
	}
}

func TestWriterFailsWhenWindowStops(t *testing.T) {
	server, client := pipe()
	w := NewWriter(context.Background(), server, 50*time.Millisecond)
	// The client grants one window and then nothing: a write of more
	// than the writer holds back fails, and so does the Close that sends
	// what it held back.
	a, _ := typeurl.MarshalAny(&transfertypes.WindowUpdate{Update: 10})
	client.Send(a)
	_, err := w.Write(make([]byte, 3*Window))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("write with a stalled window: %v, want a deadline error", err)
	}
	server, client = pipe()
	w3 := NewWriter(context.Background(), server, 50*time.Millisecond)
	client.Send(a)
	if _, err := w3.Write(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if err := w3.Close(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("close with a stalled window: %v, want a deadline error", err)
	}
	// A client that goes away fails the write, or the Close that sends
	// what the write held back, at once.
	server, client = pipe()
	w2 := NewWriter(context.Background(), server, time.Hour)
	client.Close()
	_, werr := w2.Write([]byte("x"))
	if cerr := w2.Close(); werr == nil && cerr == nil {
		t.Fatal("write to a closed client succeeded")
	}
	w.Close()
}

// taker plays containerd's ReceiveStream: it grants Window whenever its
// window is below it, before each receive, and passes each Data message to
// pass before it counts it taken, until the stream ends; then it closes
// done.
func taker(s *pipeEnd, pass func([]byte), done chan<- struct{}) {
	defer close(done)
	var window int32
	for {
		if window < Window {
			a, _ := typeurl.MarshalAny(&transfertypes.WindowUpdate{Update: Window})
			if s.Send(a) == nil {
				window += Window
			}
		}
		a, err := s.Recv()
		if err != nil {
			return
		}
		v, _ := typeurl.UnmarshalAny(a)
		if d, ok := v.(*transfertypes.Data); ok {
			pass(d.Data)
			window -= int32(len(d.Data))
		}
	}
}

// ctr 2.x exits as soon as Transfer answers: the writer's Close, after
// which the export answers, must wait until the client has taken every
// byte, not only until the last one was sent.
func TestWriterCloseWaitsForTheClientToTakeAll(t *testing.T) {
	for _, size := range []int{1, MaxData, MaxData + 1, 60416, Window, Window + 100, 3*Window + 7, 10*Window + MaxData/2} {
		server, client := pipe()
		var taken atomic.Int64
		done := make(chan struct{})
		// A slow client: each message takes it a while to pass on.
		go taker(client, func(data []byte) {
			time.Sleep(5 * time.Millisecond)
			taken.Add(int64(len(data)))
		}, done)
		w := NewWriter(context.Background(), server, time.Minute)
		if _, err := w.Write(make([]byte, size)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if got := taken.Load(); got != int64(size) {
			t.Errorf("%d bytes: Close returned when the client had taken %d", size, got)
		}
		<-done
	}
}

// Small writes (an archive's 512-byte headers and paddings) go out as
// whole MaxData messages, not a message each; only the held-back tail that
// Close sends is cut as the client's window needs.
func TestWriterSendsWholeMessages(t *testing.T) {
	server, client := pipe()
	var sizes []int
	done := make(chan struct{})
	go taker(client, func(data []byte) { sizes = append(sizes, len(data)) }, done)
	w := NewWriter(context.Background(), server, time.Minute)
	const writes, size = 400, 512
	for i := 0; i < writes; i++ {
		if _, err := w.Write(make([]byte, size)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	<-done
	// What Write sent (all but the last Window and less than a message)
	// is whole messages; Close cuts the rest as the window needs.
	total := 0
	for _, n := range sizes {
		total += n
		if total <= writes*size-Window-MaxData && n != MaxData {
			t.Fatalf("messages %v: a %d-byte one before the tail", sizes, n)
		}
	}
	if total != writes*size || len(sizes) > writes*size/MaxData+4 {
		t.Fatalf("%d bytes in %d messages (%v); want %d bytes in whole %d-byte messages but for the tail", total, len(sizes), sizes, writes*size, MaxData)
	}
}

// A client that stops granting cannot hold Close for longer than a write
// would wait; one that was sent nothing holds it not at all.
func TestWriterCloseGivesUpOnAStalledClient(t *testing.T) {
	server, client := pipe()
	a, _ := typeurl.MarshalAny(&transfertypes.WindowUpdate{Update: 10})
	client.Send(a)
	w := NewWriter(context.Background(), server, 50*time.Millisecond)
	if _, err := w.Write(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error)
	go func() { closed <- w.Close() }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waits on a client that grants nothing more")
	}

	server, _ = pipe()
	w = NewWriter(context.Background(), server, time.Hour)
	go func() { closed <- w.Close() }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close of a writer that sent nothing waits")
	}
}

func TestReaderFailsWhenStreamBreaks(t *testing.T) {
	server, _ := pipe()
	r := NewReader(server)
	server.Close() // the stream broke under the reader
	if _, err := io.ReadAll(r); err == nil {
		t.Fatal("read of a broken stream succeeded")
	}
	r.Close()
}

func TestManager(t *testing.T) {
	m := NewManager()
	ctx := namespaces.WithNamespace(context.Background(), "a")
	s, _ := pipe()
	if err := m.Register(ctx, "x", s); err != nil {
		t.Fatal(err)
	}
	if err := m.Register(ctx, "x", s); err == nil {
		t.Fatal("registered one name twice")
	}
	if _, err := m.Get(namespaces.WithNamespace(context.Background(), "b"), "x"); err == nil {
		t.Fatal("another namespace found the stream")
	}
	got, err := m.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	got.Close()
	if _, err := m.Get(ctx, "x"); err == nil || m.Len() != 0 {
		t.Fatalf("closed stream still registered (%d open)", m.Len())
	}
}
