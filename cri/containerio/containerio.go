// Package containerio connects a CRI container's standard streams to its
// CRI log and to attach sessions, and gives execs their stdio.
//
// The container's stdio are FIFOs that hulld makes in a directory of the
// container's and the shim opens: hulld reads stdout and stderr (one
// stream, stdout, with a terminal) and writes stdin. A ContainerIO is
// hulld's side of them, and the client/cio.IO of the container's task:
//
//   - output is read as soon as it comes and goes to the CRI log (package
//     logs) and to every attach session; a session that cannot keep up is
//     dropped, never the log or the container, which would otherwise
//     block in write(2);
//   - stdin is held open for the life of the container, so that the
//     process does not read EOF between attach sessions; with StdinOnce
//     it is closed when the first session's stdin ends;
//   - the FIFOs outlive a hulld restart: the shim keeps its ends, and the
//     output written while nobody reads waits in the FIFO (up to the pipe's
//     size, after which the process blocks in write) until Reattach reads
//     it. So Close leaves the FIFOs where they are: they go with Dir,
//     which the container's owner removes with the container.
package containerio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/client/cio"
	"github.com/hullrt/hull/cri/logs"
)

// sessionBuffer is how much output an attach session may have waiting for
// its client before the session is dropped: enough for a burst, not so much
// that many slow clients add up.
const sessionBuffer = 1 << 20

// readBuffer is how much output is read from a FIFO at once; a pipe holds
// 64 KiB by default.
const readBuffer = 32 << 10

// Options describe a container's stdio.
type Options struct {
	Dir       string // where the FIFOs are made (a per-container directory under hulld's state; created)
	Stdin     bool
	StdinOnce bool   // the container's stdin is closed when the first attach session's stdin ends
	Terminal  bool   // one combined stream (stdout), no stderr
	LogPath   string // the CRI log file ("" = no log)
	// MaxLineSize cuts longer log lines into partial ones; <= 0 is no
	// limit.
	MaxLineSize int
	// CloseStdin, when set, is called after StdinOnce closed the stdin
	// FIFO, to close the process's stdin in the shim as well (the task's
	// CloseIO with WithStdinCloser): the shim reads the FIFO's EOF as the
	// end of stdin too, so this is a second way, as containerd does it.
	CloseStdin func() error
	// Buffers lends the output copies their read buffers (of any size,
	// *[]byte), held only from a read that found data until the data is
	// logged: the streams of a quiet container, most of a node's, then
	// hold none. Share one (NewBufferPool) among containers; nil gives
	// each copy a pool of its own.
	Buffers BufferPool
}

// NewBufferPool returns a pool of output read buffers to share among
// containers (Options.Buffers).
func NewBufferPool() *sync.Pool {
	return &sync.Pool{New: func() any { b := make([]byte, readBuffer); return &b }}
}

// BufferPool lends buffers (*[]byte) as a sync.Pool does.
type BufferPool interface {
	Get() any
	Put(any)
}

// ContainerIO connects a container's FIFOs to its CRI log and to attach
// sessions. It implements client/cio.IO.
type ContainerIO struct {
	id   string
	cfg  cio.Config
	opts Options

	log  *logs.Writer // nil without a log
	outs []*outputFIFO

	// copies counts the output copies still running; the last one to end
	// closes outputDone (a goroutine waiting for them would cost a stack
	// per container for nothing).
	copies     atomic.Int32
	copying    bool          // the copies were started
	outputDone chan struct{} // closed when every output copy ended

	mu       sync.Mutex
	sessions map[*session]struct{}
	// stdinHold keeps the stdin FIFO open (read-write, which neither
	// blocks nor fails without the shim) between sessions; nil without
	// stdin and once StdinOnce closed it.
	stdinHold   *os.File
	stdinClosed bool
	closed      bool

	closeOnce sync.Once
	closeErr  error
}

var _ cio.IO = (*ContainerIO)(nil)

