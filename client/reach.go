package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
)

// DefaultConnectTimeout is how long a call waits for the daemon to accept
// connections unless WithConnectTimeout says otherwise: long enough for
// hulld to restart, short enough that nobody takes the client for hung.
const DefaultConnectTimeout = 30 * time.Second

// waitNoticeEvery is how often a wait for the daemon is reported again
// after the first report.
const waitNoticeEvery = 5 * time.Second

// WithConnectTimeout bounds how long a call waits for the daemon when its
// socket refuses connections (hulld is down or restarting): the call is
// made as soon as the daemon is back, or fails with an *UnreachableError
// after d. Zero or less fails at once. A call that had reached the daemon
// when the connection broke is not made again; it fails with Unavailable.
func WithConnectTimeout(d time.Duration) Opt {
	return func(o *options) { o.connectTimeout = max(d, 0); o.connectTimeoutSet = true }
}

// WithConnectWait has fn told about waits for the daemon, so that a
// program can say why it is not getting on: once when a wait begins and
// then every few seconds while it lasts, whichever calls are waiting. fn
// must not block.
func WithConnectWait(fn func(ConnectWait)) Opt {
	return func(o *options) { o.connectWait = fn }
}

// ConnectWait describes a wait for the daemon.
type ConnectWait struct {
	// Address is the daemon's socket.
	Address string
	// Reason is why the last try to connect failed (connection refused,
	// no such file or directory).
	Reason error
	// Waited is how long calls have been waiting; Limit is when they give
	// up (WithConnectTimeout).
	Waited, Limit time.Duration
}

// UnreachableError is the error of a call that could not reach the daemon
// within the connect timeout. It is an errdefs Unavailable error, and
// errors.Is finds Reason's errno in it (syscall.ECONNREFUSED, ENOENT).
type UnreachableError struct {
	Address string
	Reason  error
	Waited  time.Duration
}

// Error says what failed and what to check, by the reason: a socket that
// is missing or refuses is a daemon that is not running (or another
// address); one that exists but cannot be used is a matter of permissions
// or of a wrong path.
func (e *UnreachableError) Error() string {
	why := reasonText(e.Reason)
	switch {
	case errors.Is(e.Reason, syscall.EACCES), errors.Is(e.Reason, syscall.EPERM):
		return fmt.Sprintf("cannot connect to hulld on %s (%s): run as root, or as a user the socket's permissions admit", e.Address, why)
	case errors.Is(e.Reason, syscall.ENOTSOCK):
		return fmt.Sprintf("%s is not a socket (%s): is the address right?", e.Address, why)
	}
	return fmt.Sprintf("hulld is not answering on %s (%s): is it running?", e.Address, why)
}

// Running reports whether the error says the daemon seems not to run (its
// socket is missing or refuses connections), rather than that it cannot
// be used (permissions, not a socket).
func (e *UnreachableError) Running() bool {
	return !errors.Is(e.Reason, syscall.EACCES) && !errors.Is(e.Reason, syscall.EPERM) && !errors.Is(e.Reason, syscall.ENOTSOCK)
}

// Unwrap returns the class and the reason.
func (e *UnreachableError) Unwrap() []error { return []error{errdefs.ErrUnavailable, e.Reason} }

// reasonText says why a connection failed in the words of its errno where
// there is one ("connection refused"), without the layers of dialling
// detail around it, which repeat the address.
func reasonText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	if err == nil {
		return "not connected"
	}
	return err.Error()
}

// hopeless tells the connection failures that waiting does not mend.
func hopeless(err error) bool {
	return errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOTSOCK)
}

// reach keeps what the client knows of its connection's troubles: the last
// dial error and the wait in progress, shared by every call that waits so
// that they are reported as one.
type reach struct {
	address string
	timeout time.Duration
	notify  func(ConnectWait)

	mu         sync.Mutex
	lastDial   error
	waitSince  time.Time // zero: no call is waiting
	lastNotice time.Time
}

