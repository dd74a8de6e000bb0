// Package overlay is the overlayfs snapshotter, hull's default: each
// snapshot is a directory, and an active snapshot mounts as an overlay of
// its parents' directories (read-only layers) under its own (the writable
// upper layer), so that a layer is stored once however many snapshots build
// on it.
//
// Layout under the root:
//
//	metadata.db          snapshot records (core/snapshots/storage)
//	snapshots/<id>/fs    the snapshot's files: the upper layer while active
//	snapshots/<id>/work  overlayfs's work directory (active snapshots only)
//	trash/               directories being deleted by Cleanup
//
// Directories are made under a temporary name and renamed into place in the
// write transaction that records the snapshot, so that a crash leaves either
// a whole snapshot or a directory no record names, which Cleanup deletes.
// Remove only deletes the record; Cleanup frees the disk.
package overlay

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/archive"
	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/core/snapshots/storage"
	"github.com/hullrt/hull/internal/durable"
	"github.com/hullrt/hull/internal/fsfull"
)

// UpperdirLabel is the label WithUpperdirLabel adds to every snapshot's
// Info: the path of its upper directory, for tools that look inside a
// snapshot without mounting it.
const UpperdirLabel = "containerd.io/snapshot/overlay.upperdir"

// Opt configures New.
type Opt func(*config)

type config struct {
	upperdirLabel bool
	mountOptions  []string
}

// WithUpperdirLabel makes Stat, Update and Walk report UpperdirLabel. The
// label is computed, not stored.
func WithUpperdirLabel() Opt {
	return func(c *config) { c.upperdirLabel = true }
}

// WithMountOptions adds options to every overlay mount the snapshotter
// returns, after the ones it chooses itself ("index=off", "userxattr" when
// the kernel needs them; giving "index=" or "userxattr" here overrides
// those).
func WithMountOptions(options []string) Opt {
	return func(c *config) { c.mountOptions = append(c.mountOptions, options...) }
}

// Snapshotter is the overlayfs snapshotter. It implements
// snapshots.Snapshotter and snapshots.Cleaner.
type Snapshotter struct {
	root          string
	ms            *storage.MetaStore
	upperdirLabel bool
	// options start every overlay mount's options.
	options  []string
	features Features
}

var (
	_ snapshots.Snapshotter = (*Snapshotter)(nil)
	_ snapshots.Cleaner     = (*Snapshotter)(nil)
)

// New opens the snapshotter at root, creating it if needed. It first checks
// that overlayfs works on root's filesystem, by mounting a small overlay
// there, and fails with an error wrapping errdefs.ErrNotImplemented if it
// does not, so that the caller can fall back to the native snapshotter.
func New(root string, opts ...Opt) (*Snapshotter, error) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	// Overlay options separate layers with ':' and options with ','.
	if strings.ContainsAny(root, ":,") {
		return nil, fmt.Errorf("overlay snapshotter root %q: the path must not contain ':' or ',': %w", root, errdefs.ErrInvalidArgument)
	}
	for _, d := range []string{root, filepath.Join(root, "snapshots")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	// The database comes first: its lock keeps a second snapshotter off
	// this root, so the probe's directories are ours to clean.
	ms, err := storage.NewMetaStore(filepath.Join(root, "metadata.db"))
	if err != nil {
		return nil, err
	}
	features, err := probe(root)
	if err != nil {
		ms.Close()
		return nil, err
	}
	s := &Snapshotter{root: root, ms: ms, upperdirLabel: cfg.upperdirLabel, features: features}
	if features.IndexOff && !hasOption(cfg.mountOptions, "index=") {
		s.options = append(s.options, "index=off")
	}
	if features.UserXattr && !hasOption(cfg.mountOptions, "userxattr") {
		s.options = append(s.options, "userxattr")
	}
	s.options = append(s.options, cfg.mountOptions...)
	return s, nil
}

