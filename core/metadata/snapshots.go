package metadata

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"

	"github.com/hullrt/hull/core/filters"
	"github.com/hullrt/hull/core/labels"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/internal/crashpoint"
)

// LabelSnapshotRef on a Prepare names the committed snapshot the caller
// will commit (an image layer's chain ID). If another namespace has it
// already, Prepare links it into this one and answers AlreadyExists, so a
// layer is unpacked once per snapshotter, not once per namespace.
const LabelSnapshotRef = labels.SnapshotRef

// backendLabelPrefix marks the labels that are passed to the backend
// snapshotter; the others are the namespace's own.
const backendLabelPrefix = "containerd.io/snapshot/"

// snapRecord is a namespace's snapshot: its own key, parent and labels, and
// the name of the backend snapshot behind it.
type snapRecord struct {
	Backend string            `json:"backend"`
	Parent  string            `json:"parent,omitempty"`
	Kind    snapshots.Kind    `json:"kind"`
	Labels  map[string]string `json:"labels,omitempty"`
	Created time.Time         `json:"created"`
	Updated time.Time         `json:"updated"`
}

// snapshotters are the backends the metadata store fronts, by name.
type snapshotters struct {
	mu sync.RWMutex
	m  map[string]snapshots.Snapshotter
}

// AddSnapshotter makes backend available as snapshotter name.
func (db *DB) AddSnapshotter(name string, backend snapshots.Snapshotter) {
	db.sn.mu.Lock()
	defer db.sn.mu.Unlock()
	if db.sn.m == nil {
		db.sn.m = map[string]snapshots.Snapshotter{}
	}
	db.sn.m[name] = backend
}

// SnapshotterNames lists the snapshotters.
func (db *DB) SnapshotterNames() []string {
	db.sn.mu.RLock()
	defer db.sn.mu.RUnlock()
	var out []string
	for n := range db.sn.m {
		out = append(out, n)
	}
	return out
}

// Snapshotter returns the namespaced snapshotter name; NotFound if there
// is no such backend.
func (db *DB) Snapshotter(name string) (snapshots.Snapshotter, error) {
	db.sn.mu.RLock()
	b, ok := db.sn.m[name]
	db.sn.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("snapshotter %q is not loaded: %w", name, errdefs.ErrNotFound)
	}
	return &snapshotStore{db: db, name: name, backend: b}, nil
}

type snapshotStore struct {
	db      *DB
	name    string
	backend snapshots.Snapshotter
}

var _ snapshots.Snapshotter = (*snapshotStore)(nil)

func (s *snapshotStore) bucket(t *nsTx) *bolt.Bucket {
	b := t.bucket(bucketSnapshots)
	if b == nil {
		return nil
	}
	return b.Bucket([]byte(s.name))
}

func (s *snapshotStore) createBucket(t *nsTx) (*bolt.Bucket, error) {
	b, err := t.createBucket(bucketSnapshots)
	if err != nil {
		return nil, err
	}
	return b.CreateBucketIfNotExists([]byte(s.name))
}

func (s *snapshotStore) get(t *nsTx, key string) (snapRecord, error) {
	var r snapRecord
	ok, err := getRecord(s.bucket(t), key, &r)
	if err != nil {
		return r, err
	}
	if !ok {
		return r, notFound("snapshot %s does not exist", key)
	}
	return r, nil
}

func (r *snapRecord) info(key string) snapshots.Info {
	return snapshots.Info{Kind: r.Kind, Name: key, Parent: r.Parent, Labels: r.Labels, Created: r.Created, Updated: r.Updated}
}

func validKey(key string) error {
	if key == "" {
		return invalid("snapshot key must not be empty")
	}
	return nil
}

func (s *snapshotStore) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	var info snapshots.Info
	err := s.db.view(ctx, func(t *nsTx) error {
		r, err := s.get(t, key)
		info = r.info(key)
		return err
	})
	return info, err
}

