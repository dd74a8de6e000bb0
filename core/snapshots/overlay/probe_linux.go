package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/core/mount"
)

// probe finds out what overlayfs supports on root's filesystem by mounting
// small overlays in a directory under root, and fails with an error
// wrapping errdefs.ErrNotImplemented if overlayfs does not work there at
// all (no overlay in the kernel, or a filesystem that cannot be an upper
// layer, such as another overlay).
func probe(root string) (Features, error) {
	removeStaleProbes(root)
	dir, err := os.MkdirTemp(root, "probe-")
	if err != nil {
		return Features{}, err
	}
	defer removeProbe(dir)

	var f Features
	base := []string(nil)
	err = tryOverlay(filepath.Join(dir, "plain"))
	if err != nil || inUserNamespace() {
		if uerr := tryOverlay(filepath.Join(dir, "userxattr"), "userxattr"); uerr == nil {
			f.UserXattr, f.UserXattrSupported = true, true
			base = []string{"userxattr"}
		} else if err != nil {
			return Features{}, fmt.Errorf("overlayfs does not work in %s: %v: %w", root, err, errdefs.ErrNotImplemented)
		}
	}
	if !f.UserXattrSupported {
		f.UserXattrSupported = tryOverlay(filepath.Join(dir, "userxattr"), "userxattr") == nil
	}
	f.IndexOff = tryOverlay(filepath.Join(dir, "index"), append(base, "index=off")...) == nil
	f.LowerdirAppend = lowerdirAppend(dir)
	f.IDMappedLayers = tryOverlay(filepath.Join(dir, "idmap"), append(base, "uidmap=0:65534:1", "gidmap=0:65534:1")...) == nil
	return f, nil
}

// tryOverlay mounts an overlay of two layers in dir with options and checks
// that it shows both and takes a write and a deletion (a whiteout).
func tryOverlay(dir string, options ...string) (retErr error) {
	l1, l2, upper, work, merged := filepath.Join(dir, "l1"), filepath.Join(dir, "l2"),
		filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	for _, d := range []string{l1, l2, upper, work, merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(l1, "top"), []byte("1"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(l2, "bottom"), []byte("2"), 0o644); err != nil {
		return err
	}
	opts := append(slices.Clone(options), "workdir="+work, "upperdir="+upper, "lowerdir="+l1+":"+l2)
	if err := mount.All([]mount.Mount{{Type: "overlay", Source: "overlay", Options: opts}}, merged); err != nil {
		return err
	}
	defer func() {
		if err := mount.UnmountAll(merged); err != nil && retErr == nil {
			retErr = err
		}
	}()
	for name, want := range map[string]string{"top": "1", "bottom": "2"} {
		got, err := os.ReadFile(filepath.Join(merged, name))
		if err != nil {
			return err
		}
		if string(got) != want {
			return fmt.Errorf("overlay shows %q in %s, want %q", got, name, want)
		}
	}
	if err := os.WriteFile(filepath.Join(merged, "new"), []byte("3"), 0o644); err != nil {
		return fmt.Errorf("write to overlay: %w", err)
	}
	if err := os.Remove(filepath.Join(merged, "bottom")); err != nil {
		return fmt.Errorf("delete from overlay: %w", err)
	}
	if _, err := os.Lstat(filepath.Join(merged, "bottom")); !os.IsNotExist(err) {
		return fmt.Errorf("overlay still shows a deleted file (%v)", err)
	}
	return nil
}

// lowerdirAppend reports whether the kernel takes "lowerdir+" through
// fsconfig. An unknown parameter is tried too: before 6.5 overlay took
// parameters through a legacy shim that accepts anything, and refuses
// "lowerdir+" only when the filesystem is created.
func lowerdirAppend(dir string) bool {
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return false
	}
	defer unix.Close(fsfd)
	if unix.FsconfigSetString(fsfd, "hull-probe-unknown", "x") == nil {
		return false
	}
	return unix.FsconfigSetString(fsfd, "lowerdir+", dir) == nil
}

// inUserNamespace reports whether the process runs in a user namespace
// other than the initial one, whose uid map covers every ID.
func inUserNamespace() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	return !bytes.Equal(bytes.Join(bytes.Fields(b), []byte(" ")), []byte("0 0 4294967295"))
}

// removeStaleProbes removes the probe directories of a snapshotter that
// crashed while probing; the database lock, already held, says no other
// snapshotter uses root.
func removeStaleProbes(root string) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "probe-") {
			removeProbe(filepath.Join(root, e.Name()))
		}
	}
}

// removeProbe unmounts what is left mounted in a probe directory and
// removes it, but never while anything stays mounted.
func removeProbe(dir string) {
	mounted, err := mount.MountedUnder(dir)
	if err != nil {
		return
	}
	var errs []error
	for _, m := range mounted {
		errs = append(errs, mount.UnmountAll(m))
	}
	if errors.Join(errs...) != nil {
		return
	}
	os.RemoveAll(dir)
}