func hasOption(options []string, prefix string) bool {
	return slices.ContainsFunc(options, func(o string) bool { return strings.HasPrefix(o, prefix) })
}

// Features reports what New found the kernel supports.
func (s *Snapshotter) Features() Features { return s.features }

func (s *Snapshotter) snapshotsDir() string { return filepath.Join(s.root, "snapshots") }

func (s *Snapshotter) dir(id uint64) string {
	return filepath.Join(s.snapshotsDir(), strconv.FormatUint(id, 10))
}

func (s *Snapshotter) upperPath(id uint64) string { return filepath.Join(s.dir(id), "fs") }

func (s *Snapshotter) workPath(id uint64) string { return filepath.Join(s.dir(id), "work") }

func (s *Snapshotter) withLabel(id uint64, info snapshots.Info) snapshots.Info {
	if s.upperdirLabel {
		if info.Labels == nil {
			info.Labels = map[string]string{}
		}
		info.Labels[UpperdirLabel] = s.upperPath(id)
	}
	return info
}

// Stat returns the Info of snapshot key.
func (s *Snapshotter) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	var (
		id   uint64
		info snapshots.Info
	)
	err := s.ms.View(ctx, func(tx *storage.Tx) error {
		var err error
		id, info, _, err = tx.GetInfo(key)
		return err
	})
	if err != nil {
		return snapshots.Info{}, err
	}
	return s.withLabel(id, info), nil
}

// Update changes the labels of snapshot info.Name.
func (s *Snapshotter) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	if s.upperdirLabel && info.Labels[UpperdirLabel] != "" {
		// A client updating what Stat returned sends the computed
		// label back; it is not the client's to store.
		info.Labels = maps.Clone(info.Labels)
		delete(info.Labels, UpperdirLabel)
	}
	var (
		id      uint64
		updated snapshots.Info
	)
	err := s.ms.Update(ctx, func(tx *storage.Tx) error {
		var err error
		if updated, err = tx.UpdateInfo(info, fieldpaths...); err != nil {
			return err
		}
		id, _, _, err = tx.GetInfo(info.Name)
		return err
	})
	if err != nil {
		return snapshots.Info{}, err
	}
	return s.withLabel(id, updated), nil
}

// Usage returns the disk snapshot key uses by itself: measured now for an
// active snapshot, as measured at Commit for a committed one.
func (s *Snapshotter) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	return s.ms.Usage(ctx, key, s.upperPath)
}

// Mounts returns the mounts of active snapshot or view key.
func (s *Snapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	var (
		snap storage.Snapshot
		info snapshots.Info
	)
	err := s.ms.View(ctx, func(tx *storage.Tx) error {
		var err error
		if snap, err = tx.GetSnapshot(key); err != nil {
			return err
		}
		_, info, _, err = tx.GetInfo(key)
		return err
	})
	if err != nil {
		return nil, err
	}
	r, err := remapOf(info.Labels)
	if err != nil {
		return nil, err
	}
	return s.mounts(snap, r), nil
}

// Prepare makes active snapshot key on parent and returns its mounts.
func (s *Snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	m, err := s.create(ctx, snapshots.KindActive, key, parent, opts)
	return m, s.full(err)
}

