package spec

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hullrt/hull/client/oci"
)

// resolveInRoot resolves name inside the tree r as a process chrooted there
// would: ".." at the top stays at the top and an absolute symlink target
// starts again at r, so the result (relative to r, "." for r itself)
// never leaves it. Every component must exist; a missing one is NotFound,
// a loop InvalidArgument.
func resolveInRoot(r *os.Root, name string) (string, error) {
	return oci.ResolveInRoot(r, name)
}

// volumeDirName names a volume's host directory after its destination, so
// that the directory of each volume is stable and distinct.
func volumeDirName(dst string) string {
	sum := sha256.Sum256([]byte(dst))
	return hex.EncodeToString(sum[:12])
}

// PrepareImageVolumes makes a host directory under dir for each volume the
// image declares (imageVolumes: ImageConfig.Volumes) and copies into it
// what the image has at that path, reading the image from rootfs (the
// container's snapshot, mounted read-only by the caller). It returns bind
// mounts for the spec, ordered by destination.
//
// A volume path is taken as the container sees it: relative to the
// container's root, with ".." stopping at the root and symlinks, absolute
// or relative, resolved inside rootfs (CVE-2022-23648: a volume must never
// copy host files into the container). A path that cannot be resolved
// (a symlink loop) is InvalidArgument naming it; one missing from the
// image gets an empty volume. Reading stays inside rootfs and writing
// inside dir whatever the image holds: both go through os.Root. Symlinks
// in the volume are copied as links, devices, sockets and FIFOs are
// skipped, and owners, modes and modification times are kept.
//
// dir is created (0700) if missing; it should stay closed to other host
// users, since a volume may hold the image's setuid programs. A volume
// directory that exists already is
// AlreadyExists, since copying into it would mix two containers' data.
// On error, what was made under dir stays for the caller, which owns dir,
// to remove.
func PrepareImageVolumes(ctx context.Context, rootfs string, imageVolumes map[string]struct{}, dir string) ([]specs.Mount, error) {
	if len(imageVolumes) == 0 {
		return nil, nil
	}
	src, err := os.OpenRoot(rootfs)
	if err != nil {
		return nil, fmt.Errorf("open image rootfs %s: %w", rootfs, err)
	}
	defer src.Close()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("volume directory %s: %w", dir, err)
	}
	dst, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open volume directory %s: %w", dir, err)
	}
	defer dst.Close()

	byDest := map[string]string{}
	for v := range imageVolumes {
		if strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("image volume %q holds NUL: %w", v, errdefs.ErrInvalidArgument)
		}
		d := path.Clean("/" + v)
		if d == "/" {
			return nil, fmt.Errorf("image volume %q is the root directory: %w", v, errdefs.ErrInvalidArgument)
		}
		byDest[d] = v
	}
	var mounts []specs.Mount
	for _, d := range slices.Sorted(maps.Keys(byDest)) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		name := volumeDirName(d)
		if err := copyVolume(ctx, src, d, dst, name); err != nil {
			return nil, fmt.Errorf("image volume %q: %w", byDest[d], err)
		}
		mounts = append(mounts, specs.Mount{
			Destination: d,
			Type:        "bind",
			Source:      filepath.Join(dir, name),
			Options:     []string{"rbind", "rprivate", "rw"},
		})
	}
	return mounts, nil
}

// copyVolume creates directory name in dst and copies into it the tree
// at volume path vol of the image in src.
func copyVolume(ctx context.Context, src *os.Root, vol string, dst *os.Root, name string) error {
	rel, err := resolveInRoot(src, vol)
	if errors.Is(err, errdefs.ErrNotFound) {
		if err := dst.Mkdir(name, 0o755); err != nil {
			return volumeDirErr(name, err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	st, err := src.Lstat(rel)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s in the image is not a directory: %w", vol, errdefs.ErrInvalidArgument)
	}
	if err := dst.Mkdir(name, 0o700); err != nil {
		return volumeDirErr(name, err)
	}
	if err := copyTree(ctx, src, rel, dst, name); err != nil {
		return err
	}
	return copyMeta(dst, name, st)
}

func volumeDirErr(name string, err error) error {
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("volume directory %s: %w", name, errors.Join(err, errdefs.ErrAlreadyExists))
	}
	return fmt.Errorf("volume directory %s: %w", name, err)
}

// copyTree copies the entries of directory from (in src) into the
// existing directory to (in dst), depth first.
func copyTree(ctx context.Context, src *os.Root, from string, dst *os.Root, to string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d, err := src.Open(from)
	if err != nil {
		return err
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("read %s: %w", from, err)
	}
	for _, e := range entries {
		sp, dp := path.Join(from, e.Name()), path.Join(to, e.Name())
		st, err := src.Lstat(sp)
		if err != nil {
			return err
		}
		switch {
		case st.Mode()&fs.ModeSymlink != 0:
			target, err := src.Readlink(sp)
			if err != nil {
				return err
			}
			if err := dst.Symlink(target, dp); err != nil {
				return err
			}
			if err := lchown(dst, dp, st); err != nil {
				return err
			}
			continue
		case st.IsDir():
			if err := dst.Mkdir(dp, 0o700); err != nil {
				return err
			}
			if err := copyTree(ctx, src, sp, dst, dp); err != nil {
				return err
			}
		case st.Mode().IsRegular():
			if err := copyFile(src, sp, dst, dp); err != nil {
				return err
			}
		default:
			// Devices, sockets and FIFOs are not data a volume
			// carries.
			continue
		}
		if err := copyMeta(dst, dp, st); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src *os.Root, sp string, dst *os.Root, dp string) error {
	in, err := src.OpenFile(sp, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := dst.OpenFile(dp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", sp, err)
	}
	return out.Close()
}

// copyMeta gives dp the owner, mode and times of st. The mode is set after
// the owner, since chown clears setuid and setgid bits.
func copyMeta(dst *os.Root, dp string, st fs.FileInfo) error {
	if err := lchown(dst, dp, st); err != nil {
		return err
	}
	if err := dst.Chmod(dp, st.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return err
	}
	return dst.Chtimes(dp, st.ModTime(), st.ModTime())
}

func lchown(dst *os.Root, dp string, st fs.FileInfo) error {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	return dst.Lchown(dp, int(sys.Uid), int(sys.Gid))
}
