package shims

import (
	"os"

	"golang.org/x/sys/unix"
)

// reapShim reaps a shim process hulld launched itself (hulld is its
// parent) once it exits.
//
// The wait parks in the runtime poller on a pidfd, which turns readable
// when the process ends. os.Process.Wait would block in waitid and hold
// an OS thread for the shim's whole life: with a shim per pod, a thread
// per pod (its g0 and signal stacks included) doing nothing. The
// goroutine ends when the shim is reaped or the manager closes (the shim
// outlives hulld; whoever inherits it reaps it).
func (m *Manager) reapShim(proc *os.Process) {
	fd, err := unix.PidfdOpen(proc.Pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		// A kernel without pidfds (before 5.10 for a non-blocking
		// one): the blocking wait it is.
		go proc.Wait()
		return
	}
	f := os.NewFile(uintptr(fd), "shim-pidfd")
	m.mu.Lock()
	select {
	case <-m.stop:
		m.mu.Unlock()
		f.Close()
		proc.Release()
		return
	default:
	}
	m.pidfds[f] = struct{}{}
	m.wg.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		defer proc.Release()
		rc, err := f.SyscallConn()
		if err == nil {
			// Close (of the manager) ends the wait with an error.
			rc.Read(func(fd uintptr) bool {
				var info unix.Siginfo
				err := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG, nil)
				// Signo is SIGCHLD once the child was reaped, 0 while
				// it runs; an error (ECHILD: reaped already) ends it
				// too.
				return err != nil || info.Signo == int32(unix.SIGCHLD)
			})
		}
		m.mu.Lock()
		delete(m.pidfds, f)
		m.mu.Unlock()
		f.Close()
	}()
}

// closePidfds ends the waits of reapShim, for Close.
func (m *Manager) closePidfds() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for f := range m.pidfds {
		f.Close()
	}
}