func (s *snapshotStore) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	if err := labels.ValidateAll(info.Labels); err != nil {
		return snapshots.Info{}, err
	}
	var (
		out       snapshots.Info
		gcChanged bool
	)
	err := s.db.update(ctx, func(t *nsTx) error {
		r, err := s.get(t, info.Name)
		if err != nil {
			return err
		}
		if gcChanged, err = updateLabels(&r.Labels, info.Labels, fieldpaths, fmt.Sprintf("snapshot %q", info.Name)); err != nil {
			return err
		}
		r.Updated = time.Now().UTC()
		out = r.info(info.Name)
		return putRecord(s.bucket(t), info.Name, &r)
	})
	if err == nil && gcChanged {
		// A reference dropped may have kept something alive.
		s.db.kickGC()
	}
	return out, err
}

func (s *snapshotStore) backendKey(ctx context.Context, key string) (snapRecord, error) {
	var r snapRecord
	err := s.db.view(ctx, func(t *nsTx) error {
		var err error
		r, err = s.get(t, key)
		return err
	})
	return r, err
}

func (s *snapshotStore) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	r, err := s.backendKey(ctx, key)
	if err != nil {
		return snapshots.Usage{}, err
	}
	return s.backend.Usage(ctx, r.Backend)
}

func (s *snapshotStore) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	r, err := s.backendKey(ctx, key)
	if err != nil {
		return nil, err
	}
	return s.backend.Mounts(ctx, r.Backend)
}

func (s *snapshotStore) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.create(ctx, key, parent, false, opts)
}

func (s *snapshotStore) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.create(ctx, key, parent, true, opts)
}

// splitLabels separates the labels passed to the backend from the rest.
func splitLabels(all map[string]string) (backend map[string]string) {
	return labels.Prefixed(all, backendLabelPrefix)
}

func (s *snapshotStore) create(ctx context.Context, key, parent string, readonly bool, opts []snapshots.Opt) ([]mount.Mount, error) {
	base, err := newSnapshotInfo(key, opts)
	if err != nil {
		return nil, err
	}
	// The backend may copy a whole parent (native): the lease is in use
	// until it is done.
	defer s.db.HoldLease(ctx)()
	// Record the snapshot first, so the collector (which never removes a
	// backend snapshot that a record names) cannot race the backend call.
	s.db.gcMu.RLock()
	defer s.db.gcMu.RUnlock()
	var r created
	err = s.db.update(ctx, func(t *nsTx) error {
		var err error
		r, err = s.record(ctx, t, key, parent, readonly, base)
		return err
	})
	if err != nil {
		return nil, err
	}
	if r.linked {
		return nil, alreadyExists("snapshot %q (snapshotter %s)", base.Labels[LabelSnapshotRef], s.name)
	}
	bopts := []snapshots.Opt{snapshots.WithLabels(splitLabels(base.Labels))}
	var mounts []mount.Mount
	if readonly {
		mounts, err = s.backend.View(ctx, r.bkey, r.bparent, bopts...)
	} else {
		mounts, err = s.backend.Prepare(ctx, r.bkey, r.bparent, bopts...)
	}
	if err != nil {
		s.unrecord(ctx, key)
		return nil, err
	}
	return mounts, nil
}

// newSnapshotInfo checks a new snapshot's key and the options it is made
// with, and returns what those set.
func newSnapshotInfo(key string, opts []snapshots.Opt) (snapshots.Info, error) {
	var base snapshots.Info
	if err := validKey(key); err != nil {
		return base, err
	}
	for _, o := range opts {
		if err := o(&base); err != nil {
			return base, err
		}
	}
	if err := labels.ValidateAll(base.Labels); err != nil {
		return base, err
	}
	if base.Parent != "" {
		return base, fmt.Errorf("snapshot %q: WithParent is for Commit; Prepare and View take the parent as an argument: %w", key, errdefs.ErrInvalidArgument)
	}
	return base, nil
}

// created is what record wrote for a new snapshot: the backend snapshot
// to make (bkey on bparent), or, when linked, another namespace's
// committed snapshot recorded under the name the LabelSnapshotRef label
// asked for, which leaves nothing for the backend to do.
type created struct {
	bkey, bparent string
	linked        bool
}

