package daemon

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// rawListener hands gRPC unix connections whose reads and writes are raw
// system calls on the non-blocking socket (see rawConn).
type rawListener struct{ *net.UnixListener }

// newRawListener wraps l, a unix listener; any other listener is returned
// as it is.
func newRawListener(l net.Listener) net.Listener {
	if ul, ok := l.(*net.UnixListener); ok {
		return rawListener{ul}
	}
	return l
}

func (l rawListener) Accept() (net.Conn, error) {
	c, err := l.UnixListener.AcceptUnix()
	if err != nil {
		return nil, err
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return c, nil
	}
	return &rawConn{UnixConn: c, rc: rc}, nil
}

// rawConn reads and writes its socket with raw system calls, and waits in
// Go's poller only when there is nothing to read or no room to write.
//
// Why: a stream of small calls (ctr images ls makes six per image) costs
// hulld a read and a write or two per call. Go's own path enters and leaves
// the scheduler around each of them, and on a daemon otherwise idle that
// wakes the runtime's monitor thread every time: a measurable share of
// hulld's CPU per call. The socket is non-blocking, so neither call can
// block; deadlines and Close still work through the poller that rc.Read and
// rc.Write wait in.
type rawConn struct {
	*net.UnixConn
	rc syscall.RawConn
}

func (c *rawConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var (
		n     int
		errno syscall.Errno
	)
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false
			}
			n, errno = int(r), e
			return true
		}
	})
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *rawConn) Write(p []byte) (int, error) {
	var (
		written int
		errno   syscall.Errno
	)
	err := c.rc.Write(func(fd uintptr) bool {
		for written < len(p) {
			r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[written])), uintptr(len(p)-written))
			switch e {
			case 0:
				written += int(r)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false
			default:
				errno = e
				return true
			}
		}
		return true
	})
	switch {
	case err != nil:
		return written, c.opError("write", err)
	case errno != 0:
		return written, c.opError("write", os.NewSyscallError("write", errno))
	}
	return written, nil
}

func (c *rawConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "unix", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