// New makes the FIFOs of the container id in o.Dir and starts copying.
func New(id string, o Options) (*ContainerIO, error) {
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return nil, fmt.Errorf("containerio: container id %q cannot name a fifo: %w", id, errdefs.ErrInvalidArgument)
	}
	if o.Dir == "" {
		return nil, fmt.Errorf("containerio: container %q: no fifo directory: %w", id, errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("containerio: container %q: fifo directory %q: %w", id, o.Dir, err)
	}
	cfg := cio.Config{Terminal: o.Terminal, Stdout: filepath.Join(o.Dir, id+"-stdout")}
	if o.Stdin {
		cfg.Stdin = filepath.Join(o.Dir, id+"-stdin")
	}
	if !o.Terminal {
		cfg.Stderr = filepath.Join(o.Dir, id+"-stderr")
	}
	for _, p := range []string{cfg.Stdin, cfg.Stdout, cfg.Stderr} {
		if p == "" {
			continue
		}
		if err := mkfifo(p); err != nil {
			return nil, fmt.Errorf("containerio: container %q: %w", id, err)
		}
	}
	return start(id, cfg, o)
}

// Reattach takes over the existing FIFOs of cfg after a hulld restart (no
// output is lost: the FIFO kept it). cfg says which streams there are and
// whether there is a terminal; o gives the rest. Output FIFOs the shim no
// longer holds (the process exited while hulld was away) read as ended
// at once.
func Reattach(cfg cio.Config, o Options) (*ContainerIO, error) {
	if cfg.Stdout == "" && cfg.Stderr == "" && cfg.Stdin == "" {
		return nil, fmt.Errorf("containerio: reattach: no fifos in %+v: %w", cfg, errdefs.ErrInvalidArgument)
	}
	for _, p := range []string{cfg.Stdin, cfg.Stdout, cfg.Stderr} {
		if p == "" {
			continue
		}
		if err := checkFifo(p); err != nil {
			return nil, fmt.Errorf("containerio: reattach: %w", err)
		}
	}
	if cfg.Terminal {
		cfg.Stderr = ""
	}
	o.Terminal, o.Stdin = cfg.Terminal, cfg.Stdin != ""
	id := strings.TrimSuffix(filepath.Base(cfg.Stdout), "-stdout")
	c, err := start(id, cfg, o)
	if err != nil {
		return nil, err
	}
	// A live process's shim has had its ends open since the task's
	// create: an output FIFO without a writer now belongs to a process
	// that is gone, and its output is at its end.
	c.Cancel()
	return c, nil
}

// start opens the FIFOs of cfg and the log, and starts the copies.
func start(id string, cfg cio.Config, o Options) (_ *ContainerIO, retErr error) {
	c := &ContainerIO{id: id, cfg: cfg, opts: o, outputDone: make(chan struct{}), sessions: map[*session]struct{}{}}
	defer func() {
		if retErr != nil {
			c.release()
		}
	}()
	if cfg.Stdin != "" {
		f, err := os.OpenFile(cfg.Stdin, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("containerio: container %q: open stdin %q: %w", id, cfg.Stdin, err)
		}
		c.stdinHold = f
	}
	streams := []string{}
	for _, s := range []struct{ path, name string }{{cfg.Stdout, logs.Stdout}, {cfg.Stderr, logs.Stderr}} {
		if s.path == "" {
			continue
		}
		f, err := openOutputFIFO(s.path)
		if err != nil {
			return nil, fmt.Errorf("containerio: container %q: %w", id, err)
		}
		c.outs = append(c.outs, f)
		streams = append(streams, s.name)
	}
	if o.LogPath != "" {
		w, err := logs.Open(o.LogPath, o.MaxLineSize)
		if err != nil {
			return nil, fmt.Errorf("containerio: container %q: %w", id, err)
		}
		c.log = w
	}
	c.copying = true
	c.copies.Store(int32(len(c.outs)))
	if len(c.outs) == 0 {
		close(c.outputDone)
	}
	for i, f := range c.outs {
		go c.copyOutput(streams[i], f)
	}
	return c, nil
}