// record writes, in t, the record of new snapshot key on parent ("" for
// none) with base's labels, and adds it to the context's lease.
func (s *snapshotStore) record(ctx context.Context, t *nsTx, key, parent string, readonly bool, base snapshots.Info) (created, error) {
	var c created
	b, err := s.createBucket(t)
	if err != nil {
		return c, err
	}
	if b.Get([]byte(key)) != nil {
		return c, alreadyExists("snapshot %q (snapshotter %s)", key, s.name)
	}
	if parent != "" {
		pr, err := s.get(t, parent)
		if err != nil {
			return c, fmt.Errorf("parent: %w", err)
		}
		if pr.Kind != snapshots.KindCommitted {
			return c, fmt.Errorf("parent %q of snapshot %q is %s, not committed: %w", parent, key, pr.Kind, errdefs.ErrFailedPrecondition)
		}
		c.bparent = pr.Backend
	}
	lease, hasLease := leases.FromContext(ctx)
	if hasLease {
		if err := addLeaseResource(t, lease, leases.Resource{Type: "snapshots/" + s.name, ID: key}); err != nil {
			return c, err
		}
	}
	now := time.Now().UTC()
	if target := base.Labels[LabelSnapshotRef]; target != "" && !readonly {
		if tb := b.Get([]byte(target)); tb != nil {
			return c, alreadyExists("snapshot %q (snapshotter %s)", target, s.name)
		}
		if shared, sparent := s.findCommitted(t, target); shared != "" && sparent == c.bparent {
			// Link the other namespace's layer into this one.
			r := snapRecord{Backend: shared, Parent: parent, Kind: snapshots.KindCommitted, Labels: copyLabels(base.Labels), Created: now, Updated: now}
			delete(r.Labels, LabelSnapshotRef)
			c.linked = true
			if hasLease {
				addLeaseResource(t, lease, leases.Resource{Type: "snapshots/" + s.name, ID: target})
			}
			return c, putRecord(b, target, &r)
		}
	}
	seq, err := b.NextSequence()
	if err != nil {
		return c, err
	}
	c.bkey = fmt.Sprintf("%s/%d/%s", t.ns, seq, key)
	kind := snapshots.KindActive
	if readonly {
		kind = snapshots.KindView
	}
	r := snapRecord{Backend: c.bkey, Parent: parent, Kind: kind, Labels: copyLabels(base.Labels), Created: now, Updated: now}
	if err := putRecord(b, key, &r); err != nil {
		return c, err
	}
	t.publish(s.db, "/snapshot/prepare", &eventstypes.SnapshotPrepare{Key: key, Parent: parent, Snapshotter: s.name})
	return c, nil
}