// PrepareMany implements snapshots.ManyPreparer: the snapshots are
// recorded, and their directories placed, in one transaction. When one of
// them cannot be made, or asks for an owner remapping (which may chown a
// parent's tree), each is made on its own instead, so that each gets the
// result its own Prepare would have given.
func (s *Snapshotter) PrepareMany(ctx context.Context, reqs []snapshots.PrepareRequest) []snapshots.PrepareResult {
	out := make([]snapshots.PrepareResult, len(reqs))
	snaps := make([]storage.Snapshot, len(reqs))
	alone := false
	for _, r := range reqs {
		labels, err := snapshots.LabelsOf(r.Opts)
		if rm, rerr := remapOf(labels); err != nil || rerr != nil || rm != nil {
			alone = true
			break
		}
	}
	if !alone {
		err := s.ms.Update(ctx, func(tx *storage.Tx) error {
			for i, r := range reqs {
				snap, err := tx.CreateSnapshot(snapshots.KindActive, r.Key, r.Parent, r.Opts...)
				if err != nil {
					return err
				}
				if err := s.makeDirs(snap, nil, storage.MoveDir); err != nil {
					return fmt.Errorf("create snapshot %q: %w", r.Key, err)
				}
				snaps[i] = snap
			}
			// One sync of the directory they were all moved into.
			return durable.SyncDir(s.snapshotsDir())
		})
		if err == nil {
			for i, snap := range snaps {
				out[i].Mounts = s.mounts(snap, nil)
			}
			return out
		}
	}
	return snapshots.PrepareEach(ctx, s, reqs)
}

// View makes view key of parent and returns its mounts.
func (s *Snapshotter) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	m, err := s.create(ctx, snapshots.KindView, key, parent, opts)
	return m, s.full(err)
}

// full names the snapshotter's filesystem in err if err says it is full.
func (s *Snapshotter) full(err error) error { return fsfull.Wrap(err, "snapshotter overlayfs", s.root) }

