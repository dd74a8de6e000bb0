//go:build linux

// Package netns makes, enters and removes the network namespaces of pods.
//
// A pod's network namespace must outlive the processes in it: the sandbox is
// set up through CNI before any container starts, and torn down after the
// last one exited. So each namespace is pinned by bind-mounting its nsfs file
// onto a file in hulld's state directory; the namespace lives as long as that
// mount does, and the path is what CNI plugins and runc are given.
//
// Namespaces belong to OS threads, while Go moves goroutines between threads
// freely. Every operation that enters a namespace therefore runs on a
// goroutine locked to its thread, and a thread that cannot be put back into
// its original namespace is never unlocked: Go then ends the thread with the
// goroutine instead of reusing it somewhere it would do harm.
package netns

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// threadNetNS is the calling thread's own network namespace; /proc/self
// would name the main thread's, which may differ from the locked one.
const threadNetNS = "/proc/thread-self/ns/net"

// NetNS is a network namespace pinned by a bind mount, so that it outlives
// the processes in it. A NetNS only holds the path of the pin, so copies and
// values made by Load after a restart all mean the same namespace.
type NetNS struct {
	path string
}

// New creates a network namespace pinned at a new file in dir (dir is
// created, mode 0711). The calling goroutine's namespaces are unchanged
// afterwards: the work happens on a thread of its own.
func New(dir string) (*NetNS, error) {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("create netns directory %q: %w", dir, err)
	}
	path, err := createPinFile(dir)
	if err != nil {
		return nil, err
	}
	if err := onLockedThread(func() error { return unshareAndPin(path) }); err != nil {
		// The mount may exist even if returning to our namespace failed.
		_ = unpin(path)
		return nil, err
	}
	return &NetNS{path: path}, nil
}

// Reserve makes the pin file of a namespace that does not exist yet, for a
// pod whose namespace its pause process must create: a namespace made by
// hulld belongs to hulld's user namespace, which a pod in a user namespace
// of its own could not enter. PinFrom pins it once the process exists; until
// then Closed reports true. Remove removes the pin file alone.
func Reserve(dir string) (*NetNS, error) {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("create netns directory %q: %w", dir, err)
	}
	path, err := createPinFile(dir)
	if err != nil {
		return nil, err
	}
	return &NetNS{path: path}, nil
}

// PinFrom pins the network namespace of process pid at n's path (made by
// Reserve).
func (n *NetNS) PinFrom(pid int) error {
	src := "/proc/" + strconv.Itoa(pid) + "/ns/net"
	if err := unix.Mount(src, n.path, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("pin network namespace of pid %d at %q: %w", pid, n.path, err)
	}
	return nil
}

// createPinFile makes an empty file with an unguessable name; O_EXCL keeps
// two pods from ever sharing a pin.
func createPinFile(dir string) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("name netns pin in %q: %w", dir, err)
	}
	path := filepath.Join(dir, "cni-"+hex.EncodeToString(b[:]))
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return "", fmt.Errorf("create netns pin %q: %w", path, err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("create netns pin %q: %w", path, err)
	}
	return path, nil
}

// unshareAndPin runs on a locked thread: it moves the thread into a new
// network namespace, pins that namespace at path, and moves the thread back.
func unshareAndPin(path string) (err error) {
	orig, err := os.Open(threadNetNS)
	if err != nil {
		return fmt.Errorf("open current network namespace: %w", err)
	}
	defer orig.Close()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("unshare network namespace for %q: %w", path, err)
	}
	// From here on the thread must go back, whatever else fails.
	defer func() {
		if rerr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); rerr != nil {
			err = errors.Join(err, &restoreError{err: rerr})
		}
	}()
	if err := unix.Mount(threadNetNS, path, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("pin network namespace at %q: %w", path, err)
	}
	return nil
}

// Load returns the namespace pinned at path (after a hulld restart). It does
// not check the pin: Closed says whether it is still there.
func Load(path string) *NetNS {
	return &NetNS{path: path}
}

// Path returns the pin's path, which CNI plugins and OCI specs are given.
func (n *NetNS) Path() string {
	return n.path
}

// Closed reports whether the pin is gone (the file is missing or no longer
// a nsfs mount).
func (n *NetNS) Closed() (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(n.path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return true, nil
		}
		return false, fmt.Errorf("statfs netns pin %q: %w", n.path, err)
	}
	return st.Type != unix.NSFS_MAGIC, nil
}

// Remove unmounts (MNT_DETACH) and deletes the pin; removing a namespace
// already gone is not an error. The namespace itself ends when the last
// process in it and the last open file of it are gone.
func (n *NetNS) Remove() error {
	return unpin(n.path)
}

// maxStackedMounts bounds the unmount loop: a pin is mounted once, but a
// mount propagated back or made twice by hand must not leave it half-removed.
const maxStackedMounts = 16

func unpin(path string) error {
	for i := 0; ; i++ {
		err := unix.Unmount(path, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break // not (or no longer) a mount point
		}
		if err != nil {
			return fmt.Errorf("unmount netns pin %q: %w", path, err)
		}
		if i == maxStackedMounts {
			return fmt.Errorf("unmount netns pin %q: still mounted after %d unmounts: %w", path, maxStackedMounts, errdefs.ErrFailedPrecondition)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns pin %q: %w", path, err)
	}
	return nil
}

// Do runs fn on an OS thread inside the namespace (port forwarding dials from
// there; sysctl checks). Sockets fn opens stay in the namespace after it
// returns; goroutines fn starts do not run in it. The thread never returns
// to Go's pool in the wrong namespace.
func (n *NetNS) Do(fn func() error) error {
	target, err := os.Open(n.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("enter network namespace %q: %w", n.path, errdefs.ErrNotFound)
		}
		return fmt.Errorf("enter network namespace %q: %w", n.path, err)
	}
	defer target.Close()
	return onLockedThread(func() (err error) {
		orig, err := os.Open(threadNetNS)
		if err != nil {
			return fmt.Errorf("open current network namespace: %w", err)
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			if errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("enter network namespace %q: not a network namespace: %w", n.path, errdefs.ErrNotFound)
			}
			return fmt.Errorf("enter network namespace %q: %w", n.path, err)
		}
		defer func() {
			if rerr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); rerr != nil {
				err = errors.Join(err, &restoreError{err: rerr})
			}
		}()
		return fn()
	})
}

// restoreError marks a thread that could not go back to its own namespace.
type restoreError struct{ err error }

func (e *restoreError) Error() string {
	return fmt.Sprintf("return thread to its network namespace: %v", e.err)
}

func (e *restoreError) Unwrap() error { return e.err }

// onLockedThread runs fn on a fresh goroutine locked to its OS thread and
// waits for it. The thread goes back to Go's pool only if fn left it in the
// namespace it started in; otherwise the goroutine exits still locked and Go
// terminates the thread. A panic in fn is re-raised in the caller after the
// thread was dealt with, with the thread discarded to be safe.
func onLockedThread(fn func() error) error {
	type outcome struct {
		err   error
		panic any
	}
	done := make(chan outcome, 1)
	go func() {
		runtime.LockOSThread()
		var out outcome
		defer func() {
			if p := recover(); p != nil {
				// The namespace of the thread is unknown: leave it locked.
				done <- outcome{panic: p}
				return
			}
			var re *restoreError
			if !errors.As(out.err, &re) {
				runtime.UnlockOSThread()
			}
			done <- out
		}()
		out.err = fn()
	}()
	out := <-done
	if out.panic != nil {
		panic(out.panic)
	}
	return out.err
}
