package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/namespaces"
)

// Options configure a Manager.
type Options struct {
	// AllowedRoots are the directories below which the mkdir transform
	// may create directories, besides the manager's own.
	AllowedRoots []string
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Manager performs and records activations (see the package comment). It
// implements Activator.
type Manager struct {
	store Store
	// dir holds one directory per activation, named by its record's ID,
	// with one mount point per mount the manager performed.
	dir   string
	roots []string
	log   *slog.Logger

	// locks serialises the calls on one name, so that a Deactivate never
	// meets an Activate of the same name half done.
	locksMu sync.Mutex
	locks   map[string]chan struct{}
}

var _ Activator = (*Manager)(nil)

// New returns a manager keeping its records in store and its mounts below
// dir, which it creates.
func New(store Store, dir string, opts Options) (*Manager, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mount manager directory: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	m := &Manager{store: store, dir: abs, log: opts.Logger, locks: map[string]chan struct{}{}}
	if m.log == nil {
		m.log = slog.Default()
	}
	for _, r := range append([]string{abs}, opts.AllowedRoots...) {
		if r, err = filepath.Abs(r); err == nil {
			m.roots = append(m.roots, filepath.Clean(r))
		}
	}
	return m, nil
}

// Dir is the directory the manager mounts in.
func (m *Manager) Dir() string { return m.dir }

// lock takes the lock of name in the namespace of ctx and returns its
// release.
func (m *Manager) lock(ctx context.Context, ns, name string) (func(), error) {
	key := ns + "\x00" + name
	for {
		m.locksMu.Lock()
		ch, held := m.locks[key]
		if !held {
			ch = make(chan struct{})
			m.locks[key] = ch
			m.locksMu.Unlock()
			return func() {
				m.locksMu.Lock()
				delete(m.locks, key)
				m.locksMu.Unlock()
				close(ch)
			}, nil
		}
		m.locksMu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func validateName(name string) error {
	if name == "" {
		return fmt.Errorf("activation name must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	if len(name) > 255 || strings.ContainsRune(name, 0) {
		return fmt.Errorf("activation name %q: at most 255 bytes without NUL: %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Activate performs the mounts of mounts that need the daemon (see the
// package comment) and records them as name in the namespace of ctx, with
// the lease of ctx. Everything is checked before anything is mounted: a
// type hull cannot mount and a template naming a mount that does not come
// before it are InvalidArgument. A failed Activate leaves nothing behind.
func (m *Manager) Activate(ctx context.Context, name string, mounts []mount.Mount, opts ...ActivateOpt) (_ ActivationInfo, retErr error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return ActivationInfo{}, err
	}
	if err := validateName(name); err != nil {
		return ActivationInfo{}, err
	}
	var o ActivateOptions
	for _, opt := range opts {
		opt(&o)
	}
	mounts = cloneMounts(mounts)
	p, err := makePlan(mounts, o, map[string]transform{"format": format, "mkdir": m.mkdir})
	if err != nil {
		return ActivationInfo{}, err
	}
	if p.first < 0 {
		return ActivationInfo{}, fmt.Errorf("activation %q: no mount needs the mount manager, the caller performs them: %w", name, errdefs.ErrNotImplemented)
	}
	if err := checkPlan(mounts, p); err != nil {
		return ActivationInfo{}, fmt.Errorf("activation %q: %w", name, err)
	}
	unlock, err := m.lock(ctx, ns, name)
	if err != nil {
		return ActivationInfo{}, err
	}
	defer unlock()

	rec, err := m.store.Reserve(ctx, name, o.Labels)
	if err != nil {
		return ActivationInfo{}, err
	}
	dir := m.activationDir(rec.ID)
	var active []ActiveMount
	defer func() {
		if retErr == nil {
			return
		}
		// The record goes last: while it is there, Recover finds what
		// is left if this cleanup fails.
		if err := m.undo(dir, active); err != nil {
			m.log.Warn("mount manager: undo failed activation", "namespace", ns, "name", name, "error", err)
			return
		}
		if err := m.store.Delete(context.WithoutCancel(ctx), name, rec.ID); err != nil {
			m.log.Warn("mount manager: remove record of failed activation", "namespace", ns, "name", name, "error", err)
		}
	}()
	if err := os.Mkdir(dir, 0o700); err != nil {
		return ActivationInfo{}, fmt.Errorf("activation %q: %w", name, err)
	}
	for i := range p.first {
		mt, err := applyTransforms(mounts[i], p.steps[i], len(p.steps[i].transforms), active)
		if err != nil {
			return ActivationInfo{}, fmt.Errorf("activation %q: mount %d: %w", name, i, err)
		}
		mp := filepath.Join(dir, strconv.Itoa(i))
		if err := perform(mt, mp); err != nil {
			return ActivationInfo{}, fmt.Errorf("activation %q: mount %d: %w", name, i, err)
		}
		active = append(active, ActiveMount{Mount: mt, MountedAt: time.Now().UTC(), MountPoint: mp})
	}
	system := mounts[p.first:]
	if len(system) > 0 {
		first, err := applyTransforms(system[0], p.steps[p.first], p.steps[p.first].apply, active)
		if err != nil {
			return ActivationInfo{}, fmt.Errorf("activation %q: mount %d: %w", name, p.first, err)
		}
		system[0] = first
	}
	if o.Temporary && len(active) > 0 {
		system = append(system, mount.Mount{Type: "bind", Source: active[len(active)-1].MountPoint, Options: []string{"rbind"}})
	}
	rec, err = m.store.Complete(ctx, name, rec.ID, active, system)
	if err != nil {
		return ActivationInfo{}, err
	}
	return rec.Info(), nil
}

// checkPlan finds, before anything is mounted, what would fail for certain:
// a type the manager would have to mount and cannot, and templates that
// are malformed or name a mount that does not come before theirs.
func checkPlan(mounts []mount.Mount, p plan) error {
	for i, mt := range mounts {
		if i > p.first || i == len(mounts) {
			break
		}
		fake := make([]ActiveMount, i)
		for j := range fake {
			fake[j].MountPoint = "/"
		}
		if _, err := format(mt, fake); err != nil && slices.Contains(p.steps[i].names, "format") {
			return fmt.Errorf("mount %d: %w", i, err)
		}
		if i < p.first {
			if err := canPerform(p.steps[i].baseType(mt)); err != nil {
				return fmt.Errorf("mount %d: %w", i, err)
			}
		}
	}
	return nil
}

// applyTransforms applies the first n transforms of st to mt.
func applyTransforms(mt mount.Mount, st step, n int, active []ActiveMount) (mount.Mount, error) {
	for k := range n {
		mt.Type = st.types[k]
		var err error
		if mt, err = st.transforms[k](mt, active); err != nil {
			return mt, err
		}
	}
	return mt, nil
}

func cloneMounts(ms []mount.Mount) []mount.Mount {
	out := make([]mount.Mount, len(ms))
	for i, mt := range ms {
		out[i] = mt
		out[i].Options = append([]string(nil), mt.Options...)
	}
	return out
}

func (m *Manager) activationDir(id uint64) string {
	return filepath.Join(m.dir, strconv.FormatUint(id, 10))
}

// undo unmounts active in reverse order, then whatever is still mounted
// below dir, and removes dir once nothing is mounted there.
func (m *Manager) undo(dir string, active []ActiveMount) error {
	var errs []error
	for i := len(active) - 1; i >= 0; i-- {
		if err := mount.UnmountAll(active[i].MountPoint); err != nil {
			errs = append(errs, err)
		}
	}
	left, err := mount.MountedUnder(dir)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, mp := range left {
		if err := mount.UnmountAll(mp); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// Checked again: removing a tree follows mounts into what they show.
	if left, err := mount.MountedUnder(dir); err != nil || len(left) > 0 {
		return fmt.Errorf("still mounted below %s: %v (%v)", dir, left, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return nil
}

// Deactivate unmounts what activation name mounted and removes its record;
// NotFound when there is no such activation. The record is removed only
// once the mounts are gone, so a failed unmount can be tried again.
func (m *Manager) Deactivate(ctx context.Context, name string) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	unlock, err := m.lock(ctx, ns, name)
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := m.store.Get(ctx, name)
	if err != nil {
		return err
	}
	if err := m.undo(m.activationDir(rec.ID), rec.Active); err != nil {
		return fmt.Errorf("deactivate %q: %w", name, err)
	}
	return m.store.Delete(ctx, name, rec.ID)
}

// Info returns activation name of the namespace of ctx.
func (m *Manager) Info(ctx context.Context, name string) (ActivationInfo, error) {
	rec, err := m.store.Get(ctx, name)
	if err != nil {
		return ActivationInfo{}, err
	}
	return rec.Info(), nil
}

// Update changes the labels of activation info.Name as fieldpaths say
// ("labels", "labels.<key>"; none means "labels"). Nothing else of an
// activation changes after it is made.
func (m *Manager) Update(ctx context.Context, info ActivationInfo, fieldpaths ...string) (ActivationInfo, error) {
	if len(fieldpaths) == 0 {
		fieldpaths = []string{"labels"}
	}
	rec, err := m.store.UpdateLabels(ctx, info.Name, info.Labels, fieldpaths...)
	if err != nil {
		return ActivationInfo{}, err
	}
	return rec.Info(), nil
}

// List returns the activations of the namespace of ctx matching any of
// filters (fields: name, labels.<key>).
func (m *Manager) List(ctx context.Context, filters ...string) ([]ActivationInfo, error) {
	recs, err := m.store.List(ctx, filters...)
	if err != nil {
		return nil, err
	}
	out := make([]ActivationInfo, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.Info())
	}
	return out, nil
}

// Release undoes the mounts of records the garbage collector removed. It
// is the metadata store's hook, called after the collection committed.
func (m *Manager) Release(ctx context.Context, recs []Record) {
	for _, r := range recs {
		if err := m.undo(m.activationDir(r.ID), r.Active); err != nil {
			m.log.Warn("mount manager: unmount collected activation", "namespace", r.Namespace, "name", r.Name, "error", err)
		}
	}
}

// Recover makes the directory and the records agree after a restart:
// incomplete activations (a crash during Activate) are undone and their
// records removed; complete ones whose mounts are gone (a reboot) lose
// their records too, since what they describe no longer exists; and
// directories no record names are unmounted and removed.
func (m *Manager) Recover(ctx context.Context) error {
	recs, err := m.store.All(ctx)
	if err != nil {
		return err
	}
	named := map[string]bool{}
	var errs []error
	for _, r := range recs {
		dir := m.activationDir(r.ID)
		if r.Complete && mountsPresent(r.Active) {
			named[filepath.Base(dir)] = true
			continue
		}
		if err := m.undo(dir, r.Active); err != nil {
			errs = append(errs, fmt.Errorf("activation %q in %q: %w", r.Name, r.Namespace, err))
			named[filepath.Base(dir)] = true
			continue
		}
		nctx := namespaces.WithNamespace(ctx, r.Namespace)
		if err := m.store.Delete(nctx, r.Name, r.ID); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
		m.log.Info("mount manager: removed stale activation", "namespace", r.Namespace, "name", r.Name, "complete", r.Complete)
	}
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, e := range entries {
		if named[e.Name()] {
			continue
		}
		if err := m.undo(filepath.Join(m.dir, e.Name()), nil); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// mountsPresent reports whether every mount point of active is mounted.
func mountsPresent(active []ActiveMount) bool {
	for _, a := range active {
		mps, err := mount.MountedUnder(a.MountPoint)
		if err != nil || !slices.Contains(mps, a.MountPoint) {
			return false
		}
	}
	return true
}
