// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)): newline-separated KEY=VALUE assignments sent as one
// datagram to the unix socket named by $NOTIFY_SOCKET. A service of
// Type=notify says READY=1 when it serves, STOPPING=1 when it begins to
// stop and WATCHDOG=1 at least every $WATCHDOG_USEC microseconds when the
// unit sets WatchdogSec.
//
// The environment is read once, by FromEnv, into a Notifier value, so
// that tests and the daemon pass it around rather than consult globals.
// Without $NOTIFY_SOCKET every Notifier method is a no-op, as sd_notify
// is when not run by systemd.
package sdnotify

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

// The environment variables of the protocol.
const (
	SocketEnv      = "NOTIFY_SOCKET"
	WatchdogUSec   = "WATCHDOG_USEC"
	WatchdogPIDEnv = "WATCHDOG_PID"
)

// The assignments hulld sends.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
	Watchdog = "WATCHDOG=1"
)

// Notifier sends notifications to one socket. The zero value, and a
// Notifier from an environment without $NOTIFY_SOCKET, sends nothing.
type Notifier struct {
	addr *net.UnixAddr
	// watchdog is the interval the manager expects WATCHDOG=1 within;
	// zero when no watchdog is asked for (or not for this process).
	watchdog time.Duration
}

// FromEnv reads the notification socket and the watchdog settings from
// getenv (os.Getenv in the daemon) for the process pid. A watchdog meant
// for another process ($WATCHDOG_PID set and not pid) is left off, as
// sd_watchdog_enabled(3) does. Malformed values are errors naming the
// variable, so that a unit file mistake is reported rather than ignored.
func FromEnv(getenv func(string) string, pid int) (*Notifier, error) {
	n := &Notifier{}
	sock := getenv(SocketEnv)
	if sock == "" {
		return n, nil
	}
	addr, err := ParseSocket(sock)
	if err != nil {
		return nil, err
	}
	n.addr = addr
	wd, err := ParseWatchdog(getenv(WatchdogUSec), getenv(WatchdogPIDEnv), pid)
	if err != nil {
		return nil, err
	}
	n.watchdog = wd
	return n, nil
}

// ParseSocket turns $NOTIFY_SOCKET into an address: an absolute path, or
// an abstract socket name written with a leading "@". systemd also allows
// vsock addresses ("vsock:CID:PORT"), which are for virtual machines'
// managers, not services on the host: those are refused.
func ParseSocket(s string) (*net.UnixAddr, error) {
	switch {
	case s == "":
		return nil, fmt.Errorf("%s is empty: %w", SocketEnv, errdefs.ErrInvalidArgument)
	case strings.ContainsRune(s, 0):
		return nil, fmt.Errorf("%s %q holds a NUL byte: %w", SocketEnv, s, errdefs.ErrInvalidArgument)
	case len(s) > 107:
		// sun_path holds 108 bytes with the terminating NUL.
		return nil, fmt.Errorf("%s %q is longer than a unix socket address (107 bytes): %w", SocketEnv, s, errdefs.ErrInvalidArgument)
	case s[0] == '/':
		return &net.UnixAddr{Name: s, Net: "unixgram"}, nil
	case s[0] == '@' && len(s) > 1:
		// Go writes a leading "@" as the abstract namespace's NUL.
		return &net.UnixAddr{Name: s, Net: "unixgram"}, nil
	}
	return nil, fmt.Errorf("%s %q is neither an absolute path nor an abstract name (@name): %w", SocketEnv, s, errdefs.ErrInvalidArgument)
}

// ParseWatchdog reads $WATCHDOG_USEC and $WATCHDOG_PID for the process
// pid: the interval within which the manager expects WATCHDOG=1, or zero
// when no watchdog is set or it is another process's.
func ParseWatchdog(usec, wpid string, pid int) (time.Duration, error) {
	if usec == "" {
		return 0, nil
	}
	if wpid != "" {
		p, err := strconv.Atoi(wpid)
		if err != nil || p <= 0 {
			return 0, fmt.Errorf("%s %q is not a process ID: %w", WatchdogPIDEnv, wpid, errdefs.ErrInvalidArgument)
		}
		if p != pid {
			return 0, nil
		}
	}
	us, err := strconv.ParseUint(usec, 10, 64)
	// Beyond what a time.Duration holds, no watchdog could ever fire.
	if err != nil || us == 0 || us > uint64(1<<63-1)/uint64(time.Microsecond) {
		return 0, fmt.Errorf("%s %q is not a positive number of microseconds: %w", WatchdogUSec, usec, errdefs.ErrInvalidArgument)
	}
	return time.Duration(us) * time.Microsecond, nil
}

// Enabled reports whether notifications go anywhere.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// WatchdogInterval is how often WATCHDOG=1 should be sent: half the
// manager's timeout, as sd_watchdog_enabled(3) recommends, so that one late
// wake-up does not kill the service; zero when no watchdog is set.
func (n *Notifier) WatchdogInterval() time.Duration {
	if !n.Enabled() {
		return 0
	}
	return n.watchdog / 2
}

// Notify sends the assignments as one datagram, joined by newlines. It is
// a no-op when notifications are off.
func (n *Notifier) Notify(assignments ...string) error {
	if !n.Enabled() || len(assignments) == 0 {
		return nil
	}
	for _, a := range assignments {
		if !strings.Contains(a, "=") || strings.ContainsRune(a, '\n') {
			return fmt.Errorf("notification %q is not one KEY=VALUE line: %w", a, errdefs.ErrInvalidArgument)
		}
	}
	// An unbound socket of our own per message, as sd_notify does: the
	// manager identifies the sender by its credentials, not an address.
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("notify %s: %w", n.addr.Name, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(assignments, "\n"))); err != nil {
		return fmt.Errorf("notify %s: %w", n.addr.Name, err)
	}
	return nil
}

// Status is a STATUS= assignment with s on one line, for Notify.
func Status(s string) string {
	return "STATUS=" + strings.ReplaceAll(s, "\n", " ")
}
