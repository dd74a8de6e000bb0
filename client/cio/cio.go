// Package cio connects a task's standard streams to the caller's readers
// and writers.
//
// A task's stdio are named pipes (FIFOs) that the client creates and the
// shim opens: the client copies from an io.Reader into the stdin FIFO and
// from the stdout and stderr FIFOs into io.Writers. Paths travel to the
// daemon in the task's Create (or an exec's) request, which is why the
// client, not the daemon, makes them: the shim runs on the same host and
// needs nothing but the paths.
//
// A Creator makes the FIFOs for a new process; an Attach opens the FIFOs of
// a process that exists already (a task loaded by another client). Both
// return an IO, whose Config holds the paths to send and whose Wait and
// Close end the copying and remove the FIFOs.
//
// FIFOs live in a directory of their own (mode 0700) under a base directory
// the caller picks with WithFIFODir; the default is a "hull-fifo" directory
// under os.TempDir(). Other values than FIFO paths work too: NullIO sends
// none (the shim then uses /dev/null) and LogFile sends a file:// URI the
// shim writes to itself.
package cio

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sync"

	"github.com/containerd/errdefs"
)

// Config is what the daemon is told about a process's stdio: FIFO paths or
// URIs (file://, binary://) for each stream, empty for none.
type Config struct {
	// Terminal asks for a pseudo-terminal: the shim then copies the
	// terminal to Stdout and there is no separate Stderr.
	Terminal bool
	Stdin    string
	Stdout   string
	Stderr   string
}

// IO is the client's side of a process's stdio.
type IO interface {
	// Config returns the paths to send to the daemon.
	Config() Config
	// Cancel stops waiting for FIFOs the shim has not opened yet, for
	// when the process will never start (its creation failed). Copying
	// on opened FIFOs goes on.
	Cancel()
	// Wait waits until stdout and stderr are copied to the end, which
	// comes when the shim closes them after the process exits. Stdin is
	// not waited for: the reader may never end.
	Wait()
	// Close closes every FIFO, ending the copies, and removes the FIFOs.
	Close() error
}

// Creator makes the IO of a new process; id names the process (the
// container's id for a task, the exec id for an exec) in FIFO names.
type Creator func(id string) (IO, error)

// Attach makes an IO over the stdio of an existing process, as reported
// by the daemon.
type Attach func(Config) (IO, error)

// Streams are the caller's ends of a process's stdio; nil for a stream the
// process should not have.
type Streams struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Terminal       bool
}

type options struct {
	streams Streams
	fifoDir string
}

// Opt configures NewCreator and NewAttach.
type Opt func(*options)

// WithStreams sets the readers and writers to copy from and to. A nil
// stdin gives the process none; nil stdout and stderr give it neither,
// and one of them nil discards that stream (shims want both or neither).
//
// Shims keep a process's stdin open after the client's end closes, so
// that a reconnecting client can go on writing: for the process to read
// EOF, call CloseIO with WithStdinCloser once stdin is consumed.
func WithStreams(stdin io.Reader, stdout, stderr io.Writer) Opt {
	return func(o *options) {
		o.streams.Stdin, o.streams.Stdout, o.streams.Stderr = stdin, stdout, stderr
	}
}

// WithStdio connects the process to this process's stdin, stdout and
// stderr.
func WithStdio(o *options) { WithStreams(os.Stdin, os.Stdout, os.Stderr)(o) }

// WithTerminal asks for a pseudo-terminal: there is no separate stderr, so
// no stderr FIFO is made and the stderr writer is ignored. The process's
// spec must ask for a terminal too.
func WithTerminal(o *options) { o.streams.Terminal = true }

// WithFIFODir makes the FIFO directories under dir instead of the default
// (DefaultFIFODir). dir is created (mode 0700) if needed.
func WithFIFODir(dir string) Opt { return func(o *options) { o.fifoDir = dir } }

// DefaultFIFODir is the base directory of FIFO directories when none is
// given: under the temporary directory, never under a daemon's state
// directory, which belongs to the daemon.
func DefaultFIFODir() string { return filepath.Join(os.TempDir(), "hull-fifo") }

// NewCreator returns a Creator that makes FIFOs for the streams set by
// opts and copies between them and the streams.
func NewCreator(opts ...Opt) Creator {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.fifoDir == "" {
		o.fifoDir = DefaultFIFODir()
	}
	// Shims (containerd's runc shim among them) take a process's stdout
	// and stderr as a pair, both set or neither: a stream the caller does
	// not want is discarded here instead.
	if !o.streams.Terminal {
		switch {
		case o.streams.Stdout != nil && o.streams.Stderr == nil:
			o.streams.Stderr = io.Discard
		case o.streams.Stdout == nil && o.streams.Stderr != nil:
			o.streams.Stdout = io.Discard
		}
	}
	return func(id string) (IO, error) {
		if id == "" {
			return nil, fmt.Errorf("cio: process id must not be empty: %w", errdefs.ErrInvalidArgument)
		}
		if err := os.MkdirAll(o.fifoDir, 0o700); err != nil {
			return nil, fmt.Errorf("cio: fifo base directory: %w", err)
		}
		// A new directory per process: ids are not unique across
		// namespaces, and removing the directory removes every FIFO.
		dir, err := os.MkdirTemp(o.fifoDir, id+"-")
		if err != nil {
			return nil, fmt.Errorf("cio: fifo directory for %q: %w", id, err)
		}
		cfg := Config{Terminal: o.streams.Terminal}
		if o.streams.Stdin != nil {
			cfg.Stdin = filepath.Join(dir, id+"-stdin")
		}
		if o.streams.Stdout != nil {
			cfg.Stdout = filepath.Join(dir, id+"-stdout")
		}
		if o.streams.Stderr != nil && !o.streams.Terminal {
			cfg.Stderr = filepath.Join(dir, id+"-stderr")
		}
		for _, p := range []string{cfg.Stdin, cfg.Stdout, cfg.Stderr} {
			if p == "" {
				continue
			}
			if err := mkfifo(p); err != nil {
				os.RemoveAll(dir)
				return nil, fmt.Errorf("cio: %w", err)
			}
		}
		pio, err := copyIO(cfg, o.streams, func() error { return os.RemoveAll(dir) })
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		return pio, nil
	}
}

