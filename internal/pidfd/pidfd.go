// Package pidfd kills processes through pidfds, so that a signal or a wait
// never reaches a process that reused the pid of the one meant.
package pidfd

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// KillAndWait sends SIGKILL to every pid and waits, up to timeout, for all
// of them to exit. A pid already gone is skipped. The processes need not
// be children of the caller: a pidfd becomes readable at exit, reaped or
// not.
func KillAndWait(pids []int, timeout time.Duration) error {
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue
		}
		fds = append(fds, fd)
		unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
	}
	deadline := time.Now().Add(timeout)
	for i, fd := range fds {
		for {
			left := time.Until(deadline)
			if left <= 0 {
				return fmt.Errorf("%d processes did not exit within %s of SIGKILL", len(fds)-i, timeout)
			}
			n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(left.Milliseconds())+1)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil || n > 0 {
				break
			}
		}
	}
	return nil
}
