package overlay

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/core/snapshots/storage"
)

// A snapshot made with snapshots.LabelUIDMapping and LabelGIDMapping (a
// pod's root filesystem in a user namespace) must show the image's files
// as owned by the namespace's ids. Where the kernel idmaps overlay layers
// (Linux 5.19 and later), the snapshot's mounts carry "uidmap="/"gidmap="
// options and core/mount idmaps the lower layers, so no file is copied;
// the upper directory, written with the namespace's host ids, only has its
// root given to the mapped owner. Elsewhere the snapshot is made owned by
// the namespace by changing every owner through a temporary mount, which
// copies each file up (the slow path, recorded by a marker file so that
// its mounts are never also idmapped).

// remap is a snapshot's user namespace mapping.
type remap struct {
	uids, gids []mount.IDMap
}

// remapOf reads the mapping a snapshot's labels ask for; nil if none.
func remapOf(labels map[string]string) (*remap, error) {
	uids, gids, ok, err := snapshots.IDMapping(labels)
	if err != nil || !ok {
		return nil, err
	}
	return &remap{uids: uids, gids: gids}, nil
}

// shift returns the host ids uid and gid map to; an id the mapping does not
// cover is left as it is (the namespace sees it as the overflow id).
func (r *remap) shift(uid, gid uint32) (int, int) {
	if h, ok := mount.HostID(r.uids, uid); ok {
		uid = h
	}
	if h, ok := mount.HostID(r.gids, gid); ok {
		gid = h
	}
	return int(uid), int(gid)
}

// options are the mount options that idmap a mount with r.
func (r *remap) options() []string {
	return []string{"uidmap=" + mount.FormatIDMaps(r.uids), "gidmap=" + mount.FormatIDMaps(r.gids)}
}

// chownedMarker, in a snapshot's directory, says its files were given the
// namespace's owners on disk.
const chownedMarker = "remapped-by-chown"

func (s *Snapshotter) chowned(id uint64) bool {
	_, err := os.Lstat(filepath.Join(s.dir(id), chownedMarker))
	return err == nil
}

// shiftOwner gives path the owner r maps its present one to, keeping its
// mode (a chown clears set-id bits).
func (r *remap) shiftOwner(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	uid, gid := r.shift(st.Uid, st.Gid)
	if err := os.Lchown(path, uid, gid); err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink != 0 || fi.Mode()&(os.ModeSetuid|os.ModeSetgid) == 0 {
		return nil
	}
	return os.Chmod(path, fi.Mode()&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky))
}

// chownSnapshot gives every file of active snapshot id, as its mounts show
// them, the owner r maps it to. It is the slow path for kernels that cannot
// idmap overlay layers: each file is copied up into the upper directory.
func (s *Snapshotter) chownSnapshot(ctx context.Context, id uint64, mounts []mount.Mount, r *remap) error {
	err := mount.WithTempMount(ctx, mounts, func(root string) error {
		return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			return r.shiftOwner(path)
		})
	}, mount.WithTempMountDir(s.root))
	if err != nil {
		return fmt.Errorf("give snapshot %d the user namespace's owners: %w", id, err)
	}
	return writeMarker(filepath.Join(s.dir(id), chownedMarker))
}

// errNoIDMappedViews is returned for a view with an id mapping where the
// kernel cannot idmap layers: a view shares its layers' directories, whose
// owners cannot be changed for it alone.
var errNoIDMappedViews = errors.New("views in a user namespace need idmapped overlay layers (Linux 5.19 and later)")

func noIDMappedViews(key string) error {
	return fmt.Errorf("view %q: %w: %w", key, errNoIDMappedViews, errdefs.ErrNotImplemented)
}

// remapRoot prepares the new directory dir of active snapshot snap for id
// mapping r. With idmapped layers, the upper directory's root, which gives
// the merged tree's root its owner, is given the mapped owner, while a
// snapshot without parent is idmapped whole and left alone. Without them, a
// snapshot without parent (an empty tree) just has its root given the
// mapped owner and is marked as chowned; one with parents is chowned whole
// once it exists (chownSnapshot).
func (s *Snapshotter) remapRoot(dir string, snap storage.Snapshot, r *remap) error {
	if r == nil {
		return nil
	}
	hasParents := len(snap.ParentIDs) > 0
	switch {
	case s.features.IDMappedLayers && hasParents:
		return r.shiftOwner(filepath.Join(dir, "fs"))
	case !s.features.IDMappedLayers && !hasParents:
		if err := r.shiftOwner(filepath.Join(dir, "fs")); err != nil {
			return err
		}
		return writeMarker(filepath.Join(dir, chownedMarker))
	}
	return nil
}

func writeMarker(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}
