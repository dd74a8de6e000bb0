package metadata

import (
	"context"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/labels"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/snapshots"
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
	Duration         time.Duration // time the collector held the store
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
	referenced := map[digest.Digest]bool{}
	// backends holds, per snapshotter, the backend snapshots some
	// namespace still names.
	backends := map[string]map[string]bool{}
	now := time.Now()
	defer db.gen.Add(1) // records are gone: cached ones with them
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketV1).ForEachBucket(func(ns []byte) error {
			nsb := tx.Bucket(bucketV1).Bucket(ns)
			n, e, err := collectNamespace(nsb, now, referenced, backends)
			st.ContentDeleted += n
			st.LeasesExpired += e
			return err
		})
	})
	if err != nil {
		return st, err
	}
	st.SnapshotsDeleted = db.collectBackendSnapshots(ctx, backends)
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
	st.Duration = time.Since(start)
	db.log.Debug("gc: done", "content_deleted", st.ContentDeleted, "blobs_deleted", st.BlobsDeleted, "leases_expired", st.LeasesExpired, "duration", st.Duration)
	return st, nil
}

// collectNamespace sweeps one namespace and adds the blobs it keeps to keep.
func collectNamespace(nsb *bolt.Bucket, now time.Time, keep map[digest.Digest]bool, backends map[string]map[string]bool) (deleted, expired int, err error) {
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
			// kilobytes of base64) made gc the daemon's main cost while
			// containers were being started.
			var r struct {
				Labels      map[string]string `json:"labels,omitempty"`
				SnapshotKey string            `json:"snapshot_key,omitempty"`
				Snapshotter string            `json:"snapshotter,omitempty"`
			}
			if err := decodeAt(string(k), v, &r); err != nil {
				return err
			}
			if r.Snapshotter != "" && r.SnapshotKey != "" {
				markSnap(r.Snapshotter, r.SnapshotKey)
			}
			for l, v := range r.Labels {
				if isContentRef(l) {
					mark(v)
				}
				if sn, ok := snapshotRef(l); ok {
					markSnap(sn, v)
				}
			}
			return nil
		}); err != nil {
			return 0, 0, err
		}
	}
	if b := nsb.Bucket(bucketLeases); b != nil {
		var gone []string
		if err := b.ForEach(func(k, v []byte) error {
			var r leaseRecord
			if err := decodeAt(string(k), v, &r); err != nil {
				return err
			}
			if leases.Expired(r.Labels, now) {
				gone = append(gone, string(k))
				return nil
			}
			for _, d := range r.Resources["content"] {
				mark(d)
			}
			for typ, keys := range r.Resources {
				if sn, ok := strings.CutPrefix(typ, "snapshots/"); ok {
					for _, k := range keys {
						markSnap(sn, k)
					}
				}
			}
			return nil
		}); err != nil {
			return 0, 0, err
		}
		for _, k := range gone {
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
	select {
	case db.gcKick <- struct{}{}:
	default: // one is pending already
	}
}

// collector runs collections requested by kickGC, gcDelay after the first
// request of a burst, until Close.
func (db *DB) collector() {
	defer close(db.gcDone)
	var pause time.Duration
	for {
		select {
		case <-db.gcStop:
			return
		case <-db.gcKick:
		}
		select {
		case <-db.gcStop:
			return
		case <-time.After(max(time.Duration(db.gcDelay.Load()), pause)):
		}
		began := time.Now()
		if _, err := db.GarbageCollect(context.Background()); err != nil {
			db.log.Warn("gc failed", "error", err)
		}
		// Collections take at most about 2% of the time, as containerd's
		// pause threshold does: during a burst of deletions (containers
		// started and removed by the dozen) they coalesce instead of
		// running after every one.
		pause = time.Since(began) * 50
	}
}
