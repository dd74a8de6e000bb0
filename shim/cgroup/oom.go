package cgroup

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// WatchOOM calls fn each time the kernel reports an OOM in the cgroup,
// until stop is called or the cgroup is removed. On v1 it registers an
// eventfd on memory.oom_control; on v2 it watches memory.events with
// inotify and reports increases of its oom_kill counter. Both descriptors
// are non-blocking, so the waits park in the runtime poller, not in a
// thread.
func (c *Cgroup) WatchOOM(fn func()) (stop func(), err error) {
	if c.V2 {
		if c.Unified == "" {
			return nil, fmt.Errorf("no unified cgroup: %w", errdefs.ErrNotFound)
		}
		return watchV2(c.Unified, fn)
	}
	d, ok := c.V1["memory"]
	if !ok {
		return nil, fmt.Errorf("no memory cgroup: %w", errdefs.ErrNotFound)
	}
	return watchV1(d, fn)
}

func watchV1(dir string, fn func()) (func(), error) {
	oc, err := os.Open(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		return nil, err
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		oc.Close()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ef := os.NewFile(uintptr(efd), "oom-eventfd")
	reg := fmt.Sprintf("%d %d", efd, oc.Fd())
	if err := os.WriteFile(filepath.Join(dir, "cgroup.event_control"), []byte(reg), 0); err != nil {
		ef.Close()
		oc.Close()
		return nil, fmt.Errorf("register OOM eventfd in %s: %w", dir, err)
	}
	go func() {
		defer oc.Close()
		buf := make([]byte, 8)
		for {
			if _, err := ef.Read(buf); err != nil {
				return // closed by stop
			}
			// The eventfd also fires when the cgroup is removed.
			if _, err := os.Stat(filepath.Join(dir, "memory.oom_control")); err != nil {
				return
			}
			fn()
		}
	}()
	return func() { ef.Close() }, nil
}

func watchV2(dir string, fn func()) (func(), error) {
	events := filepath.Join(dir, "memory.events")
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, events, unix.IN_MODIFY); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watch %s: %w", events, err)
	}
	f := os.NewFile(uintptr(fd), "oom-inotify")
	last := OOMKills(events)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			ignored := false
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafePointer(buf[off:]))
				if ev.Mask&unix.IN_IGNORED != 0 {
					ignored = true
				}
				off += unix.SizeofInotifyEvent + int(ev.Len)
			}
			if ignored {
				return // the cgroup is gone
			}
			if k := OOMKills(events); k > last {
				last = k
				fn()
			}
		}
	}()
	return func() { f.Close() }, nil
}

// OOMKills reads the oom_kill counter of a v2 memory.events file.
func OOMKills(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return ParseKV(b)["oom_kill"]
}

// ParseMemoryEvents returns the oom_kill counter of memory.events data,
// and whether the line was there.
func ParseMemoryEvents(data []byte) (uint64, bool) {
	v, ok := ParseKV(data)["oom_kill"]
	return v, ok
}
