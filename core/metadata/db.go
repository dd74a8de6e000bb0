// Package metadata is hull's metadata store: one bbolt database under the
// daemon's root that holds every namespaced record (namespaces, images,
// content, leases) and runs garbage collection over them.
//
// Layout: a bucket "v1" holds one bucket per namespace; each namespace bucket
// holds a bucket per kind of object ("labels", "images", "content",
// "ingests", "leases", and later "containers" and "snapshots"). Records are
// JSON, keyed by the object's name. Every write goes through DB.Update, which
// commits and fsyncs before it returns, so a successful call is durable.
//
// Blobs themselves live once on disk in the content backend
// (core/content/local); a namespace sees a blob only while its "content"
// bucket has a record for it. Garbage collection deletes records no root
// reaches, then blobs no namespace records.
package metadata

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/events"
	"github.com/hullrt/hull/core/labels"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/internal/boltbatch"
)

var (
	bucketV1 = []byte("v1")

	bucketLabels  = []byte("labels")
	bucketImages  = []byte("images")
	bucketContent = []byte("content")
	bucketIngests = []byte("ingests")
	bucketLeases  = []byte("leases")
	// bucketLeaseResources holds a bucket per lease whose keys are the
	// resources it holds.
	bucketLeaseResources = []byte("lease-resources")
	bucketContainers     = []byte("containers")
	bucketSnapshots      = []byte("snapshots")
)

// Options configure a DB.
type Options struct {
	// Publisher receives the events of changes; nil publishes nothing.
	Publisher events.Publisher
	// GCDelay is how long after a deletion the background collection runs,
	// so that a burst of deletions is collected once. Default 100ms.
	GCDelay time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
	// ReserveSize is how many bytes of disk the database keeps for the
	// transactions that free space (see reserve); 0 means
	// DefaultReserveSize, < 0 none.
	ReserveSize int64
}

// DB is the metadata store.
type DB struct {
	bolt *bolt.DB
	// batch runs the stores' updates, sharing commits (see boltbatch).
	batch   *boltbatch.Batcher
	path    string
	reserve reserve
	backend Backend
	pub     events.Publisher
	log     *slog.Logger

	// gcMu is held for reading by writers between making a blob exist in
	// the backend and recording it, and for writing by the collector, so
	// that the collector never sees a blob that is about to be recorded.
	gcMu sync.RWMutex

	// writing holds the ingest refs with an open writer, from Writer until
	// the writer is closed or its blob is recorded. The backend's own lock
	// ends when the blob file is in place, before the record exists; this
	// one lasts until the record does, so that a second writer of the same
	// ref then finds the blob instead of writing it again.
	sn snapshotters

	writingMu sync.Mutex
	writing   map[string]time.Time

	// gen counts committed write transactions (bumped after each, failed
	// ones too); infos caches content records read since the last.
	gen   atomic.Uint64
	infos infoCache

	// pending holds the blobs whose records are written behind them
	// (contentStore.PutDeferred).
	pending pendingBlobs

	// use is when each lease was last used (leases.IdleExpireLabel).
	use leaseUse
	// now is the clock of lease expiry; tests replace it.
	now func() time.Time
	// nextExpiry is the earliest time a lease may expire, when the
	// collector runs unless something makes it run before; zero for none.
	expiryMu   sync.Mutex
	nextExpiry time.Time
	// gcWake tells the collector that nextExpiry changed.
	gcWake chan struct{}

	// mountHooks tells the mount manager what gc removed.
	mountHooks mountHooks

	gcDelay atomic.Int64 // nanoseconds
	// kicks counts the collections asked for (kickGC); covered is kicks as
	// the latest collection read it when it began. A collection that
	// began after a kick serves it: a kicked run that finds itself
	// covered by one since (a sync collection, as `images rm --sync`
	// runs) is not made again.
	kicks   atomic.Uint64
	covered atomic.Uint64
	// runs and skipped count the collections made and the kicked ones
	// found covered, for tests.
	runs     atomic.Uint64
	skipped  atomic.Uint64
	gcKick   chan struct{}
	gcStop   chan struct{}
	gcDone   chan struct{}
	closeOne sync.Once
}

// Backend is the blob store under the metadata store. It knows digests and
// ingests but no namespaces or labels, which the metadata store keeps; refs
// it is given are already namespaced. hulld's local store
// (core/content/local) is one; a content store served by another process
// ([proxy_plugins] of type "content") is another.
type Backend interface {
	content.Provider
	content.Ingester
	content.IngestManager
	Info(ctx context.Context, dgst digest.Digest) (content.Info, error)
	Delete(ctx context.Context, dgst digest.Digest) error
	// Walk calls fn for every committed blob.
	Walk(ctx context.Context, fn content.WalkFunc) error
}