// dialer dials the socket and remembers how the last try went, which gRPC
// only tells in prose.
func (r *reach) dialer(ctx context.Context, _ string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", r.address)
	r.mu.Lock()
	r.lastDial = err
	r.mu.Unlock()
	return conn, err
}

// dialOpts are the dial options that let calls wait for the daemon: the
// recording dialer, and reconnect tries at least every second, so that a
// daemon that is back is noticed soon (gRPC's default backoff grows to two
// minutes).
func (r *reach) dialOpts() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithContextDialer(r.dialer),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 20 * time.Second,
		}),
	}
}

// reason is why the connection is down: the last dial error, or failing
// that gRPC's account in err without its wrapping (a daemon that died
// after the dial succeeded: "error reading server preface: connection
// reset by peer").
func (r *reach) reason(err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lastDial != nil {
		return r.lastDial
	}
	if st, ok := status.FromError(err); ok && notConnected(err) {
		msg := strings.TrimSpace(strings.TrimPrefix(st.Message(), "connection error:"))
		msg = strings.TrimPrefix(msg, "desc = ")
		if u, uerr := strconv.Unquote(msg); uerr == nil {
			msg = u
		}
		if msg != "" {
			return errors.New(msg)
		}
	}
	return err
}

// waiting notes that a call waits for the daemon, and reports the wait if
// it is new or was last reported long enough ago.
func (r *reach) waiting(reason error) {
	now := time.Now()
	r.mu.Lock()
	if r.waitSince.IsZero() {
		r.waitSince = now
	}
	since := r.waitSince
	tell := r.notify != nil && (r.lastNotice.Before(since) || now.Sub(r.lastNotice) >= waitNoticeEvery)
	if tell {
		r.lastNotice = now
	}
	r.mu.Unlock()
	if tell {
		r.notify(ConnectWait{Address: r.address, Reason: reason, Waited: now.Sub(since), Limit: r.timeout})
	}
}

// connected ends the wait in progress, so that the next outage is
// reported afresh.
func (r *reach) connected() {
	r.mu.Lock()
	r.waitSince = time.Time{}
	r.mu.Unlock()
}

// notConnected reports whether err is gRPC failing a call because it has
// no connection: the call never reached the daemon, so it is safe to make
// again. gRPC tells such failures only by their words.
func notConnected(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.Unavailable && strings.HasPrefix(st.Message(), "connection error:")
}

// await is the slow path of a call that found no connection (first is its
// error): it waits for the daemon up to the connect timeout, telling why,
// and makes the call again (try) each time the connection is ready, until
// the call gets through or fails for another reason.
func (c *Client) await(ctx context.Context, first error, try func() error) error {
	r := c.reach
	start := time.Now()
	deadline := start.Add(r.timeout)
	err := first
	for {
		reason := r.reason(err)
		unreachable := func() error {
			return &UnreachableError{Address: r.address, Reason: reason, Waited: time.Since(start)}
		}
		if r.timeout <= 0 || hopeless(reason) {
			return unreachable()
		}
		if !time.Now().Before(deadline) {
			return unreachable()
		}
		r.waiting(reason)
		// Wake up at the next notice at the latest, to give it.
		wake := time.Now().Add(waitNoticeEvery)
		if deadline.Before(wake) {
			wake = deadline
		}
		wctx, cancel := context.WithDeadline(ctx, wake)
		ready := c.ready(wctx)
		cancel()
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", ctx.Err(), unreachable())
		}
		if !ready {
			continue
		}
		r.connected()
		if err = try(); !notConnected(err) {
			return err
		}
	}
}

// ready waits for the connection to be ready, starting it if it is idle;
// false if ctx ends first. A closed client is "ready" for the call to
// fail at once with gRPC's own word on it.
func (c *Client) ready(ctx context.Context) bool {
	for {
		s := c.conn.GetState()
		switch s {
		case connectivity.Ready, connectivity.Shutdown:
			return true
		case connectivity.Idle:
			c.conn.Connect()
		}
		if !c.conn.WaitForStateChange(ctx, s) {
			return false
		}
	}
}
