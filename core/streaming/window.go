package streaming

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	transfertypes "github.com/containerd/containerd/api/types/transfer"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
)

// MaxData is the largest Data message a Writer sends, and Window the window
// a Reader keeps granted: containerd's sizes, so both sides agree with its
// clients on how much is in flight.
const (
	MaxData = 32 << 10
	Window  = 2 * MaxData
)

// NewReader returns the bytes a client sends over s as Data messages,
// granting it Window bytes at a time. The reader ends with io.EOF when the
// client closes its side, and with an error when the stream breaks (the
// client went away). Close ends the stream and waits for the goroutine that
// receives.
func NewReader(s Stream) io.ReadCloser {
	pr, pw := io.Pipe()
	r := &reader{s: s, pr: pr, done: make(chan struct{})}
	go r.run(pw)
	return r
}

type reader struct {
	s    Stream
	pr   *io.PipeReader
	done chan struct{}
	once sync.Once
}

func (r *reader) run(pw *io.PipeWriter) {
	defer close(r.done)
	var window int32
	for {
		if window < Window {
			a, err := typeurl.MarshalAny(&transfertypes.WindowUpdate{Update: Window})
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			if err := r.s.Send(a); err != nil && !errors.Is(err, io.EOF) {
				pw.CloseWithError(fmt.Errorf("grant window: %w", err))
				return
			}
			window += Window
		}
		a, err := r.s.Recv()
		if errors.Is(err, io.EOF) {
			pw.Close()
			return
		}
		if err != nil {
			pw.CloseWithError(fmt.Errorf("stream broke off: %w", err))
			return
		}
		v, err := typeurl.UnmarshalAny(a)
		if err != nil {
			pw.CloseWithError(fmt.Errorf("stream message %q: %v: %w", a.GetTypeUrl(), err, errdefs.ErrInvalidArgument))
			return
		}
		d, ok := v.(*transfertypes.Data)
		if !ok {
			continue // containerd ignores other messages too
		}
		if int32(len(d.Data)) > window {
			pw.CloseWithError(fmt.Errorf("client sent %d bytes with a window of %d: %w", len(d.Data), window, errdefs.ErrInvalidArgument))
			return
		}
		if _, err := pw.Write(d.Data); err != nil {
			return // the reader was closed
		}
		window -= int32(len(d.Data))
	}
}

func (r *reader) Read(p []byte) (int, error) { return r.pr.Read(p) }

func (r *reader) Close() error {
	var err error
	r.once.Do(func() {
		r.pr.Close()
		err = r.s.Close()
		<-r.done
	})
	return err
}

// NewWriter returns a writer that sends its bytes to the client over s as
// Data messages, within the window the client grants. A write fails when
// ctx ends, when the stream breaks, or when the client grants no window for
// idle (0: no limit): a client that stops reading cannot hold a transfer
// forever.
//
// Close ends the stream (the client sees its end) once the client has taken
// what was sent, and waits for the goroutine that receives window updates.
// Taken means the client granted its first window back: containerd's
// clients grant after they have passed data on, and ctr 2.x exits as soon
// as the Transfer call answers, without waiting for its copy of the stream
// into the file; answering while the last messages were still on their way
// left ctr's archive short. Close gives up waiting as a write does.
func NewWriter(ctx context.Context, s Stream, idle time.Duration) io.WriteCloser {
	w := &writer{ctx: ctx, s: s, idle: idle, granted: make(chan struct{}, 1), done: make(chan struct{})}
	go w.run()
	return w
}

type writer struct {
	ctx     context.Context
	s       Stream
	idle    time.Duration
	mu      sync.Mutex
	window  int64
	first   int64 // the client's first grant: its window when it has taken everything
	failed  bool  // a write failed: nothing more is owed to the client
	err     error // why no more window will come
	granted chan struct{}
	done    chan struct{}
	once    sync.Once
}

func (w *writer) run() {
	defer close(w.done)
	for {
		a, err := w.s.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("client closed the stream: %w", errdefs.ErrUnavailable)
			} else {
				err = fmt.Errorf("stream broke off: %w", err)
			}
			w.signal(0, err)
			return
		}
		v, err := typeurl.UnmarshalAny(a)
		if err != nil {
			continue
		}
		if u, ok := v.(*transfertypes.WindowUpdate); ok && u.Update > 0 {
			w.signal(int64(u.Update), nil)
		}
	}
}

func (w *writer) signal(n int64, err error) {
	w.mu.Lock()
	w.window += n
	if w.first == 0 {
		w.first = n
	}
	if err != nil && w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
	select {
	case w.granted <- struct{}{}:
	default:
	}
}

// take waits for window and returns how much of want may be sent.
func (w *writer) take(want int) (int, error) {
	var timeout <-chan time.Time
	if w.idle > 0 {
		t := time.NewTimer(w.idle)
		defer t.Stop()
		timeout = t.C
	}
	for {
		w.mu.Lock()
		if w.window > 0 {
			n := int64(want)
			if n > w.window {
				n = w.window
			}
			w.window -= n
			w.mu.Unlock()
			return int(n), nil
		}
		err := w.err
		w.mu.Unlock()
		if err != nil {
			return 0, err
		}
		select {
		case <-w.granted:
		case <-w.ctx.Done():
			return 0, w.ctx.Err()
		case <-timeout:
			return 0, fmt.Errorf("client granted no window for %s: %w", w.idle, context.DeadlineExceeded)
		}
	}
}

func (w *writer) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		want := len(p)
		if want > MaxData {
			want = MaxData
		}
		n, err := w.take(want)
		if err != nil {
			return written, w.fail(err)
		}
		a, err := typeurl.MarshalAny(&transfertypes.Data{Data: p[:n]})
		if err != nil {
			return written, w.fail(err)
		}
		if err := w.s.Send(a); err != nil {
			return written, w.fail(fmt.Errorf("send data: %w", err))
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

func (w *writer) fail(err error) error {
	w.mu.Lock()
	w.failed = true
	w.mu.Unlock()
	return err
}

// settle waits until the client has taken what was sent: until its window
// is back to its first grant (or Window, for a client that granted more at
// once). It stops early when a write failed, the stream broke, ctx ended
// or the client granted nothing for idle.
func (w *writer) settle() {
	var timeout <-chan time.Time
	if w.idle > 0 {
		t := time.NewTimer(w.idle)
		defer t.Stop()
		timeout = t.C
	}
	for {
		w.mu.Lock()
		done := w.failed || w.err != nil || w.window >= min(w.first, Window)
		w.mu.Unlock()
		if done {
			return
		}
		select {
		case <-w.granted:
		case <-w.ctx.Done():
			return
		case <-timeout:
			return
		}
	}
}

func (w *writer) Close() error {
	var err error
	w.once.Do(func() {
		w.settle()
		err = w.s.Close()
		<-w.done
	})
	return err
}