// Open opens (creating if needed) the database at path over the blob backend.
// It starts the background collector, which Close stops.
func Open(path string, backend Backend, opts Options) (*DB, error) {
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			// bbolt's own word is only "timeout": it waited for the
			// file's lock.
			return nil, fmt.Errorf("open metadata database %s: it is locked by another process (another hulld or containerd on this root?): %w", path, err)
		}
		return nil, fmt.Errorf("open metadata database %s: %w", path, err)
	}
	if err := bdb.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketV1)
		return err
	}); err != nil {
		bdb.Close()
		return nil, fmt.Errorf("initialise metadata database %s: %w", path, err)
	}
	db := &DB{
		bolt: bdb, batch: boltbatch.New(bdb), path: path, backend: backend, pub: opts.Publisher, log: opts.Logger,
		writing: map[string]time.Time{},
		now:     time.Now,
		gcKick:  make(chan struct{}, 1), gcWake: make(chan struct{}, 1), gcStop: make(chan struct{}), gcDone: make(chan struct{}),
	}
	db.use.opened = db.now()
	if db.log == nil {
		db.log = slog.Default()
	}
	db.reserve = reserve{path: path + ".reserve", size: opts.ReserveSize}
	if db.reserve.size == 0 {
		db.reserve.size = DefaultReserveSize
	}
	if err := db.reserve.fill(); err != nil {
		// Not fatal: the daemon must start on a full disk to clean it up,
		// and the next collection tries again.
		db.log.Warn("metadata database: cannot set disk space aside for gc", "error", err)
	}
	db.SetGCDelay(opts.GCDelay)
	if err := db.scanExpiries(); err != nil {
		bdb.Close()
		return nil, fmt.Errorf("read leases of metadata database %s: %w", path, err)
	}
	go db.collector()
	return db, nil
}

// SetGCDelay sets how long after a deletion the background collection runs
// (100ms if d <= 0).
func (db *DB) SetGCDelay(d time.Duration) {
	if d <= 0 {
		d = 100 * time.Millisecond
	}
	db.gcDelay.Store(int64(d))
}

// Close stops the collector and closes the database.
func (db *DB) Close() error {
	var err error
	db.closeOne.Do(func() {
		close(db.gcStop)
		<-db.gcDone
		db.closePending()
		err = db.bolt.Close()
	})
	return err
}

// Backend returns the blob store under the metadata.
func (db *DB) Backend() Backend { return db.backend }

// nsTx is a transaction scoped to one namespace: the one transaction helper
// every store uses.
type nsTx struct {
	tx *bolt.Tx
	ns string
	// after runs once the transaction has committed (event publishing).
	after []func()
	// snapBuckets holds, per snapshotter, its buckets in every namespace
	// (snapshotBuckets).
	snapBuckets map[string][]*bolt.Bucket
}

// bucket returns the namespace's bucket of the given kind, or nil when the
// namespace or the bucket does not exist (read-only transactions).
func (t *nsTx) bucket(kind []byte) *bolt.Bucket {
	nsb := t.nsBucket()
	if nsb == nil {
		return nil
	}
	return nsb.Bucket(kind)
}

// nsBucket is the namespace's bucket, nil when it has none.
func (t *nsTx) nsBucket() *bolt.Bucket {
	return t.tx.Bucket(bucketV1).Bucket([]byte(t.ns))
}

// createBucket returns the namespace's bucket of the given kind, creating the
// namespace implicitly as containerd does.
func (t *nsTx) createBucket(kind []byte) (*bolt.Bucket, error) {
	nsb, err := t.tx.Bucket(bucketV1).CreateBucketIfNotExists([]byte(t.ns))
	if err != nil {
		return nil, err
	}
	return nsb.CreateBucketIfNotExists(kind)
}

// publish queues an event to publish after commit.
func (t *nsTx) publish(db *DB, topic string, ev any) {
	if db.pub == nil {
		return
	}
	ns := t.ns
	t.after = append(t.after, func() {
		ctx := namespaces.WithNamespace(context.Background(), ns)
		if err := db.pub.Publish(ctx, topic, ev); err != nil {
			db.log.Warn("publish event", "topic", topic, "namespace", ns, "error", err)
		}
	})
}

// view runs fn in a read-only transaction for the namespace of ctx.
func (db *DB) view(ctx context.Context, fn func(*nsTx) error) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	db.useLease(ctx, ns)
	return db.bolt.View(func(tx *bolt.Tx) error { return fn(&nsTx{tx: tx, ns: ns}) })
}

