package metadata

import (
	"context"

	"github.com/containerd/errdefs"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/labels"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/mount/manager"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/internal/crashpoint"
)

// The labels containerd uses to tie objects together for garbage collection.
const (
	// LabelGCRoot on a blob makes it a root: kept while the label is there.
	LabelGCRoot = labels.GCRoot
	// LabelGCRefContent and labels starting with LabelGCRefContent + "."
	// or "/" hold the digest of a blob the labelled object keeps alive.
	LabelGCRefContent = labels.GCRefContent
	// LabelGCRefSnapshot + ".<snapshotter>" holds a snapshot key.
	LabelGCRefSnapshot = labels.GCRefSnapshot
)

// GCStats tells what a collection removed.
type GCStats struct {
	ContentDeleted int // records removed from namespaces
	BlobsDeleted   int // files removed from disk
	LeasesExpired  int // leases removed for their expiry label
	// SnapshotsDeleted counts backend snapshots removed.
	SnapshotsDeleted int
	// IngestsDeleted counts ingests removed from the backend and ingest
	// records removed because their ingest was gone.
	IngestsDeleted int
	Duration       time.Duration // time the collector held the store
}

// GarbageCollect marks everything reachable from the roots (images,
// containers, leases, blobs labelled as roots) through containerd's reference labels, deletes the
// records nothing reaches, then deletes the blobs no namespace records. Blobs
// and ingests held by a lease, and writes in progress, are never touched.
func (db *DB) GarbageCollect(ctx context.Context) (GCStats, error) {
	start := time.Now()
	var st GCStats
	db.gcMu.Lock()
	defer db.gcMu.Unlock()
	// Every change that asked for a collection before this point is
	// committed: this one sees it.
	db.covered.Store(db.kicks.Load())
	db.runs.Add(1)
	referenced := map[digest.Digest]bool{}
	// backends holds, per snapshotter, the backend snapshots some
	// namespace still names.
	backends := map[string]map[string]bool{}
	// ingests holds the backend refs of the ingests some namespace records.
	ingests := map[string]bool{}
	now := db.now()
	var next time.Time
	// alive holds the leases that survive this collection.
	var alive map[leaseKey]bool
	// unmount holds the mount activations removed, for the mount manager.
	var unmount []manager.Record
	defer db.gen.Add(1) // records are gone: cached ones with them
	err := db.boltUpdate(true, func(tx *bolt.Tx) error {
		st, next = GCStats{}, time.Time{}
		alive, unmount = map[leaseKey]bool{}, nil
		return tx.Bucket(bucketV1).ForEachBucket(func(ns []byte) error {
			nsb := tx.Bucket(bucketV1).Bucket(ns)
			if ib := nsb.Bucket(bucketIngests); ib != nil {
				ib.ForEach(func(k, _ []byte) error {
					ingests[backendRef(string(ns), string(k))] = true
					return nil
				})
			}
			expiry := func(id string, labels map[string]string) time.Time {
				t := db.leaseExpiry(string(ns), id, labels)
				if t.IsZero() || !now.After(t) {
					alive[leaseKey{string(ns), id}] = true
				}
				if _, idle := labels[leases.IdleExpireLabel]; idle && !t.IsZero() && !now.After(t) && (next.IsZero() || t.Before(next)) {
					next = t
				}
				return t
			}
			collected, err := collectMounts(nsb, string(ns), now, expiry)
			if err != nil {
				return err
			}
			unmount = append(unmount, collected...)
			n, e, err := collectNamespace(nsb, now, expiry, referenced, backends)
			st.ContentDeleted += n
			st.LeasesExpired += e
			if err != nil {
				return err
			}
			gone, err := collectLeasedIngests(nsb, func(ref string) bool { return db.isWriting(backendRef(string(ns), ref)) })
			for _, ref := range gone {
				delete(ingests, backendRef(string(ns), ref)) // aborted in the backend below
			}
			return err
		})
	})
	if err != nil {
		return st, err
	}
	db.setNextExpiry(next)
	db.use.prune(alive, now)
	db.releaseMounts(ctx, unmount)
	// The records are gone; what they named is removed below. A crash
	// here leaves files no record names, which the next collection
	// removes: never a record naming a missing file.
	crashpoint.Hit(crashpoint.GCSweep)
	st.SnapshotsDeleted = db.collectBackendSnapshots(ctx, backends)
	// Blobs whose records are written behind them are as good as
	// recorded (see pendingBlobs).
	db.pending.digests(referenced)
	var unused []digest.Digest
	if err := db.backend.Walk(ctx, func(info content.Info) error {
		if !referenced[info.Digest] {
			unused = append(unused, info.Digest)
		}
		return nil
	}); err != nil {
		return st, err
	}
	for _, d := range unused {
		if err := db.backend.Delete(ctx, d); err != nil {
			db.log.Warn("gc: delete blob", "digest", d, "error", err)
			continue
		}
		st.BlobsDeleted++
	}
	st.IngestsDeleted = db.collectIngests(ctx, ingests)
	if err := db.reserve.fill(); err != nil {
		db.log.Debug("gc: metadata reserve not restored yet", "error", err)
	}
	st.Duration = time.Since(start)
	db.log.Debug("gc: done", "content_deleted", st.ContentDeleted, "blobs_deleted", st.BlobsDeleted, "leases_expired", st.LeasesExpired, "duration", st.Duration)
	return st, nil
}

