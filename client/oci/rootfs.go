package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/core/mount"
)

// maxSymlinks bounds symlink resolution like the kernel's ELOOP limit.
const maxSymlinks = 40

// withRootfs calls fn with a directory holding container c's root
// filesystem. A container with a snapshot has it mounted read-only in a
// temporary directory for the duration of fn; a container without one must
// have an absolute root path in s, which is used as is.
func withRootfs(ctx context.Context, client Client, c *containers.Container, s *Spec, fn func(root string) error) error {
	if c != nil && c.SnapshotKey != "" {
		if client == nil {
			return fmt.Errorf("read rootfs of snapshot %q: no client: %w", c.SnapshotKey, errdefs.ErrFailedPrecondition)
		}
		mounts, err := client.SnapshotService(c.Snapshotter).Mounts(ctx, c.SnapshotKey)
		if err != nil {
			return fmt.Errorf("mounts of snapshot %q: %w", c.SnapshotKey, err)
		}
		return mount.WithTempMount(ctx, readonlyMounts(mounts), fn)
	}
	if s != nil && s.Root != nil && filepath.IsAbs(s.Root.Path) {
		return fn(s.Root.Path)
	}
	return fmt.Errorf("no root filesystem to read users from: the container has no snapshot and the spec no absolute root path: %w", errdefs.ErrFailedPrecondition)
}

// readonlyMounts returns mounts changed to mount read-only: reading
// /etc/passwd must not be able to change the container's files. An overlay
// becomes one without upper and work directories, its upper directory the
// topmost lower one, since a read-only overlay that still names the upper
// directory would claim it (and fail if the container's own mount holds it).
func readonlyMounts(in []mount.Mount) []mount.Mount {
	out := make([]mount.Mount, 0, len(in))
	for _, m := range in {
		ro := mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target}
		if m.Type == "overlay" {
			var upper, lower string
			for _, o := range m.Options {
				switch {
				case strings.HasPrefix(o, "upperdir="):
					upper = strings.TrimPrefix(o, "upperdir=")
				case strings.HasPrefix(o, "lowerdir="):
					lower = strings.TrimPrefix(o, "lowerdir=")
				case strings.HasPrefix(o, "workdir="), o == "rw", o == "ro", o == "volatile":
				default:
					ro.Options = append(ro.Options, o)
				}
			}
			if upper != "" {
				if lower != "" {
					lower = mount.EscapeOverlayPath(upper) + ":" + lower
				} else {
					lower = mount.EscapeOverlayPath(upper)
				}
			}
			if layers, dataOnly := mount.OverlayLayers(lower); len(layers) == 1 && len(dataOnly) == 0 {
				// An overlay without an upper directory needs two
				// lower layers on older kernels; a single layer is
				// bound instead.
				out = append(out, mount.Mount{Type: "bind", Source: layers[0], Target: m.Target, Options: []string{"rbind", "ro"}})
				continue
			}
			ro.Options = append(ro.Options, "lowerdir="+lower, "ro")
			out = append(out, ro)
			continue
		}
		for _, o := range m.Options {
			if o != "rw" {
				ro.Options = append(ro.Options, o)
			}
		}
		ro.Options = append(ro.Options, "ro")
		out = append(out, ro)
	}
	return out
}

// readRootFile reads the file at name (absolute, inside the container) from
// the root filesystem at root, resolving symlinks as the container would
// see them: an absolute link target or ".." never leaves root. Only regular
// files are read, at most maxUserFileSize bytes. A missing file is a
// NotFound error.
func readRootFile(root, name string) ([]byte, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("open root filesystem %s: %w", root, err)
	}
	defer r.Close()
	resolved, err := ResolveInRoot(r, name)
	if err != nil {
		return nil, err
	}
	// os.Root refuses to leave root even if the tree changed under us
	// since ResolveInRoot looked.
	f, err := r.Open(resolved)
	if err != nil {
		return nil, wrapNotExist(name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s in the container is not a regular file: %w", name, errdefs.ErrInvalidArgument)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxUserFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxUserFileSize {
		return nil, fmt.Errorf("%s in the container is larger than %d bytes: %w", name, maxUserFileSize, errdefs.ErrInvalidArgument)
	}
	return data, nil
}

func wrapNotExist(name string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s in the container: %w", name, errors.Join(err, errdefs.ErrNotFound))
	}
	return fmt.Errorf("%s in the container: %w", name, err)
}

// ResolveInRoot resolves every symlink in name as if r were "/", as a
// process chrooted there would, and returns the result as a path relative
// to r ("." for r itself). ".." at the top stays at the top and an
// absolute link target starts again at r, so the result never leaves it.
// A missing component is NotFound, a symlink loop InvalidArgument.
func ResolveInRoot(r *os.Root, name string) (string, error) {
	todo := strings.Split(strings.TrimPrefix(path.Clean("/"+name), "/"), "/")
	var done []string
	links := 0
	for len(todo) > 0 {
		comp := todo[0]
		todo = todo[1:]
		switch comp {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		cur := path.Join(append(append([]string{}, done...), comp)...)
		st, err := r.Lstat(cur)
		if err != nil {
			return "", wrapNotExist(name, err)
		}
		if st.Mode()&fs.ModeSymlink == 0 {
			done = append(done, comp)
			continue
		}
		links++
		if links > maxSymlinks {
			return "", fmt.Errorf("%s in the container: too many levels of symbolic links: %w", name, errdefs.ErrInvalidArgument)
		}
		target, err := r.Readlink(cur)
		if err != nil {
			return "", fmt.Errorf("%s in the container: %w", name, err)
		}
		if strings.HasPrefix(target, "/") {
			done = nil
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	if len(done) == 0 {
		return ".", nil
	}
	return path.Join(done...), nil
}
