// Package fsfull turns "no space left on device" and "disk quota exceeded"
// into errors an operator can act on: they carry errdefs.ErrResourceExhausted,
// which reaches clients as gRPC ResourceExhausted instead of Unknown, and
// they name the filesystem that is full and the store that was writing to it.
//
// A bare ENOSPC from deep inside a write says neither which of the daemon's
// stores (content, metadata, a snapshotter, each may live on its own
// filesystem) nor which mount to clean up; this package adds both once, where
// the store's directory is known.
package fsfull

import (
	"errors"
	"fmt"
	"path/filepath"
	"syscall"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Is reports whether err says that a filesystem or a quota is full.
func Is(err error) bool {
	return err != nil && (errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT))
}

// Error is a write that failed because a filesystem (or a quota on it) is
// full. It wraps both the system error and errdefs.ErrResourceExhausted.
type Error struct {
	// Err is the failed operation's error, which wraps ENOSPC or EDQUOT.
	Err error
	// Store names what was writing: "content store", "metadata database",
	// "snapshotter overlayfs".
	Store string
	// Dir is the store's directory.
	Dir string
	// Mount is the mount point of the filesystem holding Dir; empty when
	// it could not be found.
	Mount string
}

func (e *Error) Error() string {
	fs := e.Mount
	if fs == "" {
		fs = e.Dir
	}
	// Err ends with the system's words ("no space left on device"), which
	// the filesystem's name completes.
	return fmt.Sprintf("%v on %s (%s at %s): %v", e.Err, fs, e.Store, e.Dir, errdefs.ErrResourceExhausted)
}

// Unwrap lets errors.Is find both the cause and the errdefs class.
func (e *Error) Unwrap() []error { return []error{e.Err, errdefs.ErrResourceExhausted} }

// Wrap returns err as an *Error naming store and the filesystem of dir if err
// says a filesystem is full, and err unchanged otherwise (nil stays nil, and
// an error already wrapped is not wrapped twice).
func Wrap(err error, store, dir string) error {
	if !Is(err) {
		return err
	}
	var fe *Error
	if errors.As(err, &fe) {
		return err
	}
	return &Error{Err: err, Store: store, Dir: dir, Mount: MountPoint(dir)}
}

// MountPoint returns the mount point of the filesystem holding path: the
// highest ancestor on the same device. It stats instead of parsing
// /proc/self/mountinfo because that is all it needs and works in any mount
// namespace; a bind mount of a directory of the same filesystem is not told
// apart from it, which is harmless for naming what is full. Empty if path
// cannot be stat'ed.
func MountPoint(path string) string {
	p, err := filepath.Abs(path)
	if err != nil {
		return ""
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return ""
	}
	for p != "/" {
		parent := filepath.Dir(p)
		var pst unix.Stat_t
		if err := unix.Stat(parent, &pst); err != nil || pst.Dev != st.Dev {
			return p
		}
		p = parent
	}
	return "/"
}
