// Package storage keeps the records of a backend snapshotter's snapshots in
// a bbolt database under the snapshotter's root, so that the overlay and
// native snapshotters share one implementation of the snapshot model: keys,
// kinds, parents, labels and the rules between them. The snapshotters add
// only what is on disk.
//
// Each snapshot gets a numeric ID, allocated increasing and never reused,
// which names its directory on disk: IDs keep paths short (an overlay of a
// hundred layers lists every layer's path in its options) and let a
// snapshot be renamed at Commit without touching the disk.
//
// Layout: bucket "v1" holds "snapshots" (key -> JSON record) and "children"
// (8-byte big-endian parent ID + child key -> nothing), the index that
// answers "has children?" without a scan.
package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"

	"github.com/hullrt/hull/core/filters"
	"github.com/hullrt/hull/core/labels"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/internal/boltbatch"
)

var (
	bucketV1        = []byte("v1")
	bucketSnapshots = []byte("snapshots")
	bucketChildren  = []byte("children")
)

// MetaStore is the database of a snapshotter's snapshot records.
type MetaStore struct {
	db    *bolt.DB
	batch *boltbatch.Batcher
	// cleanMu keeps two CleanupDirs from deleting the same trash.
	cleanMu sync.Mutex

	// Committed snapshots are measured after Commit returns (see Commit);
	// measureMu guards the queue of those not measured yet.
	measureMu sync.Mutex
	toMeasure []measureJob
	measuring bool
	stop      context.CancelFunc
	stopCtx   context.Context
	measured  sync.WaitGroup
}

// measureJob is a committed snapshot whose disk usage is still unknown.
type measureJob struct {
	name string
	id   uint64
	dir  string
}

// NewMetaStore opens (creating if needed) the database at path.
func NewMetaStore(path string) (*MetaStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			// bbolt's own word is only "timeout": it waited for the
			// file's lock.
			return nil, fmt.Errorf("open snapshot database %s: it is locked by another process (another hulld or containerd on this root?): %w", path, err)
		}
		return nil, fmt.Errorf("open snapshot database %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		v1, err := tx.CreateBucketIfNotExists(bucketV1)
		if err != nil {
			return err
		}
		if _, err := v1.CreateBucketIfNotExists(bucketSnapshots); err != nil {
			return err
		}
		_, err = v1.CreateBucketIfNotExists(bucketChildren)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise snapshot database %s: %w", path, err)
	}
	ctx, stop := context.WithCancel(context.Background())
	return &MetaStore{db: db, batch: boltbatch.New(db), stopCtx: ctx, stop: stop}, nil
}

// Close closes the database.
// A measurement in progress is abandoned; the snapshot is measured when its
// usage is next asked for.
func (ms *MetaStore) Close() error {
	ms.stop()
	ms.measured.Wait()
	return ms.db.Close()
}