// copyOutput copies one output stream to the log and the sessions until
// the FIFO ends or is closed.
func (c *ContainerIO) copyOutput(stream string, f *outputFIFO) {
	defer func() {
		if c.copies.Add(-1) == 0 {
			close(c.outputDone)
		}
	}()
	var sw *logs.StreamWriter
	if c.log != nil {
		sw, _ = c.log.Stream(stream) // stream is one of the two it takes
	}
	logErr := false
	lend := c.opts.Buffers
	if lend == nil {
		lend = NewBufferPool()
	}
	for {
		bp, n, err := f.ReadLent(lend)
		buf := *bp
		if n > 0 {
			if sw != nil {
				if _, err := sw.Write(buf[:n]); err != nil && !logErr {
					// Once per stream: a full disk would fill hulld's log.
					logErr = true
					slog.Warn("container log write failed", "container", c.id, "stream", stream, "error", err)
				}
			}
			c.broadcast(stream, buf[:n])
		}
		lend.Put(bp)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				slog.Warn("container output read failed", "container", c.id, "stream", stream, "error", err)
			}
			break
		}
	}
	if sw != nil {
		sw.Close()
	}
}

// broadcast hands a copy of p to every session.
func (c *ContainerIO) broadcast(stream string, p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.sessions) == 0 {
		return
	}
	data := append([]byte(nil), p...)
	for s := range c.sessions {
		s.push(chunk{stderr: stream == logs.Stderr, data: data})
	}
}

// Config returns the FIFO paths for the task's create request.
func (c *ContainerIO) Config() cio.Config { return c.cfg }

// Cancel stops waiting for output FIFOs the shim has not opened: for a
// task that will never start. Output of opened ones goes on.
func (c *ContainerIO) Cancel() {
	for _, f := range c.outs {
		f.cancel()
	}
}

// Wait waits until the output is copied to its end, which comes when the
// shim closes the FIFOs after the process exited (or after Cancel, or
// Close).
func (c *ContainerIO) Wait() { <-c.outputDone }

// Close stops the copies, ends the attach sessions and closes the log and
// the FIFOs, which stay in Dir for a Reattach; a line of output cut by
// the close is logged as a partial one. Output not read yet stays in the
// FIFOs.
func (c *ContainerIO) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.release() })
	return c.closeErr
}

