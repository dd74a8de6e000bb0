package manager

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/mount"
)

const mkdirPrefix = "X-containerd.mkdir.path="

// mkdirSpec is one X-containerd.mkdir.path=<dir>[:<mode>[:<uid>:<gid>]].
type mkdirSpec struct {
	dir      string
	mode     os.FileMode
	uid, gid int
}

// parseMkdir reads the value of an X-containerd.mkdir.path option: an
// absolute directory, then optionally an octal mode (default 0700), then
// optionally the owner's uid and gid (default hulld's).
func parseMkdir(v string) (mkdirSpec, error) {
	s := mkdirSpec{mode: 0o700, uid: os.Getuid(), gid: os.Getgid()}
	parts := strings.Split(v, ":")
	if len(parts) != 1 && len(parts) != 2 && len(parts) != 4 {
		return s, fmt.Errorf("mkdir option %q: the form is path=<dir>[:<mode>[:<uid>:<gid>]]: %w", v, errdefs.ErrInvalidArgument)
	}
	s.dir = parts[0]
	if !filepath.IsAbs(s.dir) {
		return s, fmt.Errorf("mkdir option %q: %q is not an absolute path: %w", v, s.dir, errdefs.ErrInvalidArgument)
	}
	if len(parts) >= 2 {
		p, err := strconv.ParseUint(parts[1], 8, 32)
		if err != nil || os.FileMode(p)&^os.ModePerm != 0 {
			return s, fmt.Errorf("mkdir option %q: mode %q is not an octal permission: %w", v, parts[1], errdefs.ErrInvalidArgument)
		}
		s.mode = os.FileMode(p)
	}
	if len(parts) == 4 {
		var err error
		if s.uid, err = strconv.Atoi(parts[2]); err != nil || s.uid < 0 {
			return s, fmt.Errorf("mkdir option %q: uid %q: %w", v, parts[2], errdefs.ErrInvalidArgument)
		}
		if s.gid, err = strconv.Atoi(parts[3]); err != nil || s.gid < 0 {
			return s, fmt.Errorf("mkdir option %q: gid %q: %w", v, parts[3], errdefs.ErrInvalidArgument)
		}
	}
	return s, nil
}

// mkdir is containerd's "mkdir" transform: each X-containerd.mkdir.path
// option's directory is created (with its parents) and the option dropped.
// Directories may only be made below the manager's allowed roots, and are
// made through an os.Root there, so a symlink cannot lead them elsewhere.
func (m *Manager) mkdir(mt mount.Mount, _ []ActiveMount) (mount.Mount, error) {
	var keep []string
	for _, o := range mt.Options {
		v, ok := strings.CutPrefix(o, mkdirPrefix)
		if !ok {
			keep = append(keep, o)
			continue
		}
		s, err := parseMkdir(v)
		if err != nil {
			return mt, err
		}
		if err := m.makeDir(s); err != nil {
			return mt, err
		}
	}
	mt.Options = keep
	return mt, nil
}

func (m *Manager) makeDir(s mkdirSpec) error {
	dir := filepath.Clean(s.dir)
	for _, root := range m.roots {
		rel, err := filepath.Rel(root, dir)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			continue
		}
		r, err := os.OpenRoot(root)
		if err != nil {
			return fmt.Errorf("mkdir %s: %w", dir, err)
		}
		defer r.Close()
		if err := r.MkdirAll(rel, s.mode); err != nil {
			return fmt.Errorf("mkdir %s: %w", dir, err)
		}
		if err := r.Chmod(rel, s.mode); err != nil {
			return fmt.Errorf("mkdir %s: %w", dir, err)
		}
		if err := r.Lchown(rel, s.uid, s.gid); err != nil {
			return fmt.Errorf("mkdir %s: %w", dir, err)
		}
		return nil
	}
	return fmt.Errorf("mkdir %s: not below a directory the mount manager may create in (%s): %w", dir, strings.Join(m.roots, ", "), errdefs.ErrInvalidArgument)
}
