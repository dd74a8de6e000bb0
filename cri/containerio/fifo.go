package containerio

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// mkfifo creates the FIFO at path, for its owner only: whoever can open it
// reads the container's output or writes its input. An existing FIFO is
// kept.
func mkfifo(path string) error {
	err := unix.Mkfifo(path, 0o600)
	if errors.Is(err, unix.EEXIST) {
		if !isFifo(path) {
			return fmt.Errorf("%q exists and is not a fifo: %w", path, errdefs.ErrAlreadyExists)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("mkfifo %q: %w", path, err)
	}
	return nil
}

// isFifo reports whether path names an existing FIFO.
func isFifo(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode()&os.ModeNamedPipe != 0
}

// checkFifo fails with NotFound unless path is an existing FIFO.
func checkFifo(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("fifo %q: %w: %w", path, errdefs.ErrNotFound, err)
		}
		return fmt.Errorf("fifo %q: %w", path, err)
	}
	if fi.Mode()&os.ModeNamedPipe == 0 {
		return fmt.Errorf("%q is not a fifo: %w", path, errdefs.ErrInvalidArgument)
	}
	return nil
}

// outputFIFO reads a stdout or stderr FIFO that the shim may not have
// opened yet, without holding a thread or blocking the opener.
//
// It is opened non-blocking, which returns at once. Linux then reads a
// FIFO without a writer as EOF, also before any writer came; so a zero
// read only counts as EOF once a writer was seen (a read said "nothing
// yet" instead of EOF), or when the kernel reports a hang-up (a writer
// came and went since the open). Until then the reader waits in the
// runtime poller, which wakes it when data or a hang-up arrives. The shim
// keeps its end open read-write for the life of the process, so while the
// process runs there always is a writer, also after a hulld restart.
type outputFIFO struct {
	f  *os.File
	rc syscall.RawConn

	mu         sync.Mutex
	seenWriter bool
	cancelled  bool
	closed     bool
}

func openOutputFIFO(path string) (*outputFIFO, error) {
	if err := checkFifo(path); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open fifo %q: %w", path, err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("fifo %q: %w", path, err)
	}
	return &outputFIFO{f: f, rc: rc}, nil
}

// ReadLent reads output into a buffer (a *[]byte) taken from pool only
// once there is something to read, or the end, so that waiting holds no
// buffer; io.EOF once the writers are gone (the process's output ended),
// or, after cancel, once no writer is there. The caller puts the buffer
// back once done with its n bytes.
func (o *outputFIFO) ReadLent(pool BufferPool) (*[]byte, int, error) {
	l := &lent{pool: pool}
	for {
		n, err := o.readInto(l)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// cancel woke us: with no writer now, there will be none.
			n, err = o.readNow(l.get())
			o.f.SetReadDeadline(time.Time{})
			if n == 0 && err == nil {
				l.giveBack()
				continue
			}
		}
		l.get() // the caller puts back what it got, also at the end
		return l.bp, n, err
	}
}

// lent is the buffer of one ReadLent: taken from pool when a read needs
// it, given back when the read got nothing.
type lent struct {
	pool BufferPool
	bp   *[]byte
}

func (l *lent) get() []byte {
	if l.bp == nil {
		l.bp = l.pool.Get().(*[]byte)
	}
	return *l.bp
}

func (l *lent) giveBack() {
	if l.bp != nil {
		l.pool.Put(l.bp)
		l.bp = nil
	}
}

// readInto waits in the poller for data or the end, reading into l's
// buffer once the FIFO is readable; an attempt that got nothing gives the
// buffer back.
func (o *outputFIFO) readInto(l *lent) (int, error) {
	var (
		n    int
		rerr error
	)
	err := o.rc.Read(func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), l.get())
		if rerr != nil || n == 0 {
			l.giveBack()
		}
		switch {
		case rerr == unix.EAGAIN:
			o.sawWriter()
			return false
		case rerr == unix.EINTR:
			return false
		case rerr == nil && n == 0 && !o.writerSeen():
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if _, err := unix.Poll(pfd, 0); err == nil && pfd[0].Revents&unix.POLLHUP != 0 {
				return true
			}
			return false
		}
		return true
	})
	if err != nil {
		return 0, o.closedErr(err)
	}
	if rerr != nil {
		return 0, rerr
	}
	if n == 0 {
		return 0, io.EOF
	}
	o.sawWriter()
	return n, nil
}

// closedErr says os.ErrClosed for the error of a raw read on a closed
// file, which the runtime reports in its own words.
func (o *outputFIFO) closedErr(err error) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return fmt.Errorf("fifo %s: %w", o.f.Name(), os.ErrClosed)
	}
	return err
}

// readNow reads without waiting: data, nothing yet with a writer there
// (0, nil), or EOF without one.
func (o *outputFIFO) readNow(p []byte) (int, error) {
	var (
		n    int
		rerr error
	)
	for {
		if err := o.rc.Control(func(fd uintptr) { n, rerr = unix.Read(int(fd), p) }); err != nil {
			return 0, o.closedErr(err)
		}
		if rerr != unix.EINTR {
			break
		}
	}
	switch {
	case rerr == unix.EAGAIN:
		o.sawWriter()
		return 0, nil
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, io.EOF
	}
	o.sawWriter()
	return n, nil
}

func (o *outputFIFO) sawWriter() {
	o.mu.Lock()
	o.seenWriter = true
	o.mu.Unlock()
}

func (o *outputFIFO) writerSeen() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.seenWriter
}

// cancel stops waiting for a writer that has not come: a Read waiting for
// the first writer returns EOF; one with a writer goes on.
func (o *outputFIFO) cancel() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cancelled || o.seenWriter {
		return
	}
	o.cancelled = true
	o.f.SetReadDeadline(time.Now())
}

// Close ends a waiting Read (with os.ErrClosed).
func (o *outputFIFO) Close() error {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	return o.f.Close()
}
