package cio

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The ways a fifo is opened: the client reads stdout and stderr and writes
// stdin.
const (
	readOnly  = unix.O_RDONLY
	writeOnly = unix.O_WRONLY
)

// errClosed is what a fifo returns once it is closed, also when it was
// closed before its other end ever opened.
var errClosed = fmt.Errorf("fifo: %w", os.ErrClosed)

// fifo is one end of a named pipe, opened without blocking the caller.
//
// Opening a FIFO for reading or writing blocks until its other end is
// opened, and the other end here is the shim, which opens it only once the
// task is created: a blocking open in NewTask would deadlock. So the open
// runs in a goroutine; Read and Write wait for it. Close stops a pending
// open by opening the other end itself, which lets the blocked open(2)
// return. The goroutine opens the FIFO through /proc/self/fd of an O_PATH
// descriptor, so that Close can reach the very same FIFO even after its
// path is removed.
type fifo struct {
	path   string
	flag   int // unix.O_RDONLY or unix.O_WRONLY
	pathFD int // O_PATH descriptor of the FIFO; -1 once closed

	opened  chan struct{} // closed when the open finished, either way
	file    *os.File      // set before opened is closed, nil on failure
	openErr error

	mu      sync.Mutex
	closing bool
	closed  chan struct{}
	once    sync.Once
}

// mkfifo creates the FIFO at path, readable and writable by its owner only:
// whoever can open it can read the container's output or feed its input.
func mkfifo(path string) error {
	if err := unix.Mkfifo(path, 0o600); err != nil && !errors.Is(err, unix.EEXIST) {
		return &os.PathError{Op: "mkfifo", Path: path, Err: err}
	}
	return nil
}

// openFifo starts opening the existing FIFO path for reading (unix.O_RDONLY)
// or writing (unix.O_WRONLY) and returns at once.
func openFifo(path string, flag int) (*fifo, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return nil, fmt.Errorf("%s is not a fifo", path)
	}
	pfd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := &fifo{path: path, flag: flag, pathFD: pfd, opened: make(chan struct{}), closed: make(chan struct{})}
	go f.open()
	return f, nil
}

// procPath names the FIFO through the O_PATH descriptor.
func (f *fifo) procPath() string { return "/proc/self/fd/" + strconv.Itoa(f.pathFD) }

func (f *fifo) open() {
	defer close(f.opened)
	fd, err := unix.Open(f.procPath(), f.flag|unix.O_CLOEXEC, 0)
	for errors.Is(err, unix.EINTR) {
		fd, err = unix.Open(f.procPath(), f.flag|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		f.openErr = &os.PathError{Op: "open", Path: f.path, Err: err}
		return
	}
	f.mu.Lock()
	closing := f.closing
	f.mu.Unlock()
	if closing {
		// Close woke us up by opening the other end itself.
		unix.Close(fd)
		f.openErr = errClosed
		return
	}
	// A non-blocking descriptor makes os.File use the runtime poller, so
	// that Close interrupts a Read or Write blocked on it.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		f.openErr = &os.PathError{Op: "setnonblock", Path: f.path, Err: err}
		return
	}
	f.file = os.NewFile(uintptr(fd), f.path)
}

// wait blocks until the open is done or the fifo is closed.
func (f *fifo) wait() (*os.File, error) {
	select {
	case <-f.opened:
	case <-f.closed:
		return nil, errClosed
	}
	if f.openErr != nil {
		return nil, f.openErr
	}
	return f.file, nil
}

// Read reads from a FIFO opened for reading; it returns io.EOF once the
// writer closed its end.
func (f *fifo) Read(p []byte) (int, error) {
	file, err := f.wait()
	if err != nil {
		return 0, err
	}
	return file.Read(p)
}

// Write writes to a FIFO opened for writing.
func (f *fifo) Write(p []byte) (int, error) {
	file, err := f.wait()
	if err != nil {
		return 0, err
	}
	return file.Write(p)
}

// cancelOpen stops an open that has not finished, so that nothing waits
// for a shim that will never open the other end; an opened fifo stays open.
func (f *fifo) cancelOpen() {
	select {
	case <-f.opened:
		return
	default:
	}
	f.Close()
}

// Close closes the fifo, first ending a pending open: it opens the other
// end without blocking, which lets the pending open(2) return, until the
// open goroutine has finished. An O_WRONLY|O_NONBLOCK open fails (ENXIO)
// until the reader's open(2) has registered it, so it is retried briefly.
func (f *fifo) Close() error {
	var err error
	f.once.Do(func() {
		f.mu.Lock()
		f.closing = true
		f.mu.Unlock()
		close(f.closed)
		other := unix.O_WRONLY
		if f.flag != unix.O_RDONLY {
			other = unix.O_RDONLY
		}
		for done := false; !done; {
			select {
			case <-f.opened:
				done = true
				continue
			default:
			}
			if fd, err := unix.Open(f.procPath(), other|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err == nil {
				unix.Close(fd)
			}
			select {
			case <-f.opened:
				done = true
			case <-time.After(5 * time.Millisecond):
			}
		}
		if f.file != nil {
			err = f.file.Close()
		}
		unix.Close(f.pathFD)
	})
	return err
}

var _ io.ReadWriteCloser = (*fifo)(nil)
