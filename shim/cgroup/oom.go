package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// WatchOOM calls fn each time the kernel OOM-kills a process of the
// cgroup, until stop is called or the cgroup goes away. stop waits for
// the watcher to end; fn must not call it.
//
// On v2 it watches memory.events with inotify and calls fn when its
// oom_kill counter grows, as containerd does; the watch ends when the
// cgroup is empty or removed. On v1 it registers an eventfd on
// memory.oom_control (cgroup.event_control); the kernel signals it for
// each OOM and when the cgroup is removed. Both descriptors are
// non-blocking, so the wait parks in the runtime poller rather than
// holding a thread per container.
func (c *Cgroup) WatchOOM(fn func()) (stop func(), err error) {
	var w *watch
	if c.v1 == nil {
		w, err = c.watchV2(fn)
	} else {
		w, err = c.watchV1(fn)
	}
	if err != nil {
		return nil, err
	}
	go w.run()
	return w.stop, nil
}

// watch is one cgroup's OOM watcher: a goroutine reading f, which stop
// closes to end it.
type watch struct {
	f     *os.File
	check func() (gone bool) // after each wake-up: report kills, say if the cgroup is gone
	close func()             // releases what else the watch holds
	done  chan struct{}      // closed when run returns
	once  sync.Once
}

func (w *watch) run() {
	defer close(w.done)
	defer w.once.Do(w.release)
	buf := make([]byte, 4096) // inotify events or an eventfd count
	for {
		if _, err := w.f.Read(buf); err != nil {
			return // closed by stop, or the descriptor failed
		}
		if w.check() {
			return
		}
	}
}

func (w *watch) release() {
	w.f.Close()
	if w.close != nil {
		w.close()
	}
}

func (w *watch) stop() {
	w.once.Do(w.release)
	<-w.done
}

func (c *Cgroup) watchV2(fn func()) (*watch, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify for the cgroup of pid %d: %w", c.pid, err)
	}
	f := os.NewFile(uintptr(fd), "inotify")
	// memory.events changes on each OOM kill; cgroup.events when the
	// cgroup empties. A removed cgroup ends both watches (IN_IGNORED).
	for _, name := range []string{"memory.events", "cgroup.events"} {
		if _, err := unix.InotifyAddWatch(fd, filepath.Join(c.dir, name), unix.IN_MODIFY); err != nil {
			f.Close()
			return nil, classify(fmt.Errorf("watch %s of the cgroup of pid %d: %w", name, c.pid, err))
		}
	}
	// Kills before the watch began are not news.
	last := c.oomKillsV2()
	return &watch{f: f, done: make(chan struct{}), check: func() bool {
		if kills := c.oomKillsV2(); kills > last {
			last = kills
			fn()
		}
		data, err := os.ReadFile(filepath.Join(c.dir, "cgroup.events"))
		return err != nil || parseKV(data)["populated"] == 0
	}}, nil
}

// oomKillsV2 is memory.events' oom_kill counter (0 when unreadable).
func (c *Cgroup) oomKillsV2() uint64 {
	data, err := os.ReadFile(filepath.Join(c.dir, "memory.events"))
	if err != nil {
		return 0
	}
	return parseKV(data)["oom_kill"]
}

func (c *Cgroup) watchV1(fn func()) (*watch, error) {
	dir, ok := c.v1["memory"]
	if !ok {
		return nil, fmt.Errorf("the cgroup of pid %d is in no memory hierarchy: %w", c.pid, os.ErrNotExist)
	}
	ctl, err := os.Open(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		return nil, classify(fmt.Errorf("OOM control of the cgroup of pid %d: %w", c.pid, err))
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		ctl.Close()
		return nil, fmt.Errorf("OOM eventfd of the cgroup of pid %d: %w", c.pid, err)
	}
	ef := os.NewFile(uintptr(efd), "oom-eventfd")
	reg := strconv.Itoa(efd) + " " + strconv.Itoa(int(ctl.Fd()))
	if err := os.WriteFile(filepath.Join(dir, "cgroup.event_control"), []byte(reg), 0); err != nil {
		ef.Close()
		ctl.Close()
		return nil, classify(fmt.Errorf("register OOM eventfd of the cgroup of pid %d: %w", c.pid, err))
	}
	return &watch{f: ef, done: make(chan struct{}), close: func() { ctl.Close() }, check: func() bool {
		// The eventfd also fires when the cgroup is removed.
		if _, err := os.Stat(dir); err != nil {
			return true
		}
		fn()
		return false
	}}, nil
}