// View runs fn in a read-only transaction.
func (ms *MetaStore) View(ctx context.Context, fn func(*Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return ms.db.View(func(tx *bolt.Tx) error { return fn(newTx(tx)) })
}

// Update runs fn in a read-write transaction and commits it (with an fsync)
// if fn succeeds. Updates are serialised, which is what the snapshotters
// rely on to keep their directories in step with the records: whatever
// they do to the disk inside Update no other Update sees half done.
//
// Updates that arrive while another commits share the next transaction
// (group commit, boltbatch): a parallel unpack prepares and commits many
// snapshots at once, and each would otherwise wait for a commit of its
// own. So fn may run more than once (when an update after it in its
// transaction fails, it runs again): it must set its outputs afresh each
// time, and what it does to the disk must be safe to do again, as the
// overlay snapshotter's new directories are (made inside fn, under a
// temporary name, and placed by PlaceDir). UpdateAlone is for the rest.
func (ms *MetaStore) Update(ctx context.Context, fn func(*Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return ms.batch.Update(func(tx *bolt.Tx) error { return fn(newTx(tx)) })
}

// UpdateAlone is Update in a transaction of its own, where fn runs once:
// for an fn that moves something on disk it did not make itself.
func (ms *MetaStore) UpdateAlone(ctx context.Context, fn func(*Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return ms.db.Update(func(tx *bolt.Tx) error { return fn(newTx(tx)) })
}

// Tx is a transaction on the records.
type Tx struct {
	snapshots *bolt.Bucket
	children  *bolt.Bucket
}

func newTx(tx *bolt.Tx) *Tx {
	v1 := tx.Bucket(bucketV1)
	return &Tx{snapshots: v1.Bucket(bucketSnapshots), children: v1.Bucket(bucketChildren)}
}

// Snapshot is what a snapshotter needs to find a snapshot on disk.
type Snapshot struct {
	ID   uint64
	Kind snapshots.Kind
	// ParentIDs are the IDs of the parent chain, nearest first.
	ParentIDs []uint64
}

// record is a snapshot's stored form.
type record struct {
	ID      uint64            `json:"id"`
	Kind    string            `json:"kind"`
	Parent  string            `json:"parent,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	Created time.Time         `json:"created"`
	Updated time.Time         `json:"updated"`
	// Usage of a committed snapshot, measured after Commit.
	Inodes int64 `json:"inodes,omitempty"`
	Size   int64 `json:"size,omitempty"`
	// Unmeasured is set between Commit and the measurement of Inodes and
	// Size.
	Unmeasured bool `json:"unmeasured,omitempty"`
}

func (r *record) kind() snapshots.Kind {
	k, err := snapshots.ParseKind(r.Kind)
	if err != nil {
		return snapshots.KindUnknown
	}
	return k
}

func (r *record) info(key string) snapshots.Info {
	return snapshots.Info{
		Kind:    r.kind(),
		Name:    key,
		Parent:  r.Parent,
		Labels:  copyLabels(r.Labels),
		Created: r.Created,
		Updated: r.Updated,
	}
}

func (t *Tx) get(key string) (*record, error) {
	data := t.snapshots.Get([]byte(key))
	if data == nil {
		return nil, fmt.Errorf("snapshot %q: %w", key, errdefs.ErrNotFound)
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("decode record of snapshot %q: %w", key, err)
	}
	return &r, nil
}

func (t *Tx) put(key string, r *record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return t.snapshots.Put([]byte(key), data)
}

func childKey(parentID uint64, child string) []byte {
	k := make([]byte, 8, 8+len(child))
	binary.BigEndian.PutUint64(k, parentID)
	return append(k, child...)
}

func (t *Tx) hasChildren(id uint64) bool {
	prefix := childKey(id, "")
	k, _ := t.children.Cursor().Seek(prefix)
	return k != nil && bytes.HasPrefix(k, prefix)
}

func checkKey(what, key string) error {
	if key == "" {
		return fmt.Errorf("%s must not be empty: %w", what, errdefs.ErrInvalidArgument)
	}
	return nil
}

// applyOpts returns the labels opts set, checked, and the parent
// (snapshots.WithParent).
func applyOpts(opts []snapshots.Opt) (map[string]string, string, error) {
	var base snapshots.Info
	for _, o := range opts {
		if err := o(&base); err != nil {
			return nil, "", err
		}
	}
	if err := labels.ValidateAll(base.Labels); err != nil {
		return nil, "", err
	}
	return copyLabels(base.Labels), base.Parent, nil
}

// CreateSnapshot records a new active snapshot or view key of parent ("" for
// none), which must be committed, and returns its ID and parent chain.
func (t *Tx) CreateSnapshot(kind snapshots.Kind, key, parent string, opts ...snapshots.Opt) (Snapshot, error) {
	if err := checkKey("snapshot key", key); err != nil {
		return Snapshot{}, err
	}
	if kind != snapshots.KindActive && kind != snapshots.KindView {
		return Snapshot{}, fmt.Errorf("create snapshot %q of kind %v: only active snapshots and views are created: %w", key, kind, errdefs.ErrInvalidArgument)
	}
	lbls, optParent, err := applyOpts(opts)
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot %q: %w", key, err)
	}
	if optParent != "" {
		return Snapshot{}, fmt.Errorf("snapshot %q: WithParent is for Commit; Prepare and View take the parent as an argument: %w", key, errdefs.ErrInvalidArgument)
	}
	if t.snapshots.Get([]byte(key)) != nil {
		return Snapshot{}, fmt.Errorf("snapshot %q: %w", key, errdefs.ErrAlreadyExists)
	}
	var parentIDs []uint64
	if parent != "" {
		pr, err := t.get(parent)
		if err != nil {
			return Snapshot{}, fmt.Errorf("parent of %q: %w", key, err)
		}
		if pr.kind() != snapshots.KindCommitted {
			return Snapshot{}, fmt.Errorf("parent %q of snapshot %q is not committed: %w", parent, key, errdefs.ErrInvalidArgument)
		}
		if parentIDs, err = t.chain(parent, pr); err != nil {
			return Snapshot{}, err
		}
	}
	id, err := t.snapshots.NextSequence()
	if err != nil {
		return Snapshot{}, fmt.Errorf("allocate id for snapshot %q: %w", key, err)
	}
	now := time.Now().UTC()
	r := &record{ID: id, Kind: kind.String(), Parent: parent, Labels: lbls, Created: now, Updated: now}
	if err := t.put(key, r); err != nil {
		return Snapshot{}, err
	}
	if parent != "" {
		if err := t.children.Put(childKey(parentIDs[0], key), nil); err != nil {
			return Snapshot{}, err
		}
	}
	return Snapshot{ID: id, Kind: kind, ParentIDs: parentIDs}, nil
}

// chain returns the IDs of key (whose record is r) and its ancestors.
func (t *Tx) chain(key string, r *record) ([]uint64, error) {
	return t.chainFrom(key, r.ID, r.Parent)
}

// link is the part of a record a walk up a chain needs: decoding only it
// skips the labels and times, and every Prepare and Commit walks the whole
// chain below it, so an image of n layers decodes n² records as it unpacks.
type link struct {
	ID     uint64 `json:"id"`
	Parent string `json:"parent,omitempty"`
}

// chainFrom returns id and the IDs of its ancestors from parent up.
func (t *Tx) chainFrom(key string, id uint64, parent string) ([]uint64, error) {
	ids := []uint64{id}
	for parent != "" {
		l, err := t.link(parent)
		if err != nil {
			return nil, fmt.Errorf("parent of %q: %w", key, err)
		}
		key = parent
		ids = append(ids, l.ID)
		parent = l.Parent
	}
	return ids, nil
}

// link decodes the link of snapshot key's record.
func (t *Tx) link(key string) (link, error) {
	var l link
	data := t.snapshots.Get([]byte(key))
	if data == nil {
		return l, fmt.Errorf("snapshot %q: %w", key, errdefs.ErrNotFound)
	}
	if err := json.Unmarshal(data, &l); err != nil {
		return l, fmt.Errorf("decode record of snapshot %q: %w", key, err)
	}
	return l, nil
}

// ChainIDs returns the IDs of snapshot key and its ancestors, nearest
// first.
func (t *Tx) ChainIDs(key string) ([]uint64, error) {
	l, err := t.link(key)
	if err != nil {
		return nil, err
	}
	return t.chainFrom(key, l.ID, l.Parent)
}

// GetInfo returns the ID, Info and stored usage of snapshot key. The usage
// is what Commit measured; active snapshots have none stored.
func (t *Tx) GetInfo(key string) (uint64, snapshots.Info, snapshots.Usage, error) {
	if err := checkKey("snapshot key", key); err != nil {
		return 0, snapshots.Info{}, snapshots.Usage{}, err
	}
	r, err := t.get(key)
	if err != nil {
		return 0, snapshots.Info{}, snapshots.Usage{}, err
	}
	return r.ID, r.info(key), snapshots.Usage{Inodes: r.Inodes, Size: r.Size}, nil
}

// GetSnapshot returns the ID, kind and parent chain of active snapshot or
// view key: what its mounts are made of. A committed snapshot has no mounts
// and is a FailedPrecondition error.
func (t *Tx) GetSnapshot(key string) (Snapshot, error) {
	if err := checkKey("snapshot key", key); err != nil {
		return Snapshot{}, err
	}
	r, err := t.get(key)
	if err != nil {
		return Snapshot{}, err
	}
	kind := r.kind()
	if kind != snapshots.KindActive && kind != snapshots.KindView {
		return Snapshot{}, fmt.Errorf("snapshot %q is %s, not active or a view: %w", key, strings.ToLower(kind.String()), errdefs.ErrFailedPrecondition)
	}
	s := Snapshot{ID: r.ID, Kind: kind}
	if r.Parent != "" {
		pr, err := t.get(r.Parent)
		if err != nil {
			return Snapshot{}, fmt.Errorf("parent of %q: %w", key, err)
		}
		if s.ParentIDs, err = t.chain(r.Parent, pr); err != nil {
			return Snapshot{}, err
		}
	}
	return s, nil
}

// UpdateInfo changes the labels of snapshot info.Name: all of them for
// field path "labels" or no field paths, one for "labels.<key>" (removed
// when info has no value for it). Other field paths are InvalidArgument.
func (t *Tx) UpdateInfo(info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	key := info.Name
	if err := checkKey("snapshot name", key); err != nil {
		return snapshots.Info{}, err
	}
	r, err := t.get(key)
	if err != nil {
		return snapshots.Info{}, err
	}
	lbls := copyLabels(r.Labels)
	if len(fieldpaths) == 0 {
		lbls = copyLabels(info.Labels)
	}
	for _, p := range fieldpaths {
		switch {
		case p == "labels":
			lbls = copyLabels(info.Labels)
		case strings.HasPrefix(p, "labels.") && len(p) > len("labels."):
			k := strings.TrimPrefix(p, "labels.")
			if v := info.Labels[k]; v != "" {
				if lbls == nil {
					lbls = map[string]string{}
				}
				lbls[k] = v
			} else {
				delete(lbls, k)
			}
		default:
			return snapshots.Info{}, fmt.Errorf("update snapshot %q: field %q cannot be updated (only \"labels\" and \"labels.<key>\"): %w", key, p, errdefs.ErrInvalidArgument)
		}
	}
	// Empty values are how a client deletes a label.
	maps.DeleteFunc(lbls, func(_, v string) bool { return v == "" })
	if err := labels.ValidateAll(lbls); err != nil {
		return snapshots.Info{}, fmt.Errorf("update snapshot %q: %w", key, err)
	}
	r.Labels = copyLabels(lbls)
	r.Updated = time.Now().UTC()
	if err := t.put(key, r); err != nil {
		return snapshots.Info{}, err
	}
	return r.info(key), nil
}

// CommitActive turns active snapshot key into committed snapshot name with
// the given usage, keeping its ID (and so its directory). Its labels become
// those of opts, as in containerd: a commit does not inherit the active
// snapshot's labels. With snapshots.WithParent among opts, a snapshot
// prepared without parent is committed as a child of that committed one;
// whether its directory makes sense there is the snapshotter's to decide.
func (t *Tx) CommitActive(key, name string, usage snapshots.Usage, opts ...snapshots.Opt) (uint64, error) {
	return t.commitActive(key, name, usage, false, opts)
}

// commitActive is CommitActive, recording the usage as not measured yet
// when unmeasured is set (see MetaStore.Commit).
func (t *Tx) commitActive(key, name string, usage snapshots.Usage, unmeasured bool, opts []snapshots.Opt) (uint64, error) {
	if err := checkKey("snapshot key", key); err != nil {
		return 0, err
	}
	if err := checkKey("committed snapshot name", name); err != nil {
		return 0, err
	}
	lbls, rebase, err := applyOpts(opts)
	if err != nil {
		return 0, fmt.Errorf("commit %q as %q: %w", key, name, err)
	}
	r, err := t.get(key)
	if err != nil {
		return 0, err
	}
	if k := r.kind(); k != snapshots.KindActive {
		return 0, fmt.Errorf("commit snapshot %q: it is %s, not active: %w", key, strings.ToLower(k.String()), errdefs.ErrFailedPrecondition)
	}
	if t.snapshots.Get([]byte(name)) != nil {
		return 0, fmt.Errorf("commit snapshot %q as %q: %w", key, name, errdefs.ErrAlreadyExists)
	}
	parent := r.Parent
	if rebase != "" {
		// A rebase stacks a snapshot prepared alone onto parent; one
		// prepared on a parent already has its place in a chain.
		if r.Parent != "" {
			return 0, fmt.Errorf("commit snapshot %q onto %q: it was prepared on %q; only a snapshot prepared without parent can be given one: %w", key, rebase, r.Parent, errdefs.ErrFailedPrecondition)
		}
		pr, err := t.get(rebase)
		if err != nil {
			return 0, fmt.Errorf("parent of %q: %w", name, err)
		}
		if pr.kind() != snapshots.KindCommitted {
			return 0, fmt.Errorf("parent %q of %q is not committed: %w", rebase, name, errdefs.ErrInvalidArgument)
		}
		parent = rebase
	}
	now := time.Now().UTC()
	c := &record{
		ID: r.ID, Kind: snapshots.KindCommitted.String(), Parent: parent, Labels: lbls,
		Created: now, Updated: now, Inodes: usage.Inodes, Size: usage.Size, Unmeasured: unmeasured,
	}
	if err := t.snapshots.Delete([]byte(key)); err != nil {
		return 0, err
	}
	if err := t.put(name, c); err != nil {
		return 0, err
	}
	if parent != "" {
		pr, err := t.get(parent)
		if err != nil {
			return 0, fmt.Errorf("parent of %q: %w", key, err)
		}
		if err := t.children.Delete(childKey(pr.ID, key)); err != nil {
			return 0, err
		}
		if err := t.children.Put(childKey(pr.ID, name), nil); err != nil {
			return 0, err
		}
	}
	return r.ID, nil
}

// Remove deletes the record of snapshot key, which must have no children,
// and returns the ID and kind it had. Its directory is the caller's.
func (t *Tx) Remove(key string) (uint64, snapshots.Kind, error) {
	if err := checkKey("snapshot key", key); err != nil {
		return 0, snapshots.KindUnknown, err
	}
	r, err := t.get(key)
	if err != nil {
		return 0, snapshots.KindUnknown, err
	}
	if t.hasChildren(r.ID) {
		// Worded as containerd's "cannot remove snapshot with child":
		// its snapshotter suite and the callers that show it to people
		// look for what was refused, not only why.
		return 0, snapshots.KindUnknown, fmt.Errorf("cannot remove snapshot %q: it has children: %w", key, errdefs.ErrFailedPrecondition)
	}
	if err := t.snapshots.Delete([]byte(key)); err != nil {
		return 0, snapshots.KindUnknown, err
	}
	if r.Parent != "" {
		pr, err := t.get(r.Parent)
		if err != nil {
			return 0, snapshots.KindUnknown, fmt.Errorf("parent of %q: %w", key, err)
		}
		if err := t.children.Delete(childKey(pr.ID, key)); err != nil {
			return 0, snapshots.KindUnknown, err
		}
	}
	return r.ID, r.kind(), nil
}

// WalkInfo calls fn with the ID and Info of each snapshot matching any of
// fs (containerd's snapshot filter fields: "name", "parent", "kind" as
// "active", "view" or "committed", and "labels.<key>"), in key order.
func (t *Tx) WalkInfo(fn func(id uint64, info snapshots.Info) error, fs ...string) error {
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		return err
	}
	return t.snapshots.ForEach(func(k, v []byte) error {
		var r record
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decode record of snapshot %q: %w", k, err)
		}
		info := r.info(string(k))
		if !filter.Match(Adaptor(info)) {
			return nil
		}
		return fn(r.ID, info)
	})
}

// IDMap returns the IDs of all snapshots with their keys: the directories a
// snapshotter must keep.
func (t *Tx) IDMap() (map[uint64]string, error) {
	ids := map[uint64]string{}
	err := t.snapshots.ForEach(func(k, v []byte) error {
		var r record
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decode record of snapshot %q: %w", k, err)
		}
		ids[r.ID] = string(k)
		return nil
	})
	return ids, err
}

// Adaptor exposes a snapshot's Info to filters the way containerd does, so
// that the same filter strings select the same snapshots.
func Adaptor(info snapshots.Info) filters.Adaptor {
	return filters.AdapterFunc(func(fieldpath []string) (string, bool) {
		if len(fieldpath) == 0 {
			return "", false
		}
		switch fieldpath[0] {
		case "name":
			return info.Name, true
		case "parent":
			return info.Parent, true
		case "kind":
			switch info.Kind {
			case snapshots.KindActive, snapshots.KindView, snapshots.KindCommitted:
				return strings.ToLower(info.Kind.String()), true
			}
		case "labels":
			if len(fieldpath) < 2 {
				return "", false
			}
			// Label keys may contain dots that the filter split.
			v, ok := info.Labels[strings.Join(fieldpath[1:], ".")]
			return v, ok
		}
		return "", false
	})
}

func copyLabels(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}

// Commit seals active snapshot key as committed snapshot name. Its disk
// usage (the directory dirOf(id)) is measured afterwards, in the background,
// or on demand by Usage if asked first: walking a layer of tens of
// thousands of files took a tenth of an unpack's time, on the critical path
// of every pull, for a figure that a committed snapshot never changes and
// few ever ask for.
func (ms *MetaStore) Commit(ctx context.Context, name, key string, dirOf func(id uint64) string, opts ...snapshots.Opt) error {
	_, err := ms.CommitChain(ctx, "", []snapshots.CommitLink{{Name: name, Key: key, Opts: opts}}, dirOf)
	return err
}

// CommitChain is Commit for a chain of snapshots, as
// snapshots.ChainCommitter says, in one transaction: a commit writes
// pages up to the root of the database, which the links share.
func (ms *MetaStore) CommitChain(ctx context.Context, parent string, links []snapshots.CommitLink, dirOf func(id uint64) string) (int, error) {
	if len(links) == 0 {
		return 0, nil
	}
	var (
		ids    []uint64
		failed error // why links[len(ids)] could not be committed
	)
	commit := func(links []snapshots.CommitLink) error {
		return ms.Update(ctx, func(tx *Tx) error {
			ids, failed = ids[:0], nil
			p := parent
			for _, l := range links {
				id, err := tx.commitActive(l.Key, l.Name, snapshots.Usage{}, true, snapshots.ChainOpts(l, p))
				if err != nil {
					failed = err
					return err
				}
				ids = append(ids, id)
				p = l.Name
			}
			return nil
		})
	}
	err := commit(links)
	switch {
	case err == nil:
	case failed == nil || len(ids) == 0:
		// The transaction failed, or the first link did.
		return 0, err
	default:
		// A link failed and took the transaction with it: the links
		// before it are committed on their own.
		why := failed
		if err := commit(links[:len(ids)]); err != nil {
			return 0, err
		}
		err = why
	}
	for i, id := range ids {
		ms.measureLater(measureJob{name: links[i].Name, id: id, dir: dirOf(id)})
	}
	return len(ids), err
}

// measureLater queues job for the measuring goroutine, starting it if none
// runs: one walk at a time, so that measuring never competes with itself.
func (ms *MetaStore) measureLater(job measureJob) {
	ms.measureMu.Lock()
	defer ms.measureMu.Unlock()
	if ms.stopCtx.Err() != nil {
		return
	}
	ms.toMeasure = append(ms.toMeasure, job)
	if ms.measuring {
		return
	}
	ms.measuring = true
	ms.measured.Add(1)
	go ms.measureQueued()
}

func (ms *MetaStore) measureQueued() {
	defer ms.measured.Done()
	for {
		ms.measureMu.Lock()
		if len(ms.toMeasure) == 0 || ms.stopCtx.Err() != nil {
			ms.measuring = false
			ms.measureMu.Unlock()
			return
		}
		jobs := ms.toMeasure
		ms.toMeasure = nil
		ms.measureMu.Unlock()
		// A snapshot removed meanwhile fails to measure or to record:
		// either way there is nothing left to do for it.
		ms.measure(ms.stopCtx, jobs...)
	}
}

// measure walks each job's directory and records the usages on the
// snapshots in one transaction (an unpack commits many at once), except on
// those measured, removed or replaced meanwhile. It returns the usages
// measured, and the first error.
func (ms *MetaStore) measure(ctx context.Context, jobs ...measureJob) ([]snapshots.Usage, error) {
	usages := make([]snapshots.Usage, len(jobs))
	measured := make([]bool, len(jobs))
	var errs []error
	for i, job := range jobs {
		u, err := DiskUsage(ctx, job.dir)
		if err != nil {
			errs = append(errs, fmt.Errorf("measure snapshot %q: %w", job.name, err))
			continue
		}
		usages[i], measured[i] = u, true
	}
	var gone []error // snapshots removed since: the others are recorded
	err := ms.Update(ctx, func(tx *Tx) error {
		gone = gone[:0]
		for i, job := range jobs {
			if !measured[i] {
				continue
			}
			r, err := tx.get(job.name)
			if errdefs.IsNotFound(err) {
				gone = append(gone, err)
				continue
			}
			if err != nil {
				return err
			}
			if r.ID != job.id || !r.Unmeasured {
				continue
			}
			r.Inodes, r.Size, r.Unmeasured = usages[i].Inodes, usages[i].Size, false
			if err := tx.put(job.name, r); err != nil {
				return err
			}
		}
		return nil
	})
	return usages, errors.Join(append(append(errs, gone...), err)...)
}

// RemoveSnapshot removes the record of snapshot key, which must have no
// children; its directory stays until the snapshotter's Cleanup.
func (ms *MetaStore) RemoveSnapshot(ctx context.Context, key string) error {
	return ms.Update(ctx, func(tx *Tx) error {
		_, _, err := tx.Remove(key)
		return err
	})
}

// Usage returns the disk snapshot key uses: for an active snapshot its
// directory, dirOf(id), measured now; for others what was measured after
// Commit, measuring it now if that has not happened yet.
func (ms *MetaStore) Usage(ctx context.Context, key string, dirOf func(id uint64) string) (snapshots.Usage, error) {
	var r *record
	err := ms.View(ctx, func(tx *Tx) error {
		if err := checkKey("snapshot key", key); err != nil {
			return err
		}
		var err error
		r, err = tx.get(key)
		return err
	})
	if err != nil {
		return snapshots.Usage{}, err
	}
	switch {
	case r.kind() == snapshots.KindActive:
		usage, err := DiskUsage(ctx, dirOf(r.ID))
		if err != nil {
			return snapshots.Usage{}, fmt.Errorf("measure snapshot %q: %w", key, err)
		}
		return usage, nil
	case r.Unmeasured:
		u, err := ms.measure(ctx, measureJob{name: key, id: r.ID, dir: dirOf(r.ID)})
		return u[0], err
	}
	return snapshots.Usage{Inodes: r.Inodes, Size: r.Size}, nil
}

// Snapshot returns what the mounts of active snapshot or view key are made
// of (see Tx.GetSnapshot).
func (ms *MetaStore) Snapshot(ctx context.Context, key string) (Snapshot, error) {
	var snap Snapshot
	err := ms.View(ctx, func(tx *Tx) error {
		var err error
		snap, err = tx.GetSnapshot(key)
		return err
	})
	return snap, err
}