// collectNamespace sweeps one namespace and adds the blobs it keeps to keep.
// expiry tells when a lease expires (zero for never); it is collected if
// that is before now.
func collectNamespace(nsb *bolt.Bucket, now time.Time, expiry func(id string, labels map[string]string) time.Time, keep map[digest.Digest]bool, backends map[string]map[string]bool) (deleted, expired int, err error) {
	// snapMarks holds, per snapshotter, the keys something references.
	snapMarks := map[string]map[string]bool{}
	markSnap := func(sn, key string) {
		if snapMarks[sn] == nil {
			snapMarks[sn] = map[string]bool{}
		}
		snapMarks[sn][key] = true
	}
	marked := map[string]bool{}
	var queue []string
	mark := func(d string) {
		if d != "" && !marked[d] {
			marked[d] = true
			queue = append(queue, d)
		}
	}
	if b := nsb.Bucket(bucketImages); b != nil {
		if err := b.ForEach(func(k, v []byte) error {
			var r imageRecord
			if err := decodeAt(string(k), v, &r); err != nil {
				return err
			}
			mark(r.Target.Digest.String())
			return nil
		}); err != nil {
			return 0, 0, err
		}
	}
	// Containers are roots: they keep their root filesystem snapshot
	// (and through it its parents) even after their image is deleted, and
	// whatever their gc.ref labels name.
	if b := nsb.Bucket(bucketContainers); b != nil {
		if err := b.ForEach(func(k, v []byte) error {
			// Only the references: decoding whole records (the spec is
			// kilobytes) made gc the daemon's main cost while containers
			// were being started.
			var r containerRefs
			if err := decodeAt(string(k), v, &r); err != nil {
				return err
			}
			if r.Snapshotter != "" && r.SnapshotKey != "" {
				markSnap(r.Snapshotter, r.SnapshotKey)
			}
			markLabelRefs(r.Labels, mark, markSnap)
			return nil
		}); err != nil {
			return 0, 0, err
		}
	}
	if err := markMountRefs(nsb, mark, markSnap); err != nil {
		return 0, 0, err
	}
	if b := nsb.Bucket(bucketLeases); b != nil {
		var gone []string
		if err := b.ForEach(func(k, v []byte) error {
			var r leaseRecord
			if err := decodeAt(string(k), v, &r); err != nil {
				return err
			}
			if t := expiry(string(k), r.Labels); !t.IsZero() && now.After(t) {
				gone = append(gone, string(k))
				return nil
			}
			return forEachLeaseResource(nsb, string(k), &r, func(typ, id string) {
				if typ == "content" {
					mark(id)
				} else if sn, ok := strings.CutPrefix(typ, "snapshots/"); ok {
					markSnap(sn, id)
				}
			})
		}); err != nil {
			return 0, 0, err
		}
		for _, k := range gone {
			if err := deleteLeaseResources(nsb, k); err != nil {
				return 0, 0, err
			}
			if err := b.Delete([]byte(k)); err != nil {
				return 0, 0, err
			}
		}
		expired = len(gone)
	}
	cb := nsb.Bucket(bucketContent)
	if cb == nil {
		deleted, err := collectSnapshots(nsb, snapMarks, backends)
		return deleted, expired, err
	}
	records := map[string]blobRecord{}
	if err := cb.ForEach(func(k, v []byte) error {
		var r blobRecord
		if err := decodeAt(string(k), v, &r); err != nil {
			return err
		}
		records[string(k)] = r
		if _, ok := r.Labels[LabelGCRoot]; ok {
			mark(string(k))
		}
		return nil
	}); err != nil {
		return 0, 0, err
	}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		for k, v := range records[d].Labels {
			if isContentRef(k) {
				mark(v)
			}
			if sn, ok := snapshotRef(k); ok {
				markSnap(sn, v)
			}
		}
	}
	for k := range records {
		if marked[k] {
			keep[digest.Digest(k)] = true
			continue
		}
		if err := cb.Delete([]byte(k)); err != nil {
			return 0, 0, err
		}
		deleted++
	}
	n, err := collectSnapshots(nsb, snapMarks, backends)
	return deleted + n, expired, err
}