func (s *Snapshotter) create(ctx context.Context, kind snapshots.Kind, key, parent string, opts []snapshots.Opt) (_ []mount.Mount, retErr error) {
	labels, err := snapshots.LabelsOf(opts)
	if err != nil {
		return nil, err
	}
	r, err := remapOf(labels)
	if err != nil {
		return nil, fmt.Errorf("snapshot %q: %w", key, err)
	}
	if r != nil && kind == snapshots.KindView && parent != "" && !s.features.IDMappedLayers {
		return nil, noIDMappedViews(key)
	}
	var snap storage.Snapshot
	err = s.ms.Update(ctx, func(tx *storage.Tx) error {
		var err error
		if snap, err = tx.CreateSnapshot(kind, key, parent, opts...); err != nil {
			return err
		}
		if err := s.makeDirs(snap, r, storage.PlaceDir); err != nil {
			return fmt.Errorf("create snapshot %q: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if r != nil && !s.features.IDMappedLayers && len(snap.ParentIDs) > 0 {
		if err := s.chownSnapshot(ctx, snap.ID, s.mounts(snap, nil), r); err != nil {
			if rerr := s.ms.RemoveSnapshot(context.WithoutCancel(ctx), key); rerr != nil {
				err = fmt.Errorf("%w (and removing it: %v)", err, rerr)
			}
			return nil, err
		}
	}
	return s.mounts(snap, r), nil
}

// makeDirs makes the directories of a new snapshot, inside the transaction
// that records it (see the package documentation), and moves them into
// place with place (storage.PlaceDir, or storage.MoveDir when the caller
// syncs the snapshots directory itself).
func (s *Snapshotter) makeDirs(snap storage.Snapshot, r *remap, place func(tmp, target string) error) (retErr error) {
	tmp, err := os.MkdirTemp(s.snapshotsDir(), "new-")
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			os.RemoveAll(tmp)
		}
	}()
	fs := filepath.Join(tmp, "fs")
	if err := os.Mkdir(fs, 0o755); err != nil {
		return err
	}
	if snap.Kind == snapshots.KindActive {
		if err := os.Mkdir(filepath.Join(tmp, "work"), 0o700); err != nil {
			return err
		}
		if len(snap.ParentIDs) > 0 {
			// The merged tree's root takes its owner and mode from
			// the upper layer: give it the parent's.
			if err := copyRootAttrs(s.upperPath(snap.ParentIDs[0]), fs); err != nil {
				return err
			}
		}
		if err := s.remapRoot(tmp, snap, r); err != nil {
			return err
		}
	}
	return place(tmp, s.dir(snap.ID))
}

func copyRootAttrs(from, to string) error {
	fi, err := os.Stat(from)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if err := os.Lchown(to, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	// After the chown, which clears set-id bits.
	return os.Chmod(to, fi.Mode()&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky))
}

// mounts returns the mounts of an active snapshot or view: a bind mount
// when there is a single directory to show, an overlay otherwise.
//
// With an id mapping r, the mounts are idmapped, unless the kernel cannot
// (the snapshot's owners were changed on disk instead).
func (s *Snapshotter) mounts(snap storage.Snapshot, r *remap) []mount.Mount {
	var idmap []string
	if r != nil && s.features.IDMappedLayers && !s.chowned(snap.ID) {
		idmap = r.options()
	}
	if len(snap.ParentIDs) == 0 {
		mode := "rw"
		if snap.Kind == snapshots.KindView {
			mode = "ro"
		}
		return []mount.Mount{{Type: "bind", Source: s.upperPath(snap.ID), Options: append([]string{mode, "rbind"}, idmap...)}}
	}
	if snap.Kind == snapshots.KindView && len(snap.ParentIDs) == 1 {
		return []mount.Mount{{Type: "bind", Source: s.upperPath(snap.ParentIDs[0]), Options: append([]string{"ro", "rbind"}, idmap...)}}
	}
	options := slices.Clone(s.options)
	if snap.Kind == snapshots.KindActive {
		options = append(options, "workdir="+s.workPath(snap.ID), "upperdir="+s.upperPath(snap.ID))
	} else {
		options = append(options, "ro")
	}
	lowers := make([]string, len(snap.ParentIDs))
	for i, id := range snap.ParentIDs {
		lowers[i] = s.upperPath(id)
	}
	options = append(options, "lowerdir="+strings.Join(lowers, ":"))
	options = append(options, idmap...)
	return []mount.Mount{{Type: "overlay", Source: "overlay", Options: options}}
}

// Commit seals active snapshot key as committed snapshot name, recording
// its disk usage. With snapshots.WithParent, a snapshot prepared without
// parent becomes a child of that parent: its directory, written as an
// upper directory (overlay whiteouts and opaque marks), becomes the top
// layer of the parent's chain, and the directories its apply made without
// metadata of their own get that of the parent's chain
// (archive.FixImplicitParents). This is refused (errdefs.ErrNotImplemented)
// when the snapshotter's overlays keep their marks elsewhere (userxattr)
// or data in lower layers (metacopy, redirect_dir), where an upper
// directory written apart from its lowers is not what overlayfs expects.
func (s *Snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	parent, err := snapshots.ParentOf(opts)
	if err != nil {
		return err
	}
	if parent != "" {
		if !s.CanRebase() {
			return fmt.Errorf("commit %q onto %q: this overlay snapshotter mounts with %v, whose upper directories cannot be written apart from their lower layers: %w", key, parent, s.options, errdefs.ErrNotImplemented)
		}
		if _, err := s.fixImplicitParents(ctx, parent, []snapshots.CommitLink{{Name: name, Key: key}}); err != nil {
			return err
		}
	}
	return s.full(s.ms.Commit(ctx, name, key, s.upperPath, opts...))
}

// CommitChain implements snapshots.ChainCommitter: Commit for each link,
// with one transaction of the records for all of them.
func (s *Snapshotter) CommitChain(ctx context.Context, parent string, links []snapshots.CommitLink) (int, error) {
	if !s.CanRebase() {
		// Commit says which link cannot be given its parent.
		return snapshots.CommitEach(ctx, s, parent, links)
	}
	fixed, ferr := s.fixImplicitParents(ctx, parent, links)
	n, err := s.ms.CommitChain(ctx, parent, links[:fixed], s.upperPath)
	if err != nil || ferr == nil {
		return n, s.full(err)
	}
	return n, ferr
}

// fixImplicitParents gives the directories that detached applies into
// the links' keys made for entries of a layer that did not list them
// (archive.WithDetachedUpper) the metadata they have in the chain below,
// as an apply over that chain would have given them: parent's chain for
// the first link, topped for each next one by the links before it. It
// returns how many links it fixed, with the error of the next one.
func (s *Snapshotter) fixImplicitParents(ctx context.Context, parent string, links []snapshots.CommitLink) (int, error) {
	ids := make([]uint64, 0, len(links))
	err := s.ms.View(ctx, func(tx *storage.Tx) error {
		for _, l := range links {
			id, _, _, err := tx.GetInfo(l.Key)
			if err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return len(ids), err
	}
	var (
		below     []uint64 // parent's chain, topmost first
		readBelow bool
	)
	for i, id := range ids {
		onto := parent
		if i > 0 {
			onto = links[i-1].Name
		}
		if onto == "" {
			continue // nothing below
		}
		// Most layers name every directory they write into: only the
		// others need the chain below, which is as long as the image is
		// deep.
		if ok, err := archive.HasImplicitParents(s.upperPath(id)); err != nil || !ok {
			if err != nil {
				return i, fmt.Errorf("commit %q onto %q: %w", links[i].Key, onto, err)
			}
			continue
		}
		if !readBelow && parent != "" {
			err := s.ms.View(ctx, func(tx *storage.Tx) error {
				var err error
				below, err = tx.ChainIDs(parent)
				return err
			})
			if err != nil {
				return i, err
			}
		}
		readBelow = true
		lowers := make([]string, 0, i+len(below))
		for j := i - 1; j >= 0; j-- {
			lowers = append(lowers, s.upperPath(ids[j]))
		}
		for _, lid := range below {
			lowers = append(lowers, s.upperPath(lid))
		}
		if err := archive.FixImplicitParents(s.upperPath(id), lowers...); err != nil {
			return i, fmt.Errorf("commit %q onto %q: %w", links[i].Key, onto, err)
		}
	}
	return len(ids), nil
}

// CanRebase reports whether Commit honours snapshots.WithParent: whether an
// upper directory written without its lower layers, with trusted.overlay.*
// whiteouts and opaque marks, is one this snapshotter's overlays read as
// the layer it holds.
func (s *Snapshotter) CanRebase() bool {
	for _, o := range s.options {
		k, v, _ := strings.Cut(o, "=")
		switch k {
		case "userxattr":
			return false
		case "metacopy", "redirect_dir":
			if v != "off" && v != "nofollow" {
				return false
			}
		}
	}
	return true
}

// Remove removes snapshot key, which must have no children. Its directory
// stays until Cleanup.
func (s *Snapshotter) Remove(ctx context.Context, key string) error {
	return s.ms.RemoveSnapshot(ctx, key)
}

// Walk calls fn for each snapshot matching any of filters.
func (s *Snapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	// fn runs after the transaction: it may well call back into the
	// snapshotter, and a write from inside a read transaction can
	// deadlock bbolt.
	type item struct {
		id   uint64
		info snapshots.Info
	}
	var items []item
	if err := s.ms.View(ctx, func(tx *storage.Tx) error {
		return tx.WalkInfo(func(id uint64, info snapshots.Info) error {
			items = append(items, item{id, info})
			return nil
		}, filters...)
	}); err != nil {
		return err
	}
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(ctx, s.withLabel(it.id, it.info)); err != nil {
			return err
		}
	}
	return nil
}

// Cleanup deletes the directories of removed snapshots and whatever an
// interrupted Prepare, View or Cleanup left behind.
func (s *Snapshotter) Cleanup(ctx context.Context) error {
	return s.ms.CleanupDirs(ctx, s.snapshotsDir(), filepath.Join(s.root, "trash"), nil)
}

// Close closes the snapshotter's database.
func (s *Snapshotter) Close() error { return s.ms.Close() }