// release closes what start opened; also for a failed start.
func (c *ContainerIO) release() error {
	c.mu.Lock()
	c.closed = true
	for s := range c.sessions {
		s.end(errSessionClosed)
	}
	var errs []error
	if c.stdinHold != nil {
		errs = append(errs, c.stdinHold.Close())
		c.stdinHold = nil
	}
	c.mu.Unlock()
	for _, f := range c.outs {
		errs = append(errs, f.Close())
	}
	if c.copying {
		<-c.outputDone
	}
	if c.log != nil {
		errs = append(errs, c.log.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("containerio: close container %q: %w", c.id, err)
	}
	return nil
}

// ReopenLog reopens the CRI log at its path, after the kubelet rotated
// it; without a log there is nothing to do.
func (c *ContainerIO) ReopenLog() error {
	if c.log == nil {
		return nil
	}
	return c.log.Reopen()
}

// closeStdin closes the container's stdin for StdinOnce: once, and only
// when nothing else holds it.
func (c *ContainerIO) closeStdin() {
	c.mu.Lock()
	if c.stdinClosed || c.closed {
		c.mu.Unlock()
		return
	}
	c.stdinClosed = true
	hold := c.stdinHold
	c.stdinHold = nil
	c.mu.Unlock()
	if hold != nil {
		hold.Close()
	}
	if c.opts.CloseStdin != nil {
		if err := c.opts.CloseStdin(); err != nil {
			slog.Warn("close container stdin failed", "container", c.id, "error", err)
		}
	}
}

// errSessionClosed ends the sessions of a closed ContainerIO.
var errSessionClosed = fmt.Errorf("container io closed: %w", errdefs.ErrUnavailable)

// Attach streams the container's output to stdout/stderr (either may be
// nil) and stdin to the container until ctx is done, stdin ends, or the
// container's output ends. Several sessions may attach at once; each gets
// all output from the moment it attached.
//
// When stdin ends and the container has StdinOnce (without a terminal),
// the container's stdin is closed and the session goes on until the
// output ends, for the container's answer to its input; otherwise the end
// of stdin ends the session, as containerd does. stdout and stderr are
// closed when Attach returns, also to end a write blocked in them; stdin
// too if it is an io.Closer, to end a blocked read (a reader that is no
// Closer is left to end by itself: its goroutine discards what it reads
// after Attach returned). A session whose client cannot take the output
// as fast as it comes is dropped with Unavailable.
func (c *ContainerIO) Attach(ctx context.Context, stdin io.Reader, stdout, stderr io.WriteCloser) error {
	if c.cfg.Terminal {
		stderr = nil // one stream: everything is on stdout
	}
	s := newSession(stdout != nil, stderr != nil)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return fmt.Errorf("containerio: attach to container %q: %w", c.id, errSessionClosed)
	}
	stdinOK := stdin != nil && c.cfg.Stdin != "" && !c.stdinClosed
	if stdout != nil || stderr != nil {
		c.sessions[s] = struct{}{}
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.sessions, s)
		c.mu.Unlock()
	}()

	var stdinDone sync.WaitGroup
	stopStdin := func() {}
	if stdinOK {
		in, err := os.OpenFile(c.cfg.Stdin, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("containerio: attach to container %q: open stdin %q: %w", c.id, c.cfg.Stdin, err)
		}
		closer, waitable := stdin.(io.Closer)
		if waitable {
			stdinDone.Add(1)
		}
		go func() {
			if waitable {
				defer stdinDone.Done()
			}
			_, err := io.Copy(in, stdin)
			in.Close()
			if c.opts.StdinOnce && !c.cfg.Terminal {
				// However the first session's stdin ended (EOF, a gone
				// client), the container's stdin is closed for good.
				c.closeStdin()
				if stdout != nil || stderr != nil {
					return // the output goes on, for the answer to the input
				}
			}
			if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				s.end(fmt.Errorf("containerio: container %q: stdin: %w: %w", c.id, errdefs.ErrUnavailable, err))
				return
			}
			s.end(nil)
		}()
		stopStdin = func() {
			// Ends a write blocked on a full FIFO (the container does not
			// read), then a read blocked in the client's stream.
			in.SetWriteDeadline(time.Now())
			if waitable {
				closer.Close()
			}
			stdinDone.Wait()
		}
	}

	// The pump runs on its own so that a client blocked in Write can be
	// cut off: closing its writers is what ends that Write.
	pumpDone := make(chan error, 1)
	go func() { pumpDone <- s.pump(stdout, stderr, c.outputDone) }()
	var err error
	select {
	case err = <-pumpDone:
		pumpDone = nil
	case <-ctx.Done():
		s.end(nil)
	case <-s.dropped:
	}
	for _, w := range []io.WriteCloser{stdout, stderr} {
		if w != nil {
			w.Close()
		}
	}
	if pumpDone != nil {
		perr := <-pumpDone
		switch {
		case s.dropReason() != nil:
			err = s.dropReason()
		case ctx.Err() == nil:
			err = perr
		}
	}
	stopStdin()
	return err
}

// chunk is a piece of output for a session.
type chunk struct {
	stderr bool
	data   []byte
}

// session is one attach's queue of output, filled by the copies without
// blocking and emptied by its pump into the client's writers.
type session struct {
	stdout, stderr bool // which streams the client takes

	mu     sync.Mutex
	queue  []chunk
	queued int
	ended  bool
	err    error
	wake   chan struct{} // has a value when there is news for the pump
	// dropped is closed when the session is ended for an error: its
	// client is too slow or gone.
	dropped chan struct{}
}