// recordMany records the new active snapshots of reqs, made with bases'
// labels, in one transaction, or none of them. On success it returns with
// the collector held off (as create does until the backend has made the
// snapshots) and unlock lets it go.
func (s *snapshotStore) recordMany(ctx context.Context, reqs []snapshots.PrepareRequest, bases []snapshots.Info) ([]created, func(), error) {
	recs := make([]created, len(reqs))
	s.db.gcMu.RLock()
	err := s.db.update(ctx, func(t *nsTx) error {
		for i, r := range reqs {
			var err error
			if recs[i], err = s.record(ctx, t, r.Key, r.Parent, false, bases[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.db.gcMu.RUnlock()
		return nil, nil, err
	}
	return recs, s.db.gcMu.RUnlock, nil
}

// unrecord undoes the records of new snapshots whose backend snapshots
// could not be made.
func (s *snapshotStore) unrecord(ctx context.Context, keys ...string) {
	s.db.updateFreeing(ctx, func(t *nsTx) error {
		if b := s.bucket(t); b != nil {
			for _, key := range keys {
				if err := b.Delete([]byte(key)); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// PrepareMany implements snapshots.ManyPreparer: the records go in one
// transaction and the backend snapshots to the backend as one batch when
// it takes them so (snapshots.PrepareMany). When a record cannot be
// written, each request is prepared on its own instead, so that each gets
// the result its own Prepare would have given.
func (s *snapshotStore) PrepareMany(ctx context.Context, reqs []snapshots.PrepareRequest) []snapshots.PrepareResult {
	out := make([]snapshots.PrepareResult, len(reqs))
	bases := make([]snapshots.Info, len(reqs))
	for i, r := range reqs {
		var err error
		if bases[i], err = newSnapshotInfo(r.Key, r.Opts); err != nil {
			// Each request gets its own error from Prepare.
			return snapshots.PrepareEach(ctx, s, reqs)
		}
	}
	defer s.db.HoldLease(ctx)()
	recs, unlock, err := s.recordMany(ctx, reqs, bases)
	if err != nil {
		return snapshots.PrepareEach(ctx, s, reqs)
	}
	defer unlock()
	var (
		breqs []snapshots.PrepareRequest
		bidx  []int
	)
	for i, c := range recs {
		if c.linked {
			out[i].Err = alreadyExists("snapshot %q (snapshotter %s)", bases[i].Labels[LabelSnapshotRef], s.name)
			continue
		}
		breqs = append(breqs, snapshots.PrepareRequest{Key: c.bkey, Parent: c.bparent, Opts: []snapshots.Opt{snapshots.WithLabels(splitLabels(bases[i].Labels))}})
		bidx = append(bidx, i)
	}
	var failed []string
	for k, res := range snapshots.PrepareMany(ctx, s.backend, breqs) {
		i := bidx[k]
		out[i] = res
		if res.Err != nil {
			failed = append(failed, reqs[i].Key)
		}
	}
	if len(failed) > 0 {
		s.unrecord(ctx, failed...)
	}
	return out
}

// findCommitted looks in every namespace for a committed snapshot named
// name in this snapshotter and returns its backend name and its parent's.
func (s *snapshotStore) findCommitted(t *nsTx, name string) (backend, parentBackend string) {
	for _, b := range t.snapshotBuckets(s.name) {
		var r snapRecord
		if ok, err := getRecord(b, name, &r); err != nil || !ok || r.Kind != snapshots.KindCommitted {
			continue
		}
		backend = r.Backend
		if r.Parent != "" {
			var pr snapRecord
			if ok, _ := getRecord(b, r.Parent, &pr); ok {
				parentBackend = pr.Backend
			}
		}
		return backend, parentBackend
	}
	return "", ""
}

// snapshotBuckets returns the buckets of snapshotter name in every
// namespace that has one, opened once per transaction: findCommitted
// looks a name up in each, for every snapshot an unpack prepares or
// commits, and a batch of 40 opened every namespace's buckets 40 times.
// A namespace's bucket made later in the transaction (by another update
// sharing it) is not among them: its snapshots are not linked, only
// made again, as they would be had the updates not shared a transaction.
func (t *nsTx) snapshotBuckets(name string) []*bolt.Bucket {
	if bs, ok := t.snapBuckets[name]; ok {
		return bs
	}
	var bs []*bolt.Bucket
	v1 := t.tx.Bucket(bucketV1)
	v1.ForEachBucket(func(ns []byte) error {
		if sb := v1.Bucket(ns).Bucket(bucketSnapshots); sb != nil {
			if b := sb.Bucket([]byte(name)); b != nil {
				bs = append(bs, b)
			}
		}
		return nil
	})
	if t.snapBuckets == nil {
		t.snapBuckets = map[string][]*bolt.Bucket{}
	}
	t.snapBuckets[name] = bs
	return bs
}

func (s *snapshotStore) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	parent, err := snapshots.ParentOf(opts)
	if err != nil {
		return err
	}
	_, err = s.CommitChain(ctx, parent, []snapshots.CommitLink{{Name: name, Key: key, Opts: opts}})
	return err
}

// CommitChain implements snapshots.ChainCommitter: the links go to the
// backend as one chain and their records are written in one transaction.
func (s *snapshotStore) CommitChain(ctx context.Context, parent string, links []snapshots.CommitLink) (int, error) {
	done := 0
	for done < len(links) {
		n, err := s.commitRun(ctx, parent, links[done:])
		done += n
		if err != nil {
			return done, err
		}
		parent = links[done-1].Name
	}
	return done, nil
}

// plannedCommit is one link of a run of commits, as checked.
type plannedCommit struct {
	r    snapRecord     // the active snapshot
	base snapshots.Info // the commit's labels and parent
	// backend is the name of the committed backend snapshot; parentBackend
	// that of its parent, for a rebase (snapshots.WithParent).
	backend, parentBackend string
}

// commitRun commits a first run of links: those that can be committed in
// one backend chain and one transaction. It stops before the first link it
// finds cannot be committed, and after a first link that another namespace
// committed on the same parent (commitLinked, which this run then makes
// alone); CommitChain goes on with the rest.
func (s *snapshotStore) commitRun(ctx context.Context, parent string, links []snapshots.CommitLink) (int, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return 0, err
	}
	var (
		plan []plannedCommit
		// stop is why links[len(plan)] cannot be committed.
		stop error
		// shareable: another namespace committed the first link on that
		// same parent, as seen by this read; commitLinked decides in its
		// own transaction. Most commits (a first unpack) find none and
		// so write no transaction for it.
		shareable bool
	)
	err = s.db.view(ctx, func(t *nsTx) error {
		plan, stop, shareable = plan[:0], nil, false
		onto, ontoBackend := parent, ""
		for i, l := range links {
			c, err := s.planCommit(t, l, onto, ontoBackend, links[:i])
			if err != nil {
				stop = err
				break
			}
			if i == 0 && onto != "" && c.r.Labels[LabelSnapshotRef] == l.Name {
				shared, sparent := s.findCommitted(t, l.Name)
				shareable = shared != "" && sparent == c.parentBackend
			}
			c.backend = fmt.Sprintf("%s/c%d/%s", ns, time.Now().UnixNano(), l.Name)
			plan = append(plan, c)
			onto, ontoBackend = l.Name, c.backend
			if shareable {
				break
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if len(plan) == 0 {
		return 0, stop
	}
	defer s.db.HoldLease(ctx)() // committing measures the snapshot's usage, a walk of its tree
	s.db.gcMu.RLock()
	defer s.db.gcMu.RUnlock()
	if shareable {
		c := plan[0]
		if linked, err := s.commitLinked(ctx, links[0].Name, links[0].Key, c.r, c.base, c.parentBackend); err != nil || linked {
			if err != nil {
				return 0, err
			}
			return 1, nil
		}
	}
	// The backend commits the chain with the parents it knows: its own
	// names for them.
	blinks := make([]snapshots.CommitLink, len(plan))
	for i, c := range plan {
		blinks[i] = snapshots.CommitLink{Name: c.backend, Key: c.r.Backend, Opts: []snapshots.Opt{snapshots.WithLabels(splitLabels(c.base.Labels))}}
	}
	n, berr := snapshots.CommitChain(ctx, s.backend, plan[0].parentBackend, blinks)
	if n == 0 {
		return 0, berr
	}
	// The backend has the committed snapshots and no record names them. A
	// crash here leaves them to the next collection, and the active
	// records (whose backend snapshots the commit consumed) to their
	// lease's expiry: an unpack after the restart prepares new keys and
	// unpacks again.
	crashpoint.Hit(crashpoint.SnapshotCommit)
	lease, hasLease := leases.FromContext(ctx)
	err = s.db.update(ctx, func(t *nsTx) error {
		b := s.bucket(t)
		now := time.Now().UTC()
		for i, c := range plan[:n] {
			l := links[i]
			if err := b.Delete([]byte(l.Key)); err != nil {
				return err
			}
			parent := c.r.Parent
			if c.base.Parent != "" {
				parent = c.base.Parent
			}
			nr := snapRecord{Backend: c.backend, Parent: parent, Kind: snapshots.KindCommitted, Labels: mergeLabels(c.r.Labels, c.base.Labels), Created: now, Updated: now}
			if hasLease {
				if err := addLeaseResource(t, lease, leases.Resource{Type: "snapshots/" + s.name, ID: l.Name}); err != nil && !errdefs.IsNotFound(err) {
					return err
				}
			}
			t.publish(s.db, "/snapshot/commit", &eventstypes.SnapshotCommit{Key: l.Key, Name: l.Name, Snapshotter: s.name})
			if err := putRecord(b, l.Name, &nr); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if n < len(plan) {
		return n, berr
	}
	return n, stop
}

// planCommit checks that l can be committed onto onto ("" for none; the
// committed snapshot's own parent then stays) after the earlier links of
// its run, and returns its plan. With no earlier links, onto is a
// committed snapshot; otherwise it is the last earlier link, whose backend
// snapshot is to be ontoBackend.
func (s *snapshotStore) planCommit(t *nsTx, l snapshots.CommitLink, onto, ontoBackend string, earlier []snapshots.CommitLink) (plannedCommit, error) {
	var c plannedCommit
	if err := validKey(l.Name); err != nil {
		return c, err
	}
	for _, o := range l.Opts {
		if err := o(&c.base); err != nil {
			return c, err
		}
	}
	c.base.Parent = onto
	if err := labels.ValidateAll(c.base.Labels); err != nil {
		return c, err
	}
	r, err := s.get(t, l.Key)
	if err != nil {
		return c, err
	}
	if r.Kind != snapshots.KindActive {
		return c, fmt.Errorf("snapshot %q is %s: only an active snapshot can be committed: %w", l.Key, r.Kind, errdefs.ErrFailedPrecondition)
	}
	if b := s.bucket(t); b.Get([]byte(l.Name)) != nil {
		return c, alreadyExists("snapshot %q (snapshotter %s)", l.Name, s.name)
	}
	// What committing the links one after another would say.
	for _, e := range earlier {
		if e.Name == l.Name {
			return c, alreadyExists("snapshot %q (snapshotter %s)", l.Name, s.name)
		}
		if e.Key == l.Key {
			return c, fmt.Errorf("snapshot %q: committed as %q before in this chain: %w", l.Key, e.Name, errdefs.ErrNotFound)
		}
	}
	c.r = r
	if onto == "" {
		return c, nil
	}
	if r.Parent != "" {
		return c, fmt.Errorf("commit snapshot %q onto %q: it was prepared on %q; only a snapshot prepared without parent can be given one: %w", l.Key, onto, r.Parent, errdefs.ErrFailedPrecondition)
	}
	if len(earlier) > 0 {
		c.parentBackend = ontoBackend
		return c, nil
	}
	pr, err := s.get(t, onto)
	if err != nil {
		return c, fmt.Errorf("parent: %w", err)
	}
	if pr.Kind != snapshots.KindCommitted {
		return c, fmt.Errorf("parent %q of snapshot %q is %s, not committed: %w", onto, l.Name, pr.Kind, errdefs.ErrFailedPrecondition)
	}
	c.parentBackend = pr.Backend
	return c, nil
}

// commitLinked commits key as name by linking the backend snapshot that
// another namespace committed as name on the same parent, if there is
// one, and removes key's own backend snapshot, which holds the same layer.
// It is what create does for a layer prepared on its parent, done at
// commit for a layer prepared without one (snapshots.WithParent), whose
// parent was not known to be shared before: a layer stays on disk once per
// snapshotter. The caller holds gcMu.
func (s *snapshotStore) commitLinked(ctx context.Context, name, key string, r snapRecord, base snapshots.Info, parentBackend string) (bool, error) {
	lease, hasLease := leases.FromContext(ctx)
	linked := false
	err := s.db.update(ctx, func(t *nsTx) error {
		linked = false
		shared, sparent := s.findCommitted(t, name)
		if shared == "" || sparent != parentBackend {
			return nil
		}
		b := s.bucket(t)
		if cur, err := s.get(t, key); err != nil || cur.Backend != r.Backend || cur.Kind != snapshots.KindActive {
			// Gone or made again meanwhile: the ordinary commit says.
			return nil
		}
		if b.Get([]byte(name)) != nil {
			return alreadyExists("snapshot %q (snapshotter %s)", name, s.name)
		}
		if err := b.Delete([]byte(key)); err != nil {
			return err
		}
		now := time.Now().UTC()
		nr := snapRecord{Backend: shared, Parent: base.Parent, Kind: snapshots.KindCommitted, Labels: mergeLabels(r.Labels, base.Labels), Created: now, Updated: now}
		if hasLease {
			if err := addLeaseResource(t, lease, leases.Resource{Type: "snapshots/" + s.name, ID: name}); err != nil && !errdefs.IsNotFound(err) {
				return err
			}
		}
		linked = true
		t.publish(s.db, "/snapshot/commit", &eventstypes.SnapshotCommit{Key: key, Name: name, Snapshotter: s.name})
		return putRecord(b, name, &nr)
	})
	if err != nil || !linked {
		return false, err
	}
	if err := s.backend.Remove(ctx, r.Backend); err != nil && !errdefs.IsNotFound(err) {
		// No record names it any more: the collector removes it.
		slog.WarnContext(ctx, "remove backend snapshot of a linked commit", "snapshotter", s.name, "key", key, "backend", r.Backend, "error", err)
	}
	return true, nil
}

// mergeLabels returns a committed snapshot's labels: the active one's,
// overridden by those given at commit, without LabelSnapshotRef, which
// only has a meaning while the snapshot is being made.
func mergeLabels(active, commit map[string]string) map[string]string {
	lbls := copyLabels(active)
	for k, v := range commit {
		if lbls == nil {
			lbls = map[string]string{}
		}
		lbls[k] = v
	}
	delete(lbls, LabelSnapshotRef)
	return lbls
}

func (s *snapshotStore) Remove(ctx context.Context, key string) error {
	err := s.db.updateFreeing(ctx, func(t *nsTx) error {
		b := s.bucket(t)
		if _, err := s.get(t, key); err != nil {
			return err
		}
		var child string
		b.ForEach(func(k, v []byte) error {
			var r snapRecord
			if child == "" {
				if err := decodeAt(string(k), v, &r); err == nil && r.Parent == key {
					child = string(k)
				}
			}
			return nil
		})
		if child != "" {
			return fmt.Errorf("snapshot %q has a child, %q: remove it first: %w", key, child, errdefs.ErrFailedPrecondition)
		}
		if err := b.Delete([]byte(key)); err != nil {
			return err
		}
		t.publish(s.db, "/snapshot/remove", &eventstypes.SnapshotRemove{Key: key, Snapshotter: s.name})
		return nil
	})
	if err != nil {
		return err
	}
	// The backend snapshot goes with the next collection, once no
	// namespace names it.
	s.db.kickGC()
	return nil
}

func (s *snapshotStore) Walk(ctx context.Context, fn snapshots.WalkFunc, fs ...string) error {
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		return err
	}
	var infos []snapshots.Info
	err = s.db.view(ctx, func(t *nsTx) error {
		b := s.bucket(t)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var r snapRecord
			if err := decodeAt(string(k), v, &r); err != nil {
				return err
			}
			info := r.info(string(k))
			if filter.Match(snapshotFields(info)) {
				infos = append(infos, info)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, info := range infos {
		if err := fn(ctx, info); err != nil {
			return err
		}
	}
	return nil
}

// snapshotFields adapts info to filters with containerd's field values,
// which its clients send: kind is "active", "view" or "committed" (lower
// case, as containerd's metadata store and hull's backends give it, not
// Kind.String()), and parent is always present, "" for none, so that
// `parent!=""` picks the snapshots that have one, as in containerd.
func snapshotFields(info snapshots.Info) filters.Adaptor {
	return filters.AdapterFunc(func(fp []string) (string, bool) {
		if len(fp) == 0 {
			return "", false
		}
		switch fp[0] {
		case "name":
			return info.Name, true
		case "parent":
			return info.Parent, true
		case "kind":
			switch info.Kind {
			case snapshots.KindActive, snapshots.KindView, snapshots.KindCommitted:
				return strings.ToLower(info.Kind.String()), true
			}
			return "", false
		case "labels":
			return labelField(info.Labels, fp)
		}
		return "", false
	})
}

// Cleanup runs a collection, then asks the backend to free disk.
func (s *snapshotStore) Cleanup(ctx context.Context) error {
	if _, err := s.db.GarbageCollect(ctx); err != nil {
		return err
	}
	if c, ok := s.backend.(snapshots.Cleaner); ok {
		return c.Cleanup(ctx)
	}
	return nil
}

// Close does nothing: the backend belongs to its plugin.
func (s *snapshotStore) Close() error { return nil }
