package metadata

import (
	"context"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/leases"
)

// The labels containerd uses to tie objects together for garbage collection.
const (
	// LabelGCRoot on a blob makes it a root: kept while the label is there.
	LabelGCRoot = "containerd.io/gc.root"
	// LabelGCRefContent and labels starting with LabelGCRefContent + "."
	// or "/" hold the digest of a blob the labelled object keeps alive.
	LabelGCRefContent = "containerd.io/gc.ref.content"
	// LabelGCRefSnapshot + ".<snapshotter>" holds a snapshot key.
	LabelGCRefSnapshot = "containerd.io/gc.ref.snapshot."
)

// GCStats tells what a collection removed.
type GCStats struct {
	ContentDeleted int           // records removed from namespaces
	BlobsDeleted   int           // files removed from disk
	LeasesExpired  int           // leases removed for their expiry label
	Duration       time.Duration // time the collector held the store
}

// GarbageCollect marks everything reachable from the roots (images, leases,
// blobs labelled as roots) through containerd's reference labels, deletes the
// records nothing reaches, then deletes the blobs no namespace records. Blobs
// and ingests held by a lease, and writes in progress, are never touched.
func (db *DB) GarbageCollect(ctx context.Context) (GCStats, error) {
	start := time.Now()
	var st GCStats
	db.gcMu.Lock()
	defer db.gcMu.Unlock()
	referenced := map[digest.Digest]bool{}
	now := time.Now()
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketV1).ForEachBucket(func(ns []byte) error {
			nsb := tx.Bucket(bucketV1).Bucket(ns)
			n, e, err := collectNamespace(nsb, now, referenced)
			st.ContentDeleted += n
			st.LeasesExpired += e
			return err
		})
	})
	if err != nil {
		return st, err
	}
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
func collectNamespace(nsb *bolt.Bucket, now time.Time, keep map[digest.Digest]bool) (deleted, expired int, err error) {
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
			if _, err := getJSON(b, string(k), &r); err != nil {
				return err
			}
			mark(r.Target.Digest.String())
			return nil
		}); err != nil {
			return 0, 0, err
		}
	}
	if b := nsb.Bucket(bucketLeases); b != nil {
		var gone []string
		if err := b.ForEach(func(k, v []byte) error {
			var r leaseRecord
			if _, err := getJSON(b, string(k), &r); err != nil {
				return err
			}
			if leases.Expired(r.Labels, now) {
				gone = append(gone, string(k))
				return nil
			}
			for _, d := range r.Resources["content"] {
				mark(d)
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
		return 0, expired, nil
	}
	records := map[string]blobRecord{}
	if err := cb.ForEach(func(k, v []byte) error {
		var r blobRecord
		if _, err := getJSON(cb, string(k), &r); err != nil {
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
	return deleted, expired, nil
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
	for {
		select {
		case <-db.gcStop:
			return
		case <-db.gcKick:
		}
		select {
		case <-db.gcStop:
			return
		case <-time.After(time.Duration(db.gcDelay.Load())):
		}
		if _, err := db.GarbageCollect(context.Background()); err != nil {
			db.log.Warn("gc failed", "error", err)
		}
	}
}
