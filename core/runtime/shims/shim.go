package shims

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/internal/errgrpc"
)

// shimConn is a ttrpc connection to one shim process, which may serve
// several tasks (a group, such as a pod).
type shimConn struct {
	address string
	client  *ttrpc.Client
	// closed is closed when the connection ends, for whatever reason.
	closed chan struct{}

	mu sync.Mutex
	// service is "containerd.task.v3.Task" or "containerd.task.v2.Task";
	// spoken says a call of it succeeded, after which an Unimplemented
	// answer is the method's, not the service's.
	service string
	spoken  bool
	users   int
	// shuttingDown is set before a requested shutdown, so that the
	// connection ending then is not taken for a crash.
	shuttingDown bool
}

// dialShim connects to a shim's socket. onClose runs once, when the
// connection ends.
func dialShim(ctx context.Context, b bootstrap, onClose func()) (*shimConn, error) {
	path, err := socketPath(b.Address)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("connect to shim at %s: %v: %w", b.Address, err, errdefs.ErrUnavailable)
	}
	s := &shimConn{address: b.Address, closed: make(chan struct{}), service: taskV2}
	if b.Version == 3 {
		s.service = taskV3
	}
	s.client = ttrpc.NewClient(conn, ttrpc.WithOnClose(func() {
		close(s.closed)
		if onClose != nil {
			onClose()
		}
	}))
	return s, nil
}

const (
	taskV2 = "containerd.task.v2.Task"
	taskV3 = "containerd.task.v3.Task"
)

// version is the task API version the connection speaks.
func (s *shimConn) version() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.service == taskV3 {
		return 3
	}
	return 2
}

// call invokes a task API method. The v2 and v3 messages are identical on
// the wire, so the v2 Go types serve both; only the service name differs.
// The namespace travels in ttrpc metadata as containerd sends it.
//
// A shim that says it speaks v3 and answers the first call Unimplemented
// serves v2 only (a containerd 1.7 shim kept across an upgrade, a
// third-party shim that says more than it does): the connection falls
// back to v2 and the call is made again, as containerd downgrades.
func (s *shimConn) call(ctx context.Context, ns, method string, req, resp any) error {
	ctx = ttrpc.WithMetadata(ctx, ttrpc.MD{"containerd-namespace-ttrpc": []string{ns}})
	s.mu.Lock()
	service, spoken := s.service, s.spoken
	s.mu.Unlock()
	err := s.client.Call(ctx, service, method, req, resp)
	if err != nil && service == taskV3 && !spoken && status.Code(err) == codes.Unimplemented {
		if err2 := s.client.Call(ctx, taskV2, method, req, resp); status.Code(err2) != codes.Unimplemented {
			// v2 knows the method: the shim speaks v2.
			s.mu.Lock()
			if !s.spoken {
				s.service = taskV2
			}
			s.mu.Unlock()
			err = err2
		}
	}
	if err == nil {
		s.mu.Lock()
		s.spoken = true
		s.mu.Unlock()
		return nil
	}
	if errors.Is(err, ttrpc.ErrClosed) {
		// ttrpc fails the calls in flight before it runs the close
		// callback; wait for that, so that a caller checking isClosed
		// (Wait, State, Delete) sees the shim gone.
		select {
		case <-s.closed:
		case <-ctx.Done():
		}
	}
	select {
	case <-s.closed:
		return fmt.Errorf("shim at %s is gone: %v: %w", s.address, err, errdefs.ErrUnavailable)
	default:
	}
	return errgrpc.ToNative(err)
}

// connect asks the shim about task id within timeout: its pid and the
// task's. It is how the manager checks that a shim still answers.
func (s *shimConn) connect(ctx context.Context, ns, id string, timeout time.Duration) (*taskv2.ConnectResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var resp taskv2.ConnectResponse
	if err := s.call(ctx, ns, "Connect", &taskv2.ConnectRequest{ID: id}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

func (s *shimConn) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// shutdown asks the shim to exit once it serves no task, and closes the
// connection; the shim decides, so a group shim with tasks left stays.
func (s *shimConn) shutdown(ctx context.Context, ns, id string) {
	s.mu.Lock()
	s.users--
	last := s.users <= 0
	if last {
		s.shuttingDown = true
	}
	s.mu.Unlock()
	if !last {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// The shim exits while answering, so an error here is expected.
	_ = s.call(ctx, ns, "Shutdown", &taskv2.ShutdownRequest{ID: id}, &emptypb.Empty{})
	// Wait for the shim to end the connection as it exits: until then its
	// socket still answers, and a new task of the same id (or group)
	// would be handed to a shim on its way out.
	select {
	case <-s.closed:
	case <-ctx.Done():
	}
	s.client.Close()
}

func (s *shimConn) expectedClose() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shuttingDown
}

// openShimLog opens the bundle's log FIFO and copies what the shim writes
// there into hulld's log. O_RDWR never blocks on a FIFO and keeps it open
// for writers that come and go (a shim restarting with hulld still up).
// The returned file is closed to stop copying.
func openShimLog(b *bundle, log *slog.Logger) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(b.Path, "log"), os.O_RDWR|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 4096), 1<<20)
		for sc.Scan() {
			log.Info("shim: "+sc.Text(), "namespace", b.Namespace, "id", b.ID)
		}
	}()
	return f, nil
}
