package stdio

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// copyOutput moves a process's output from src, the read end of its pipe,
// into dst, the client's FIFO, until the process and every other holder of
// the pipe's write end are gone.
//
// Pipe to FIFO is pipe to pipe, which splice(2) moves inside the kernel:
// no copy through the shim, and no 32 KiB buffer per stream that io.Copy
// would keep allocated for the process's life (the standard library
// splices only from sockets). Both ends are non-blocking and wait in the
// runtime poller, as io.Copy's would. A destination splice refuses (a
// path the client made that is neither a pipe nor a file) falls back to
// io.Copy.
func copyOutput(dst, src *os.File) error {
	n, err := splicePipe(dst, src)
	if errors.Is(err, unix.EINVAL) && n == 0 {
		_, err = io.Copy(dst, src)
	}
	return err
}

// spliceChunk is the most one splice call moves: a pipe holds 64 KiB by
// default, so one call usually empties it.
const spliceChunk = 1 << 20

// splicePipe splices src into dst until src's EOF, returning how many
// bytes it moved.
func splicePipe(dst, src *os.File) (int64, error) {
	sc, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	dc, err := dst.SyscallConn()
	if err != nil {
		return 0, err
	}
	// Both descriptors stay open while this runs: the caller closes
	// them after it returns, and no one else does.
	var sfd, dfd int
	sc.Control(func(fd uintptr) { sfd = int(fd) })
	dc.Control(func(fd uintptr) { dfd = int(fd) })
	splice := func() (int, error) {
		for {
			n, err := unix.Splice(sfd, nil, dfd, nil, spliceChunk, unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
			if err != unix.EINTR {
				return int(n), err
			}
		}
	}
	var total int64
	for {
		var n int
		var serr error
		dstFull := false
		// EAGAIN means src is empty (with writers left) or dst is full;
		// src's unread byte count tells which, and an empty src without
		// writers is the end even while dst is full (the kernel checks
		// dst's room before src's end). Each wait follows an attempt
		// made after the wait's readiness was reset, so no wake-up is
		// lost.
		err := sc.Read(func(uintptr) bool {
			n, serr = splice()
			if serr != unix.EAGAIN {
				return true
			}
			// TIOCINQ is FIONREAD's value on Linux, which pipes answer.
			if avail, err := unix.IoctlGetInt(sfd, unix.TIOCINQ); err == nil && avail > 0 {
				dstFull = true
				return true
			}
			pfd := []unix.PollFd{{Fd: int32(sfd), Events: unix.POLLIN}}
			if k, err := unix.Poll(pfd, 0); err == nil && k == 1 && pfd[0].Revents&unix.POLLHUP != 0 {
				if avail, err := unix.IoctlGetInt(sfd, unix.TIOCINQ); err == nil && avail == 0 {
					n, serr = 0, nil // no writer left, nothing buffered
					return true
				}
			}
			return false
		})
		if err != nil {
			return total, err
		}
		if dstFull {
			// Only this loop reads src, so its bytes wait for us: an
			// EAGAIN now means dst is still full.
			err := dc.Write(func(uintptr) bool {
				n, serr = splice()
				return serr != unix.EAGAIN
			})
			if err != nil {
				return total, err
			}
		}
		if serr != nil {
			return total, serr
		}
		if n == 0 {
			return total, nil // EOF: no writer left and nothing buffered
		}
		total += int64(n)
	}
}
