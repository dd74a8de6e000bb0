package stdio

import (
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ConsoleSocket is the unix socket runc sends a terminal's pty master to
// (SCM_RIGHTS), for runc's --console-socket. It lives in a private
// temporary directory because a bundle path may be too long for sun_path.
type ConsoleSocket struct {
	Path string
	dir  string
	l    *net.UnixListener
}

// NewConsoleSocket listens on a new console socket.
func NewConsoleSocket() (*ConsoleSocket, error) {
	dir, err := os.MkdirTemp("", "hull-pty-")
	if err != nil {
		return nil, err
	}
	path := dir + "/pty.sock"
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &ConsoleSocket{Path: path, dir: dir, l: l}, nil
}

// Receive accepts runc's connection and returns the pty master it sends,
// non-blocking so that copies use the runtime poller.
func (c *ConsoleSocket) Receive(timeout time.Duration) (*os.File, error) {
	c.l.SetDeadline(time.Now().Add(timeout))
	conn, err := c.l.AcceptUnix()
	if err != nil {
		return nil, fmt.Errorf("receive pty on %s: %w", c.Path, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("receive pty on %s: %w", c.Path, err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("receive pty on %s: %d control messages: %v", c.Path, len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("receive pty on %s: %d fds: %v", c.Path, len(fds), err)
	}
	unix.CloseOnExec(fds[0])
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	return os.NewFile(uintptr(fds[0]), string(buf[:n])), nil
}

// Close stops listening and removes the socket's directory.
func (c *ConsoleSocket) Close() error {
	err := c.l.Close()
	os.RemoveAll(c.dir)
	return err
}