// update runs fn in a read-write transaction for the namespace of ctx,
// commits (fsync) and then publishes the events fn queued.
//
// The transaction may be shared with concurrent updates (see boltbatch.Batcher), and
// fn may then run more than once, the database seen by each run being the
// same: fn must keep its effects in the transaction and set what it
// returns through captured variables on every run, not only on some.
func (db *DB) update(ctx context.Context, fn func(*nsTx) error) error {
	return db.nsUpdate(ctx, false, fn)
}

// updateFreeing is update for a transaction that only removes records, so
// that it may use the disk reserve (see reserve) when the disk is full:
// deleting must work exactly when space has run out.
func (db *DB) updateFreeing(ctx context.Context, fn func(*nsTx) error) error {
	return db.nsUpdate(ctx, true, fn)
}

func (db *DB) nsUpdate(ctx context.Context, freeing bool, fn func(*nsTx) error) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	db.useLease(ctx, ns)
	var t *nsTx
	err = db.boltUpdateWith(db.batch.Update, freeing, func(tx *bolt.Tx) error {
		t = &nsTx{tx: tx, ns: ns}
		return fn(t)
	})
	// Before the call returns: nobody who saw it return reads a cached
	// record from before it.
	db.gen.Add(1)
	if err != nil {
		return err
	}
	for _, f := range t.after {
		f()
	}
	return nil
}

// getRecord reads the record at key into v; false when there is none.
func getRecord(b *bolt.Bucket, key string, v any) (bool, error) {
	if b == nil {
		return false, nil
	}
	data := b.Get([]byte(key))
	if data == nil {
		return false, nil
	}
	return true, decodeAt(key, data, v)
}

// decodeAt decodes the record data stored at key, naming the key on error.
// A nil value is a nested bucket met by ForEach and leaves v as it is.
// forEachRecord decodes every record of bucket b (none if b is nil) as a
// T and calls fn with its key.
func forEachRecord[T any](b *bolt.Bucket, fn func(key string, r *T) error) error {
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error {
		var r T
		if err := decodeAt(string(k), v, &r); err != nil {
			return err
		}
		return fn(string(k), &r)
	})
}

func decodeAt(key string, data []byte, v any) error {
	if data == nil {
		return nil
	}
	if err := decodeRecord(data, v); err != nil {
		return fmt.Errorf("decode record %q: %w", key, err)
	}
	return nil
}

func putRecord(b *bolt.Bucket, key string, v any) error {
	data, err := encodeRecord(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), data)
}

func notFound(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errdefs.ErrNotFound)...)
}

func alreadyExists(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errdefs.ErrAlreadyExists)...)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errdefs.ErrInvalidArgument)...)
}

// copyLabels returns a copy of m that is never nil-shared with the caller.
func copyLabels(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// updateLabels applies an update's labels (src) to *dst: all of them when
// no fieldpaths are given, else each "labels" or "labels.<key>" path, and
// reports whether a label collection reads changed. what names the
// object in the error for any other path.
func updateLabels(dst *map[string]string, src map[string]string, fieldpaths []string, what string) (gcChanged bool, err error) {
	before := labels.GCOnly(*dst)
	if len(fieldpaths) == 0 {
		*dst = copyLabels(src)
	}
	for _, p := range fieldpaths {
		if !applyLabelPaths(dst, src, p) {
			return false, invalid("%s: cannot update field %q: the fields are labels and labels.<key>", what, p)
		}
	}
	return labels.GCChanged(before, *dst), nil
}

// applyLabelPaths applies the "labels" and "labels.<key>" field paths of an
// update mask from src onto dst and reports unknown paths through other,
// which handles the kind's own fields (returning false for unknown ones).
func applyLabelPaths(dst *map[string]string, src map[string]string, path string) bool {
	switch {
	case path == "labels":
		*dst = copyLabels(src)
		return true
	case len(path) > len("labels.") && path[:len("labels.")] == "labels.":
		k := path[len("labels."):]
		if *dst == nil {
			*dst = map[string]string{}
		}
		if v, ok := src[k]; ok && v != "" {
			(*dst)[k] = v
		} else {
			delete(*dst, k)
		}
		return true
	}
	return false
}

// labelField returns the value of a "labels.<key>" filter field.
func labelField(labels map[string]string, fieldpath []string) (string, bool) {
	if len(fieldpath) < 2 {
		return "", len(labels) > 0
	}
	// A label key may contain dots: join what follows "labels".
	k := fieldpath[1]
	for _, p := range fieldpath[2:] {
		k += "." + p
	}
	v, ok := labels[k]
	return v, ok
}