// collectLeasedIngests removes the records of ingests a lease held and
// none holds any more (deleted, or expired after its client died), unless
// a writer of this process is at them; their backend ingests, no longer
// recorded, go with the unrecorded ones. It returns the refs removed.
func collectLeasedIngests(nsb *bolt.Bucket, writing func(ref string) bool) ([]string, error) {
	ib := nsb.Bucket(bucketIngests)
	if ib == nil {
		return nil, nil
	}
	held := map[string]bool{}
	if err := forEachRecord(nsb.Bucket(bucketLeases), func(id string, r *leaseRecord) error {
		return forEachLeaseResource(nsb, id, r, func(typ, ref string) {
			if typ == "ingests" {
				held[ref] = true
			}
		})
	}); err != nil {
		return nil, err
	}
	var gone []string
	if err := forEachRecord(ib, func(ref string, r *ingestRecord) error {
		if r.Leased && !held[ref] && !writing(ref) {
			gone = append(gone, ref)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	for _, ref := range gone {
		if err := ib.Delete([]byte(ref)); err != nil {
			return nil, err
		}
	}
	return gone, nil
}

// ingestCleaner is a content backend that hulld owns alone and that can
// remove what of its ingests can never be resumed (local.Store).
type ingestCleaner interface {
	CleanupIngests(ctx context.Context) (int, error)
}

// collectIngests removes ingests that take disk space but that no client
// can see or abort: in a backend hulld owns, unusable ingest directories and
// ingests no namespace records (an abort that removed the record and then
// failed); and in the database, ingest records whose ingest is gone (a
// crash between a blob's commit and its record), which would otherwise keep
// their namespace from being deleted. Ingests with a writer in this process
// are left alone. recorded holds the backend refs of the recorded ingests.
func (db *DB) collectIngests(ctx context.Context, recorded map[string]bool) int {
	cleaner, owned := db.backend.(ingestCleaner)
	removed := 0
	if owned {
		n, err := cleaner.CleanupIngests(ctx)
		if err != nil {
			db.log.Warn("gc: clean up ingests", "error", err)
		}
		removed += n
	}
	statuses, err := db.backend.ListStatuses(ctx)
	if err != nil {
		db.log.Warn("gc: list ingests", "error", err)
		return removed
	}
	present := map[string]bool{}
	var orphans []string
	for _, st := range statuses {
		present[st.Ref] = true
		if owned && !recorded[st.Ref] && !db.isWriting(st.Ref) {
			orphans = append(orphans, st.Ref)
		}
	}
	// A writer records its ingest before it creates it: what was not
	// recorded when the records were read may be by now. Look again.
	if len(orphans) > 0 {
		recordedNow := map[string]bool{}
		db.bolt.View(func(tx *bolt.Tx) error {
			v1 := tx.Bucket(bucketV1)
			for _, bref := range orphans {
				ns, ref, _ := strings.Cut(bref, "/")
				if nsb := v1.Bucket([]byte(ns)); nsb != nil {
					if ib := nsb.Bucket(bucketIngests); ib != nil && ib.Get([]byte(ref)) != nil {
						recordedNow[bref] = true
					}
				}
			}
			return nil
		})
		for _, bref := range orphans {
			if recordedNow[bref] || db.isWriting(bref) {
				continue
			}
			if err := db.backend.Abort(ctx, bref); err != nil && !errdefs.IsNotFound(err) {
				db.log.Warn("gc: remove unrecorded ingest", "ref", bref, "error", err)
				continue
			}
			removed++
		}
	}
	var gone []string
	for bref := range recorded {
		if !present[bref] && !db.isWriting(bref) {
			gone = append(gone, bref)
		}
	}
	if len(gone) == 0 {
		return removed
	}
	err = db.boltUpdate(true, func(tx *bolt.Tx) error {
		v1 := tx.Bucket(bucketV1)
		for _, bref := range gone {
			ns, ref, _ := strings.Cut(bref, "/")
			// Checked again in the transaction: a writer takes its ref
			// before it writes the record, which it cannot do while this
			// transaction runs.
			if db.isWriting(bref) {
				continue
			}
			// And the ingest may have been made since the list.
			if _, err := db.backend.Status(ctx, bref); !errdefs.IsNotFound(err) {
				continue
			}
			nsb := v1.Bucket([]byte(ns))
			if nsb == nil {
				continue
			}
			if ib := nsb.Bucket(bucketIngests); ib != nil && ib.Get([]byte(ref)) != nil {
				if err := ib.Delete([]byte(ref)); err != nil {
					return err
				}
				removed++
			}
		}
		return nil
	})
	if err != nil {
		db.log.Warn("gc: remove records of lost ingests", "error", err)
	}
	return removed
}

// snapshotRef reports whether label is containerd.io/gc.ref.snapshot.<sn>
// (optionally followed by "." or "/" and more) and returns sn.
func snapshotRef(label string) (string, bool) {
	rest, ok := strings.CutPrefix(label, LabelGCRefSnapshot)
	if !ok || rest == "" {
		return "", false
	}
	if i := strings.IndexAny(rest, "./"); i >= 0 {
		rest = rest[:i]
	}
	return rest, rest != ""
}

// collectSnapshots deletes the namespace's snapshot records that nothing
// marked (marks follow parents; active snapshots and views are roots of
// their own, and so are records labelled gc.root), and records in backends
// the backend snapshots the survivors name.
func collectSnapshots(nsb *bolt.Bucket, marks map[string]map[string]bool, backends map[string]map[string]bool) (int, error) {
	sb := nsb.Bucket(bucketSnapshots)
	if sb == nil {
		return 0, nil
	}
	deleted := 0
	err := sb.ForEachBucket(func(name []byte) error {
		sn := string(name)
		b := sb.Bucket(name)
		records := map[string]snapRecord{}
		if err := b.ForEach(func(k, v []byte) error {
			var r snapRecord
			if err := decodeAt(string(k), v, &r); err != nil {
				return err
			}
			records[string(k)] = r
			return nil
		}); err != nil {
			return err
		}
		keep := map[string]bool{}
		var queue []string
		add := func(k string) {
			if _, ok := records[k]; ok && !keep[k] {
				keep[k] = true
				queue = append(queue, k)
			}
		}
		for k, r := range records {
			if _, root := r.Labels[LabelGCRoot]; root || marks[sn][k] {
				add(k)
			}
		}
		for len(queue) > 0 {
			k := queue[0]
			queue = queue[1:]
			add(records[k].Parent)
		}
		if backends[sn] == nil {
			backends[sn] = map[string]bool{}
		}
		for k, r := range records {
			if keep[k] {
				backends[sn][r.Backend] = true
				continue
			}
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
			deleted++
		}
		return nil
	})
	return deleted, err
}

// collectBackendSnapshots removes the backend snapshots no namespace names,
// children before parents, and lets each backend free their disk.
func (db *DB) collectBackendSnapshots(ctx context.Context, referenced map[string]map[string]bool) int {
	db.sn.mu.RLock()
	backends := make(map[string]snapshots.Snapshotter, len(db.sn.m))
	for n, b := range db.sn.m {
		backends[n] = b
	}
	db.sn.mu.RUnlock()
	removed := 0
	for name, b := range backends {
		parents := map[string]string{}
		err := b.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
			parents[info.Name] = info.Parent
			return nil
		})
		if err != nil {
			db.log.Warn("gc: walk snapshots", "snapshotter", name, "error", err)
			continue
		}
		// Referenced snapshots keep their parents.
		keep := map[string]bool{}
		for k := range parents {
			for p := k; p != "" && referenced[name][k] && !keep[p]; p = parents[p] {
				keep[p] = true
			}
		}
		for {
			hasChild := map[string]bool{}
			for _, p := range parents {
				if p != "" {
					hasChild[p] = true
				}
			}
			progress := false
			for k := range parents {
				if keep[k] || hasChild[k] {
					continue
				}
				if err := b.Remove(ctx, k); err != nil {
					db.log.Warn("gc: remove snapshot", "snapshotter", name, "key", k, "error", err)
					keep[k] = true
					continue
				}
				delete(parents, k)
				removed++
				progress = true
			}
			if !progress {
				break
			}
		}
		if c, ok := b.(snapshots.Cleaner); ok {
			if err := c.Cleanup(ctx); err != nil {
				db.log.Warn("gc: snapshotter cleanup", "snapshotter", name, "error", err)
			}
		}
	}
	return removed
}

func isContentRef(label string) bool {
	if !strings.HasPrefix(label, LabelGCRefContent) {
		return false
	}
	rest := label[len(LabelGCRefContent):]
	return rest == "" || rest[0] == '.' || rest[0] == '/'
}

// collectAfterDelete runs a collection now (sync) or schedules one.
func (db *DB) collectAfterDelete(ctx context.Context, sync bool) error {
	if sync {
		_, err := db.GarbageCollect(ctx)
		return err
	}
	db.kickGC()
	return nil
}

// ScheduleGC asks the background collector for a run soon.
func (db *DB) ScheduleGC() { db.kickGC() }

// kickGC asks the background collector for a run.
func (db *DB) kickGC() {
	db.kicks.Add(1)
	select {
	case db.gcKick <- struct{}{}:
	default: // one is pending already
	}
}

// collector runs collections requested by kickGC, gcDelay after the first
// request of a burst, and when the earliest lease expiry is due, until
// Close.
func (db *DB) collector() {
	defer close(db.gcDone)
	var pause time.Duration
	for {
		var due <-chan time.Time
		var timer *time.Timer
		if next := db.expiryDue(); !next.IsZero() {
			// A moment after, since expiry is "after" the time.
			timer = time.NewTimer(time.Until(next) + time.Millisecond)
			due = timer.C
		}
		kicked, woken := false, false
		select {
		case <-db.gcStop:
		case <-db.gcKick:
			kicked = true
		case <-db.gcWake:
			woken = true
		case <-due:
		}
		if timer != nil {
			timer.Stop()
		}
		select {
		case <-db.gcStop:
			return
		default:
		}
		if woken {
			continue // the next expiry moved: wait for the new one
		}
		if kicked {
			want := db.kicks.Load()
			select {
			case <-db.gcStop:
				return
			case <-time.After(max(time.Duration(db.gcDelay.Load()), pause)):
			}
			if db.covered.Load() >= want {
				// A collection since has seen every kick taken.
				db.skipped.Add(1)
				continue
			}
		}
		began := time.Now()
		if _, err := db.GarbageCollect(context.Background()); err != nil {
			db.log.Warn("gc failed", "error", err)
			// An expiry that was due stays due: try again later rather
			// than at once and for ever.
			if next := db.expiryDue(); !next.IsZero() && !next.After(time.Now()) {
				db.setNextExpiry(time.Now().Add(max(pause, time.Second)))
			}
		}
		// Collections take at most about 2% of the time, as containerd's
		// pause threshold does: during a burst of deletions (containers
		// started and removed by the dozen) they coalesce instead of
		// running after every one.
		pause = time.Since(began) * 50
	}
}

// markLabelRefs marks the content and snapshots that labels name in their
// containerd.io/gc.ref.content* and gc.ref.snapshot.* keys.
func markLabelRefs(labels map[string]string, mark func(string), markSnap func(sn, key string)) {
	for l, v := range labels {
		if isContentRef(l) {
			mark(v)
		}
		if sn, ok := snapshotRef(l); ok {
			markSnap(sn, v)
		}
	}
}