// NewAttach returns an Attach that opens the FIFOs of an existing process
// and copies between them and the streams set by opts. Closing the IO
// removes the FIFOs, and their directory once it is empty: attaching is
// how a client that did not create a task takes over its stdio.
func NewAttach(opts ...Opt) Attach {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return func(cfg Config) (IO, error) {
		// Only the streams both sides have are connected; every FIFO of
		// the process is removed at the end.
		conn := cfg
		if o.streams.Stdin == nil {
			conn.Stdin = ""
		}
		if o.streams.Stdout == nil {
			conn.Stdout = ""
		}
		if o.streams.Stderr == nil || cfg.Terminal {
			conn.Stderr = ""
		}
		remove := func() error {
			var first error
			dirs := map[string]bool{}
			for _, p := range []string{cfg.Stdin, cfg.Stdout, cfg.Stderr} {
				if !isFifo(p) {
					continue
				}
				if err := os.Remove(p); err != nil && first == nil {
					first = err
				}
				dirs[filepath.Dir(p)] = true
			}
			for d := range dirs {
				os.Remove(d) // only if empty: it may hold others' FIFOs
			}
			return first
		}
		pio, err := copyIO(conn, o.streams, remove)
		if err != nil {
			return nil, err
		}
		pio.cfg = cfg
		return pio, nil
	}
}

// isFifo reports whether path names an existing FIFO.
func isFifo(path string) bool {
	if path == "" {
		return false
	}
	fi, err := os.Stat(path)
	return err == nil && fi.Mode()&os.ModeNamedPipe != 0
}

// NullIO gives the process no stdio: the shim connects it to /dev/null.
func NullIO(string) (IO, error) { return &staticIO{}, nil }

// LogFile returns a Creator that makes the shim write the process's stdout
// and stderr to the file at path (created if needed), as a file:// URI.
// The file outlives the process; nothing is copied by the client.
func LogFile(path string) Creator {
	return func(string) (IO, error) {
		if !filepath.IsAbs(path) {
			return nil, fmt.Errorf("cio: log file %q is not an absolute path: %w", path, errdefs.ErrInvalidArgument)
		}
		u := (&url.URL{Scheme: "file", Path: path}).String()
		return &staticIO{cfg: Config{Stdout: u, Stderr: u}}, nil
	}
}

// staticIO is an IO with nothing to copy: no streams, or URIs the shim
// handles itself.
type staticIO struct{ cfg Config }

func (s *staticIO) Config() Config { return s.cfg }
func (s *staticIO) Cancel()        {}
func (s *staticIO) Wait()          {}
func (s *staticIO) Close() error   { return nil }

// pipeIO copies between FIFOs and the caller's streams.
type pipeIO struct {
	cfg    Config
	fifos  []*fifo
	copies sync.WaitGroup // stdout and stderr copies
	remove func() error

	closeOnce sync.Once
	closeErr  error
}

// copyIO opens the FIFOs of cfg and starts copying; remove, called by
// Close, removes them.
func copyIO(cfg Config, s Streams, remove func() error) (*pipeIO, error) {
	p := &pipeIO{cfg: cfg, remove: remove}
	fail := func(err error) (*pipeIO, error) {
		for _, f := range p.fifos {
			f.Close()
		}
		return nil, fmt.Errorf("cio: %w", err)
	}
	if cfg.Stdin != "" {
		f, err := openFifo(cfg.Stdin, writeOnly)
		if err != nil {
			return fail(err)
		}
		p.fifos = append(p.fifos, f)
		// Not waited for: the reader may block forever. Closing the
		// FIFO after the copy is what gives the process its EOF.
		go func() {
			io.Copy(f, s.Stdin)
			f.Close()
		}()
	}
	for _, out := range []struct {
		path string
		w    io.Writer
	}{{cfg.Stdout, s.Stdout}, {cfg.Stderr, s.Stderr}} {
		if out.path == "" {
			continue
		}
		f, err := openFifo(out.path, readOnly)
		if err != nil {
			return fail(err)
		}
		p.fifos = append(p.fifos, f)
		p.copies.Add(1)
		go func(w io.Writer) {
			defer p.copies.Done()
			io.Copy(w, f)
		}(out.w)
	}
	return p, nil
}

func (p *pipeIO) Config() Config { return p.cfg }

func (p *pipeIO) Cancel() {
	for _, f := range p.fifos {
		f.cancelOpen()
	}
}

func (p *pipeIO) Wait() { p.copies.Wait() }

func (p *pipeIO) Close() error {
	p.closeOnce.Do(func() {
		var errs []error
		for _, f := range p.fifos {
			if err := f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
				errs = append(errs, err)
			}
		}
		// The copies end once their FIFOs are closed; the FIFOs go after.
		p.copies.Wait()
		if p.remove != nil {
			if err := p.remove(); err != nil {
				errs = append(errs, err)
			}
		}
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}
