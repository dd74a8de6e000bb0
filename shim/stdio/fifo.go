package stdio

import (
	"errors"
	"io"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// stdinFIFO reads a stdin FIFO without holding a thread while the client
// has not opened its end yet. A blocking open would park an OS thread
// for the life of a detached container whose client never writes (as
// `ctr run -d` does); instead the FIFO is opened non-blocking, which on
// Linux reads as EOF until a writer comes, so until one has been seen a
// zero read means "wait for the poller" rather than EOF.
type stdinFIFO struct {
	f          *os.File
	rc         syscall.RawConn
	seenWriter bool
	// draining makes Read return what the FIFO holds now and then EOF,
	// instead of waiting for more.
	draining atomic.Bool
}

// drain has Read finish with what the FIFO holds: the client closed stdin
// after writing. A Read waiting in the poller is woken by the deadline.
func (s *stdinFIFO) drain() {
	s.draining.Store(true)
	s.f.SetReadDeadline(time.Now())
}

// readNow reads what the FIFO holds without waiting; nothing is EOF.
func (s *stdinFIFO) readNow(p []byte) (int, error) {
	var (
		n    int
		rerr error
	)
	for {
		if err := s.rc.Control(func(fd uintptr) { n, rerr = unix.Read(int(fd), p) }); err != nil {
			return 0, err
		}
		if rerr != unix.EINTR {
			break
		}
	}
	switch {
	case rerr == unix.EAGAIN, rerr == nil && n == 0:
		return 0, io.EOF
	case rerr != nil:
		return 0, rerr
	}
	return n, nil
}

func openStdinFIFO(path string) (*stdinFIFO, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &stdinFIFO{f: f, rc: rc}, nil
}

func (s *stdinFIFO) Read(p []byte) (int, error) {
	if s.draining.Load() {
		return s.readNow(p)
	}
	var (
		n    int
		rerr error
	)
	err := s.rc.Read(func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), p)
		switch {
		case rerr == unix.EAGAIN:
			s.seenWriter = true // a writer is there, with nothing to say yet
			return false
		case rerr == unix.EINTR:
			return false
		case n == 0 && rerr == nil && !s.seenWriter:
			// No writer now: none came yet, or one came and went. The
			// kernel says which with POLLHUP (level-triggered here, so
			// a hang-up before the runtime poller was armed is not
			// missed).
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if _, err := unix.Poll(pfd, 0); err == nil && pfd[0].Revents&unix.POLLHUP != 0 {
				return true
			}
			return false
		}
		return true
	})
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) && s.draining.Load() {
			return s.readNow(p)
		}
		return 0, err
	}
	if rerr != nil {
		return 0, rerr
	}
	if n == 0 {
		return 0, io.EOF
	}
	s.seenWriter = true
	return n, nil
}

func (s *stdinFIFO) Close() error { return s.f.Close() }
