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
// Close sends what is left, ends the stream (the client sees its end) and
// waits for the goroutine that receives window updates. Before it ends the
// stream it waits, as a write waits, until the client has passed the last
// byte on: containerd 2.x's ctr exits as soon as the Transfer call answers,
// without waiting for its own copy of the stream into the file, and an
// answer that overtook the last messages left its archive short. The
// protocol has no acknowledgement, but containerd's clients grant window
// only after they have passed data on, and only when what they have left
// falls below their first grant; so the writer holds the last Window bytes
// back and, once no grant can be on its way, sends them such that the very
// last message is the one that makes the client grant again (see finish).
func NewWriter(ctx context.Context, s Stream, idle time.Duration) io.WriteCloser {
	w := &writer{ctx: ctx, s: s, idle: idle, granted: make(chan struct{}, 1), done: make(chan struct{})}
	go w.run()
	return w
}

type writer struct {
	ctx  context.Context
	s    Stream
	idle time.Duration
	// Only the goroutine that writes and closes uses these two.
	tail   []byte // bytes written and not sent yet (see Write)
	failed bool   // a send failed: nothing more is owed to the client

	mu      sync.Mutex
	window  int64
	first   int64 // the client's first grant: the window it tops up to
	grants  int64 // how many grants have come
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
	if n > 0 {
		w.grants++
		if w.first == 0 {
			w.first = n
		}
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

// wait waits until ok holds (called with w.mu held), the stream breaks, ctx
// ends or no grant comes for idle.
func (w *writer) wait(ok func() bool) error {
	var timeout <-chan time.Time
	if w.idle > 0 {
		t := time.NewTimer(w.idle)
		defer t.Stop()
		timeout = t.C
	}
	for {
		w.mu.Lock()
		done, err := ok(), w.err
		w.mu.Unlock()
		if done {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-w.granted:
		case <-w.ctx.Done():
			return w.ctx.Err()
		case <-timeout:
			return &idleError{w.idle}
		}
	}
}

// idleError says that the client granted nothing for idle.
type idleError struct{ idle time.Duration }

func (e *idleError) Error() string {
	return fmt.Sprintf("client granted no window for %s: %v", e.idle, context.DeadlineExceeded)
}

func (e *idleError) Unwrap() error { return context.DeadlineExceeded }

// send sends p as Data messages of at most max bytes, each within the
// window.
func (w *writer) send(p []byte, max int) error {
	for len(p) > 0 {
		var n int
		err := w.wait(func() bool {
			if w.window <= 0 {
				return false
			}
			n = int(min(int64(len(p)), int64(max), w.window))
			w.window -= int64(n)
			return true
		})
		if err != nil {
			return w.fail(err)
		}
		a, err := typeurl.MarshalAny(&transfertypes.Data{Data: p[:n]})
		if err != nil {
			return w.fail(err)
		}
		if err := w.s.Send(a); err != nil {
			return w.fail(fmt.Errorf("send data: %w", err))
		}
		p = p[n:]
	}
	return nil
}

func (w *writer) fail(err error) error {
	w.failed = true
	return err
}

// Write keeps the last Window bytes of the stream back for Close, and sends
// what is before them in whole MaxData messages: a caller's small writes (an
// archive's headers and paddings) do not each become a message for the
// client to take and answer with window.
func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	err := w.err
	w.mu.Unlock()
	if err != nil {
		return 0, w.fail(err)
	}
	w.tail = append(w.tail, p...)
	if over := len(w.tail) - Window; over >= MaxData {
		n := over - over%MaxData
		if err := w.send(w.tail[:n], MaxData); err != nil {
			return 0, err
		}
		w.tail = w.tail[:copy(w.tail, w.tail[n:])]
	}
	return len(p), nil
}

// finish sends the held-back tail so that the client's grant after its
// last message says that it has passed everything on.
//
// containerd's clients grant their first window's worth whenever what they
// have left drops below it, after passing a message on. Once the writer's
// window is back to first or above, no grant is on its way (it would have
// been sent with less left than first, and the writer's view never exceeds
// the client's) and none comes while the client passes on what was sent.
// The first x bytes above first can then go without a grant; the rest, in
// one message, takes the client below first, and its grant can only come
// after that message. A tail of at most x bytes (a client that granted far
// ahead), or one whose rest does not fit the client's first grant, cannot
// be told apart that way and is just sent.
func (w *writer) finish() error {
	if over := len(w.tail) - Window; over > 0 {
		if err := w.send(w.tail[:over], MaxData); err != nil {
			return err
		}
		w.tail = w.tail[over:]
	}
	if len(w.tail) == 0 {
		return nil
	}
	var x int64
	err := w.wait(func() bool {
		x = w.window - w.first
		return w.first > 0 && x >= 0
	})
	var idle *idleError
	switch {
	case errors.As(err, &idle):
		// Not a client that tops its window up as containerd's do:
		// there is no telling when it has taken the tail.
		return w.send(w.tail, MaxData)
	case err != nil:
		return w.fail(err)
	}
	if int64(len(w.tail)) <= x || int64(len(w.tail))-x > w.first {
		return w.send(w.tail, MaxData)
	}
	if err := w.send(w.tail[:x], MaxData); err != nil {
		return err
	}
	w.mu.Lock()
	before := w.grants
	w.mu.Unlock()
	if err := w.send(w.tail[x:], Window); err != nil {
		return err
	}
	err = w.wait(func() bool { return w.grants > before })
	if err != nil && !errors.As(err, &idle) {
		return w.fail(err)
	}
	return nil
}

// Close sends what Write held back, waits for the client to have taken it
// (unless a write failed), and ends the stream.
func (w *writer) Close() error {
	var err error
	w.once.Do(func() {
		if !w.failed {
			err = w.finish()
		}
		if cerr := w.s.Close(); err == nil {
			err = cerr
		}
		<-w.done
	})
	return err
}
