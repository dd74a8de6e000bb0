// Package stdio connects a container process's standard streams to what
// the client asked for: FIFOs it created (copied to and from pipes runc
// hands to the process), a file:// URI (given to the process directly), or,
// for a terminal, the pty master runc sends back over a console socket.
//
// A stdout FIFO is opened read-write: the open does not wait for the
// client's reader, and writes never fail with EPIPE when the client goes
// away (the data then waits in the FIFO, as with containerd). When the
// process and every other holder of its output pipe are gone, the copy
// ends and the FIFO is closed, which is the EOF the client waits for.
package stdio

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/shim/runc"
)

// Config says where a process's streams go, as the task API carries it.
type Config struct {
	Stdin, Stdout, Stderr string
	Terminal              bool
	// UID and GID own the pipes given to the process, so that a process
	// running as another user can reopen /proc/self/fd/N.
	UID, GID int
}

// IO is the set-up of one process's streams.
type IO struct {
	cfg Config
	// Child are the files runc passes to the process; the shim's copies
	// are closed by CloseChild once runc has started.
	Child runc.Stdio

	console *ConsoleSocket

	mu     sync.Mutex
	stdinW io.WriteCloser // what the stdin copy writes to
	// stdinIn is the stdin FIFO while its copy runs; CloseStdin has the
	// copy drain it and close stdinW then, so nothing written before
	// the close is lost.
	stdinIn *stdinFIFO
	master  *os.File // the pty master, for a terminal
	closers []io.Closer
	copies  sync.WaitGroup // stdout/stderr copies
	// pending are the output copies Started begins: until runc create or
	// exec succeeded, what is written to the pipes is runc's own error
	// (runc writes it to its stderr, which is the process's), which the
	// shim returns anyway; copied, the client would print it twice.
	pending []outputCopy
}

// outputCopy is a copy from the read end of a process's output pipe to
// the client's FIFO.
type outputCopy struct{ fifo, r *os.File }

// New prepares the streams of cfg. For a terminal, ConsoleSocket returns
// the socket runc must send the pty to.
func New(cfg Config) (_ *IO, retErr error) {
	p := &IO{cfg: cfg}
	defer func() {
		if retErr != nil {
			p.Close()
		}
	}()
	if cfg.Terminal {
		cs, err := NewConsoleSocket()
		if err != nil {
			return nil, err
		}
		p.console = cs
		return p, nil
	}
	if cfg.Stdin != "" {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		p.Child.Stdin, p.stdinW = r, w
		p.closers = append(p.closers, w)
	}
	var err error
	if p.Child.Stdout, err = p.output(cfg.Stdout, nil); err != nil {
		return nil, err
	}
	var same *os.File // one file:// target for both streams is opened once
	if cfg.Stderr == cfg.Stdout {
		same = p.Child.Stdout
	}
	if p.Child.Stderr, err = p.output(cfg.Stderr, same); err != nil {
		return nil, err
	}
	return p, nil
}

// output returns the file the process writes to for target, starting the
// copy from it into target when target is a FIFO.
func (p *IO) output(target string, sameFile *os.File) (*os.File, error) {
	if target == "" {
		return nil, nil
	}
	// file:///path: the process writes to the file itself. Other URI
	// schemes (binary://, a logging binary) are not supported yet.
	if path, ok := strings.CutPrefix(target, "file://"); ok {
		if sameFile != nil {
			// Two descriptors, so CloseChild may close each once.
			return os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open log file %q: %w", path, err)
		}
		return f, nil
	}
	if scheme, _, ok := strings.Cut(target, "://"); ok && scheme != "fifo" && !strings.Contains(scheme, "/") {
		return nil, fmt.Errorf("stdio URI %q: scheme %q: %w", target, scheme, errdefs.ErrNotImplemented)
	}
	target = strings.TrimPrefix(target, "fifo://")
	// A FIFO (or any path the client made): open it read-write so the
	// open does not block and writes never see EPIPE.
	fifo, err := os.OpenFile(target, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open stdio %q: %w", target, err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		fifo.Close()
		return nil, err
	}
	if p.cfg.UID != 0 || p.cfg.GID != 0 {
		w.Chown(p.cfg.UID, p.cfg.GID)
	}
	p.pending = append(p.pending, outputCopy{fifo: fifo, r: r})
	return w, nil
}