func newSession(stdout, stderr bool) *session {
	return &session{stdout: stdout, stderr: stderr, wake: make(chan struct{}, 1), dropped: make(chan struct{})}
}

func (s *session) notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// push queues output; a session that has too much waiting is ended.
func (s *session) push(ch chunk) {
	if (ch.stderr && !s.stderr) || (!ch.stderr && !s.stdout) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	if s.queued+len(ch.data) > sessionBuffer {
		s.endLocked(fmt.Errorf("containerio: attach client too slow, over %d bytes of output waiting for it: %w", sessionBuffer, errdefs.ErrUnavailable))
		s.queue = nil
		return
	}
	s.queue = append(s.queue, ch)
	s.queued += len(ch.data)
	s.notify()
}

// end ends the session with err (nil: a normal end).
func (s *session) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked(err)
}

func (s *session) endLocked(err error) {
	if !s.ended {
		s.ended, s.err = true, err
		if err != nil {
			close(s.dropped)
		}
	}
	s.notify()
}

// dropReason is the error that ended the session, if one did.
func (s *session) dropReason() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// take returns the queued output, and the session's end if it ended.
func (s *session) take() ([]chunk, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queue
	s.queue, s.queued = nil, 0
	return q, s.ended, s.err
}

// pump writes the session's output to the client until the session ends
// or the output ends (after writing what is left).
func (s *session) pump(stdout, stderr io.Writer, outputDone <-chan struct{}) error {
	write := func(q []chunk) error {
		for _, ch := range q {
			w := stdout
			if ch.stderr {
				w = stderr
			}
			if w == nil {
				continue
			}
			if _, err := w.Write(ch.data); err != nil {
				return fmt.Errorf("containerio: attach client: %w: %w", errdefs.ErrUnavailable, err)
			}
		}
		return nil
	}
	for {
		q, ended, err := s.take()
		if ended {
			// A normal end (stdin) or a drop: what is queued still goes
			// on a normal end.
			if err == nil {
				return write(q)
			}
			return err
		}
		if err := write(q); err != nil {
			return err
		}
		select {
		case <-s.wake:
		case <-outputDone:
			// The copies are done, so nothing more is pushed.
			q, _, err := s.take()
			if err != nil {
				return err
			}
			return write(q)
		}
	}
}

// ExecIO is the stdio of one exec: a client/cio.Creator over FIFOs in
// dir, copying to the given streams; stdout/stderr may be nil. A stdin
// that ends closes the exec's stdin. Closing the IO removes the FIFOs.
func NewExec(dir string, stdin io.Reader, stdout, stderr io.Writer, tty bool) cio.Creator {
	opts := []cio.Opt{cio.WithStreams(stdin, stdout, stderr), cio.WithFIFODir(dir)}
	if tty {
		opts = append(opts, cio.WithTerminal)
	}
	return cio.NewCreator(opts...)
}

// CappedBuffer keeps at most max bytes of what is written and counts what
// it dropped (ExecSync's output cap: CVE-2022-31030, where unbounded
// output exhausted the runtime's memory). Writes never fail, so that the
// exec's output is drained to its end. Safe for concurrent use.
type CappedBuffer struct {
	mu      sync.Mutex
	max     int
	buf     []byte
	dropped int64
}

// NewCappedBuffer returns a buffer that keeps the first max bytes.
func NewCappedBuffer(max int) *CappedBuffer {
	if max < 0 {
		max = 0
	}
	return &CappedBuffer{max: max}
}

// Write keeps what fits and drops the rest; it always reports all of p
// written.
func (b *CappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	keep := min(len(p), b.max-len(b.buf))
	b.buf = append(b.buf, p[:keep]...)
	b.dropped += int64(len(p) - keep)
	return len(p), nil
}

// Bytes returns what was kept.
func (b *CappedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf...)
}

// Truncated reports whether anything was dropped.
func (b *CappedBuffer) Truncated() bool { return b.Dropped() > 0 }

// Dropped is how many bytes were dropped.
func (b *CappedBuffer) Dropped() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped
}
