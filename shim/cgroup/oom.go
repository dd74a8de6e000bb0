package cgroup

import (
	"fmt"
	"os"
	"sync/atomic"

	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"golang.org/x/sys/unix"
)

// WatchOOM calls fn each time the kernel OOM-kills a process of the
// cgroup, until stop is called or the cgroup goes away.
//
// On v1 the library registers an eventfd on memory.oom_control; hull
// makes it non-blocking so the wait parks in the runtime poller rather
// than holding a thread per container. On v2 the library's event channel
// watches memory.events with a non-blocking inotify descriptor and ends
// by itself when the cgroup empties or is removed; fn runs when its
// oom_kill counter grows, as in containerd.
func (c *Cgroup) WatchOOM(fn func()) (stop func(), err error) {
	if c.v2 != nil {
		return c.watchV2(fn)
	}
	return c.watchV1(fn)
}

func (c *Cgroup) watchV1(fn func()) (func(), error) {
	fd, err := c.v1.OOMEventFD()
	if err != nil {
		return nil, classify(fmt.Errorf("OOM eventfd of the cgroup of pid %d: %w", c.pid, err))
	}
	if err := unix.SetNonblock(int(fd), true); err != nil {
		unix.Close(int(fd))
		return nil, fmt.Errorf("OOM eventfd of the cgroup of pid %d: set non-blocking: %w", c.pid, err)
	}
	ef := os.NewFile(fd, "oom-eventfd")
	go func() {
		buf := make([]byte, 8)
		for {
			if _, err := ef.Read(buf); err != nil {
				return // closed by stop
			}
			// The eventfd also fires when the cgroup is removed.
			if c.v1.State() == cgroup1.Deleted {
				ef.Close()
				return
			}
			fn()
		}
	}()
	return func() { ef.Close() }, nil
}

func (c *Cgroup) watchV2(fn func()) (func(), error) {
	events, errs := c.v2.EventChan()
	// A watch that could not be set up reports on errs before EventChan
	// returns; later errors mean the cgroup is gone.
	select {
	case err := <-errs:
		return nil, classify(fmt.Errorf("memory.events of the cgroup of pid %d: %w", c.pid, err))
	default:
	}
	var stopped atomic.Bool
	// Kills before the watch began are not news.
	var last uint64
	if m, err := c.v2.StatFiltered(cgroup2.StatMemoryEvents); err == nil && m.MemoryEvents != nil {
		last = m.MemoryEvents.OomKill
	}
	report := func(kills uint64) {
		if kills > last {
			last = kills
			if !stopped.Load() {
				fn()
			}
		}
	}
	go func() {
		// The library's goroutine blocks sending until its events are
		// read, so read them until it closes errs, also after stop.
		for {
			select {
			case ev := <-events:
				report(ev.OOMKill)
			case _, ok := <-errs:
				if !ok {
					// The last event (the kill that emptied the
					// cgroup) may still be buffered.
					select {
					case ev := <-events:
						report(ev.OOMKill)
					default:
					}
					return
				}
			}
		}
	}()
	return func() { stopped.Store(true) }, nil
}