// startCopies begins the output copies New prepared.
func (p *IO) startCopies() {
	for _, oc := range p.pending {
		p.copies.Add(1)
		go func() {
			defer p.copies.Done()
			copyOutput(oc.fifo, oc.r)
			oc.r.Close()
			oc.fifo.Close()
		}()
	}
	p.pending = nil
}

// ConsoleSocketPath is the socket runc create/exec must send the pty to,
// or "" without a terminal.
func (p *IO) ConsoleSocketPath() string {
	if p.console == nil {
		return ""
	}
	return p.console.Path
}

// CloseChild closes the shim's copies of the process's files once runc
// holds them, so that the copies see EOF when the process is done.
func (p *IO) CloseChild() {
	for _, f := range []*os.File{p.Child.Stdin, p.Child.Stdout, p.Child.Stderr} {
		if f != nil {
			f.Close()
		}
	}
}

// Started finishes the set-up after runc create or exec succeeded: it
// starts copying the output, receives the pty for a terminal and starts
// copying stdin.
func (p *IO) Started() error {
	p.CloseChild()
	p.startCopies()
	if p.console != nil {
		master, err := p.console.Receive(10 * time.Second)
		p.console.Close()
		p.console = nil
		if err != nil {
			return err
		}
		p.mu.Lock()
		p.master = master
		p.stdinW = master
		p.closers = append(p.closers, master)
		p.mu.Unlock()
		if p.cfg.Stdout != "" {
			fifo, err := os.OpenFile(p.cfg.Stdout, os.O_RDWR, 0)
			if err != nil {
				return fmt.Errorf("open stdio %q: %w", p.cfg.Stdout, err)
			}
			p.copies.Add(1)
			go func() {
				defer p.copies.Done()
				io.Copy(fifo, master) // ends with EIO when the last slave closes
				fifo.Close()
			}()
		}
	}
	if p.cfg.Stdin != "" && p.stdinW != nil {
		w := p.stdinW
		terminal := p.master != nil
		fifo, err := openStdinFIFO(p.cfg.Stdin)
		if err != nil {
			return fmt.Errorf("open stdin %q: %w", p.cfg.Stdin, err)
		}
		p.mu.Lock()
		p.closers = append(p.closers, fifo)
		if !terminal {
			p.stdinIn = fifo
		}
		p.mu.Unlock()
		go func() {
			io.Copy(w, fifo)
			fifo.Close()
			if !terminal {
				p.mu.Lock()
				p.stdinIn = nil
				p.closeStdinLocked()
				p.mu.Unlock()
			}
		}()
	}
	return nil
}

// CloseStdin closes the process's stdin, which it reads as EOF. For a
// terminal it sends the EOF character instead, as closing the master
// would hang up the terminal.
//
// While the stdin FIFO is being copied, the copy is told to finish with
// what the FIFO holds and close stdin after it: a client that wrote its
// input and then closed stdin (ctr's and containerd's CloseIO) must not
// lose the bytes still in the FIFO.
func (p *IO) CloseStdin() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.master != nil {
		p.master.Write([]byte{4})
		return
	}
	if p.stdinIn != nil {
		p.stdinIn.drain()
		return
	}
	p.closeStdinLocked()
}

func (p *IO) closeStdinLocked() {
	if p.stdinW != nil {
		p.stdinW.Close()
		p.stdinW = nil
	}
}

// Resize sets the terminal's window size; without a terminal it fails
// with NotFound.
func (p *IO) Resize(width, height uint32) error {
	p.mu.Lock()
	m := p.master
	p.mu.Unlock()
	if m == nil {
		return fmt.Errorf("process has no terminal: %w", errdefs.ErrNotFound)
	}
	ws := &unix.Winsize{Col: uint16(width), Row: uint16(height)}
	rc, err := m.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	rc.Control(func(fd uintptr) { serr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, ws) })
	return serr
}

// Wait waits up to d for the output copies to end; they end when the
// process and everything that inherited its output are gone.
func (p *IO) Wait(d time.Duration) bool {
	done := make(chan struct{})
	go func() { p.copies.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// Close releases everything: pipes, the pty master, the console socket.
func (p *IO) Close() {
	p.mu.Lock()
	closers := p.closers
	p.closers = nil
	p.stdinW = nil
	p.mu.Unlock()
	for _, c := range closers {
		c.Close()
	}
	// Copies never started (runc failed): their pipes and FIFOs go here.
	for _, oc := range p.pending {
		oc.r.Close()
		oc.fifo.Close()
	}
	p.pending = nil
	if p.console != nil {
		p.console.Close()
		p.console = nil
	}
	p.CloseChild()
}
