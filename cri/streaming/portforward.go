package streaming

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	goruntime "runtime"
	"strconv"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// dialTimeout bounds the dial of the pod's port: on loopback it answers
// at once unless the pod is wedged.
const dialTimeout = 10 * time.Second

// PortForward copies stream to and from port on the pod's loopback: dial
// 127.0.0.1:port (or [::1]) from inside the network namespace at netnsPath
// (setns on a locked OS thread, dial, then go back; never leave a thread
// in the pod's namespace), then copy both ways until either side ends.
// stream is closed when PortForward returns.
func PortForward(ctx context.Context, netnsPath string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	if port <= 0 || port > 65535 {
		return fmt.Errorf("streaming: port %d is not a TCP port: %w", port, errdefs.ErrInvalidArgument)
	}
	if netnsPath == "" {
		return fmt.Errorf("streaming: port forward to port %d: no network namespace: %w", port, errdefs.ErrInvalidArgument)
	}
	conn, err := dialInNetNS(ctx, netnsPath, port)
	if err != nil {
		return err
	}
	defer conn.Close()

	done := make(chan error, 2)
	go func() {
		_, err := io.Copy(conn, stream)
		done <- err
	}()
	go func() {
		_, err := io.Copy(stream, conn)
		done <- err
	}()
	var first error
	pending := 2
	select {
	case first = <-done:
		pending--
	case <-ctx.Done():
	}
	// Either end is the end of both: closing them ends the other copy.
	conn.Close()
	stream.Close()
	for ; pending > 0; pending-- {
		<-done
	}
	if first != nil && !errors.Is(first, net.ErrClosed) {
		return fmt.Errorf("streaming: port forward to port %d in %s: %w", port, netnsPath, first)
	}
	return nil
}

// dialInNetNS connects to port on the loopback of the network namespace at
// path, IPv4 first. A socket stays in the namespace it was made in, so
// only the dial runs in it: on a thread of its own, locked, that goes
// back to the host's namespace after, or dies with its goroutine if it
// cannot.
func dialInNetNS(ctx context.Context, path string, port int32) (net.Conn, error) {
	ns, err := os.Open(path)
	if err != nil {
		var class error = errdefs.ErrUnavailable
		if errors.Is(err, os.ErrNotExist) {
			class = errdefs.ErrNotFound
		}
		return nil, fmt.Errorf("streaming: network namespace %q: %w: %w", path, class, err)
	}
	defer ns.Close()
	type result struct {
		conn net.Conn
		err  error
	}
	res := make(chan result, 1)
	go func() {
		goruntime.LockOSThread()
		// Unlocked only once back home: a thread that exits locked is
		// ended by the runtime, not reused.
		conn, err := func() (net.Conn, error) {
			home, err := os.Open("/proc/thread-self/ns/net")
			if err != nil {
				return nil, fmt.Errorf("streaming: this thread's network namespace: %w", err)
			}
			defer home.Close()
			if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
				return nil, fmt.Errorf("streaming: enter network namespace %q: %w", path, err)
			}
			conn, dialErr := dial(ctx, port)
			if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
				if conn != nil {
					conn.Close()
				}
				// Stay locked: the thread goes with the goroutine.
				return nil, fmt.Errorf("streaming: leave network namespace %q: %w", path, err)
			}
			goruntime.UnlockOSThread()
			return conn, dialErr
		}()
		res <- result{conn, err}
	}()
	r := <-res
	if r.err != nil {
		return nil, r.err
	}
	return r.conn, nil
}

// dial connects to port on 127.0.0.1, or on ::1 if that fails, from the
// calling thread's namespace.
func dial(ctx context.Context, port int32) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	p := strconv.Itoa(int(port))
	conn, err4 := d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", p))
	if err4 == nil {
		return conn, nil
	}
	conn, err6 := d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", p))
	if err6 == nil {
		return conn, nil
	}
	return nil, fmt.Errorf("streaming: connect to port %d in the pod: %w: %w", port, errdefs.ErrUnavailable, errors.Join(err4, err6))
}
