package metadata

import (
	"context"
	"fmt"
	"sync"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/filters"
	"github.com/hullrt/hull/core/labels"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/internal/crashpoint"
)

// Content returns the namespaced content store.
//
// Blobs are deduplicated on disk but not shared between namespaces: a
// namespace sees a blob only after it wrote it itself (the bytes are checked
// against the digest then, and the existing file is kept), so knowing a digest
// is never enough to read another namespace's content.
func (db *DB) Content() content.Store { return contentStore{db} }

type contentStore struct{ db *DB }

var _ content.Store = contentStore{}

type blobRecord struct {
	Size      int64             `json:"size"`
	Labels    map[string]string `json:"labels,omitempty"`
	CreatedAt time.Time         `json:"created"`
	UpdatedAt time.Time         `json:"updated"`
}

type ingestRecord struct {
	Expected digest.Digest `json:"expected,omitempty"`
	Total    int64         `json:"total,omitempty"`
	// Leased says a lease held the ingest: it is collected once no lease
	// holds it any more, as its client gave it up (or died and its lease
	// expired). An ingest written without a lease stays until aborted.
	Leased bool `json:"leased,omitempty"`
}

// backendRef is the name of a namespace's ingest in the shared backend;
// namespace names cannot hold '/', so refs of two namespaces never meet.
func backendRef(ns, ref string) string { return ns + "/" + ref }

func validDigest(d digest.Digest) error { return content.ValidateDigest(d) }

func (s contentStore) Info(ctx context.Context, dgst digest.Digest) (content.Info, error) {
	if err := validDigest(dgst); err != nil {
		return content.Info{}, err
	}
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return content.Info{}, err
	}
	gen, key := s.db.gen.Load(), infoKey{ns, dgst}
	if info, ok := s.db.infos.get(gen, key); ok {
		s.db.useLease(ctx, ns) // as the view it saves would
		return info, nil
	}
	// Pending first: a blob leaves the pending ones only once its record
	// has committed, so a blob not pending now is recorded by then, or
	// was not there. Looked at after the view, a blob whose record
	// committed meanwhile would be in neither.
	if info, ok := s.db.pending.info(key); ok {
		s.db.useLease(ctx, ns)
		return info, nil
	}
	var info content.Info
	err = s.db.view(ctx, func(t *nsTx) error {
		var r blobRecord
		ok, err := getRecord(t.bucket(bucketContent), dgst.String(), &r)
		if err != nil {
			return err
		}
		if !ok {
			return notFound("content digest %s", dgst)
		}
		info = r.info(dgst)
		return nil
	})
	if err == nil {
		s.db.infos.put(gen, key, info)
	}
	return info, err
}

func (r *blobRecord) info(d digest.Digest) content.Info {
	return content.Info{Digest: d, Size: r.Size, Labels: r.Labels, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

func (s contentStore) Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error) {
	var out content.Info
	err := s.update(ctx, []content.Info{info}, fieldpaths, func(_ int, i content.Info) { out = i })
	return out, err
}

var _ content.ManyUpdater = contentStore{}

// UpdateMany implements content.ManyUpdater: one transaction updates
// every blob of infos.
func (s contentStore) UpdateMany(ctx context.Context, infos []content.Info, fieldpaths ...string) error {
	return s.update(ctx, infos, fieldpaths, func(int, content.Info) {})
}

// update applies Update's change to each of infos in one transaction and
// gives out each blob's info as updated.
func (s contentStore) update(ctx context.Context, infos []content.Info, fieldpaths []string, out func(int, content.Info)) error {
	for _, info := range infos {
		if err := validDigest(info.Digest); err != nil {
			return err
		}
		if err := labels.ValidateAll(info.Labels); err != nil {
			return fmt.Errorf("content %s: %w", info.Digest, err)
		}
	}
	if err := s.db.writePending(ctx); err != nil {
		return err
	}
	var gcChanged bool
	err := s.db.update(ctx, func(t *nsTx) error {
		gcChanged = false
		b := t.bucket(bucketContent)
		for n, info := range infos {
			var r blobRecord
			ok, err := getRecord(b, info.Digest.String(), &r)
			if err != nil {
				return err
			}
			if !ok {
				return notFound("content digest %s", info.Digest)
			}
			changed, err := updateLabels(&r.Labels, info.Labels, fieldpaths, "content "+info.Digest.String())
			if err != nil {
				return err
			}
			gcChanged = gcChanged || changed
			r.UpdatedAt = time.Now().UTC()
			out(n, r.info(info.Digest))
			if err := putRecord(b, info.Digest.String(), &r); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && gcChanged {
		// A reference dropped may have kept something alive: let the
		// collector look. Other labels (a layer's uncompressed digest,
		// set on every layer of a pull) cannot free anything.
		s.db.kickGC()
	}
	return err
}

func (s contentStore) Walk(ctx context.Context, fn content.WalkFunc, fs ...string) error {
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		return err
	}
	// A listing shows every blob stored, records written behind
	// (PutDeferred) too.
	if err := s.db.writePending(ctx); err != nil {
		return err
	}
	var infos []content.Info
	err = s.db.view(ctx, func(t *nsTx) error {
		b := t.bucket(bucketContent)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var r blobRecord
			if err := decodeAt(string(k), v, &r); err != nil {
				return err
			}
			info := r.info(digest.Digest(k))
			if filter.Match(contentAdaptor(&info)) {
				infos = append(infos, info)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	// fn runs outside the transaction: it may call back into the store.
	for _, info := range infos {
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

func contentAdaptor(info *content.Info) filters.Adaptor {
	return filters.AdapterFunc(func(fp []string) (string, bool) {
		switch fp[0] {
		case "digest":
			return info.Digest.String(), true
		case "size":
			return fmt.Sprint(info.Size), true
		case "labels":
			return labelField(info.Labels, fp)
		}
		return "", false
	})
}

func (s contentStore) Delete(ctx context.Context, dgst digest.Digest) error {
	if err := validDigest(dgst); err != nil {
		return err
	}
	if err := s.db.writePending(ctx); err != nil {
		return err
	}
	err := s.db.updateFreeing(ctx, func(t *nsTx) error {
		b := t.bucket(bucketContent)
		if b == nil || b.Get([]byte(dgst.String())) == nil {
			return notFound("content digest %s", dgst)
		}
		if err := b.Delete([]byte(dgst.String())); err != nil {
			return err
		}
		t.publish(s.db, "/content/delete", &eventstypes.ContentDelete{Digest: dgst.String()})
		return nil
	})
	if err != nil {
		return err
	}
	return s.db.collectAfterDelete(ctx, false)
}

func (s contentStore) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	if err := validDigest(desc.Digest); err != nil {
		return nil, err
	}
	// Only the record's presence matters here; Info keeps the records it
	// reads until the next write, so a blob read over and over (a
	// manifest, a config) costs one database lookup, not one per read.
	if ns, err := namespaces.NamespaceRequired(ctx); err == nil && s.db.infos.has(s.db.gen.Load(), infoKey{ns, desc.Digest}) {
		s.db.useLease(ctx, ns)
		return s.db.backend.ReaderAt(ctx, desc)
	}
	if _, err := s.Info(ctx, desc.Digest); err != nil {
		return nil, err
	}
	return s.db.backend.ReaderAt(ctx, desc)
}

func (s contentStore) Status(ctx context.Context, ref string) (content.Status, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return content.Status{}, err
	}
	var rec ingestRecord
	err = s.db.view(ctx, func(t *nsTx) error {
		ok, err := getRecord(t.bucket(bucketIngests), ref, &rec)
		if err == nil && !ok {
			err = notFound("ingest %q", ref)
		}
		return err
	})
	if err != nil {
		return content.Status{}, err
	}
	st, err := s.db.backend.Status(ctx, backendRef(ns, ref))
	if err != nil {
		if errdefs.IsNotFound(err) {
			return content.Status{}, notFound("ingest %q", ref)
		}
		return content.Status{}, err
	}
	return rec.status(ref, st), nil
}

func (r *ingestRecord) status(ref string, st content.Status) content.Status {
	st.Ref = ref
	if r.Expected != "" {
		st.Expected = r.Expected
	}
	if r.Total > 0 {
		st.Total = r.Total
	}
	return st
}

func (s contentStore) ListStatuses(ctx context.Context, fs ...string) ([]content.Status, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		return nil, err
	}
	recs := map[string]ingestRecord{}
	err = s.db.view(ctx, func(t *nsTx) error {
		b := t.bucket(bucketIngests)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var r ingestRecord
			err := decodeAt(string(k), v, &r)
			recs[string(k)] = r
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	var out []content.Status
	for ref, r := range recs {
		st, err := s.db.backend.Status(ctx, backendRef(ns, ref))
		if err != nil {
			if errdefs.IsNotFound(err) {
				continue // committed or aborted between the two reads
			}
			return nil, err
		}
		st = r.status(ref, st)
		if filter.Match(filters.AdapterFunc(func(fp []string) (string, bool) {
			switch fp[0] {
			case "ref":
				return st.Ref, true
			case "expected":
				return st.Expected.String(), st.Expected != ""
			}
			return "", false
		})) {
			out = append(out, st)
		}
	}
	return out, nil
}

func (s contentStore) Abort(ctx context.Context, ref string) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	err = s.db.updateFreeing(ctx, func(t *nsTx) error {
		b := t.bucket(bucketIngests)
		if b == nil || b.Get([]byte(ref)) == nil {
			return notFound("ingest %q", ref)
		}
		return b.Delete([]byte(ref))
	})
	if err != nil {
		return err
	}
	if err := s.db.backend.Abort(ctx, backendRef(ns, ref)); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// Writer opens the ingest ref of the namespace of ctx. A lease in ctx holds
// the ingest and, after commit, the blob.
func (s contentStore) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	var wo content.WriterOpts
	for _, o := range opts {
		if err := o(&wo); err != nil {
			return nil, err
		}
	}
	if wo.Ref == "" {
		return nil, invalid("ingest ref must not be empty")
	}
	if wo.Desc.Digest != "" {
		if err := validDigest(wo.Desc.Digest); err != nil {
			return nil, err
		}
	}
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	bref := backendRef(ns, wo.Ref)
	if err := s.db.lockRef(bref, wo.Ref); err != nil {
		return nil, err
	}
	w, err := s.writer(ctx, ns, wo)
	if err != nil {
		s.db.unlockRef(bref)
		return nil, err
	}
	return w, nil
}

// Put stores data as the blob desc names in the namespace of ctx, in one
// step (content.Putter): the backend stores it, through its own Put when
// it has one, and one transaction records it with the labels opts give. A
// lease in ctx holds it.
func (s contentStore) Put(ctx context.Context, desc ocispec.Descriptor, data []byte, opts ...content.CommitOpt) error {
	ns, co, err := putArgs(ctx, desc, opts)
	if err != nil {
		return err
	}
	return s.putNow(ctx, ns, desc, data, co)
}

// putArgs checks a Put's digest, options and namespace, and returns the
// namespace and what the options set.
func putArgs(ctx context.Context, desc ocispec.Descriptor, opts []content.CommitOpt) (string, content.CommitOpts, error) {
	if err := validDigest(desc.Digest); err != nil {
		return "", content.CommitOpts{}, err
	}
	co, err := commitOptions(opts)
	if err != nil {
		return "", co, err
	}
	ns, err := namespaces.NamespaceRequired(ctx)
	return ns, co, err
}

// putNow is Put in namespace ns, after its checks.
func (s contentStore) putNow(ctx context.Context, ns string, desc ocispec.Descriptor, data []byte, co content.CommitOpts) error {
	lease, _ := leases.FromContext(ctx)
	// Hold off the collector from the moment the blob exists on disk
	// until this namespace records it.
	s.db.gcMu.RLock()
	defer s.db.gcMu.RUnlock()
	if err := s.putBackend(ctx, ns, desc, data, false); err != nil {
		return err
	}
	return s.record(ctx, lease, desc, co)
}

// putBackend has the backend store data as desc's blob, through its own
// Put when it has one. A blob the backend has already (another
// namespace's) is no error: the caller proved it has the bytes, and its
// namespace records it too.
//
// With unsynced, a backend that can (content.NameSyncer) leaves the blob's
// name to the next syncBackendNames: a deferred blob's record is written
// later anyway, and the names of all the blobs it is written with are
// synced at once before it.
func (s contentStore) putBackend(ctx context.Context, ns string, desc ocispec.Descriptor, data []byte, unsynced bool) error {
	var err error
	if p, ok := s.db.backend.(content.NameSyncer); ok && unsynced {
		err = p.PutUnsynced(ctx, desc, data)
	} else if p, ok := s.db.backend.(content.Putter); ok {
		err = p.Put(ctx, desc, data)
	} else {
		err = content.PutByIngest(ctx, s.db.backend, backendRef(ns, "put-"+desc.Digest.String()), desc, data)
	}
	if err != nil && !errdefs.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// record records desc's blob, stored in the backend, in the namespace of
// ctx, held by lease when one is given; AlreadyExists when it was.
func (s contentStore) record(ctx context.Context, lease string, desc ocispec.Descriptor, co content.CommitOpts) error {
	var exists bool
	err := s.db.update(ctx, func(t *nsTx) error {
		var err error
		exists, err = recordBlob(t, s.db, lease, desc.Digest, desc.Size, co.Labels)
		return err
	})
	if err != nil {
		return err
	}
	if exists {
		return alreadyExists("content %s", desc.Digest)
	}
	return nil
}

var _ content.DeferredPutter = contentStore{}

// PutDeferred implements content.DeferredPutter: the backend stores the
// blob as Put has it store it, and its record waits among the namespace's
// pending blobs (pendingBlobs). A blob recorded or pending in the
// namespace already goes through Put, which records this lease's hold on
// it and answers AlreadyExists.
func (s contentStore) PutDeferred(ctx context.Context, desc ocispec.Descriptor, data []byte, opts ...content.CommitOpt) error {
	ns, co, err := putArgs(ctx, desc, opts)
	if err != nil {
		return err
	}
	key := infoKey{ns, desc.Digest}
	if _, err := s.Info(ctx, desc.Digest); !errdefs.IsNotFound(err) {
		return s.putNow(ctx, ns, desc, data, co)
	}
	lease, _ := leases.FromContext(ctx)
	s.db.gcMu.RLock()
	defer s.db.gcMu.RUnlock()
	if err := s.putBackend(ctx, ns, desc, data, true); err != nil {
		return err
	}
	s.db.useLease(ctx, ns)
	if !s.db.pending.add(key, &pendingBlob{lease: lease, size: desc.Size, labels: co.Labels, at: time.Now().UTC()}, s.db.writeAllPending) {
		// Pending already (another pull of it), or the store is
		// closing: record it now, as Put does.
		if err := s.db.syncBackendNames(); err != nil {
			return err
		}
		return s.record(ctx, lease, desc, co)
	}
	return nil
}

// syncBackendNames makes the names of the blobs putBackend stored unsynced
// durable, before a transaction records them.
func (db *DB) syncBackendNames() error {
	if p, ok := db.backend.(content.NameSyncer); ok {
		return p.SyncNames()
	}
	return nil
}

// FlushDeferred implements content.DeferredPutter.
func (s contentStore) FlushDeferred(ctx context.Context) error {
	return s.db.writePending(ctx)
}

// commitOptions applies a commit's (or a Put's) options and checks the
// labels they give.
func commitOptions(opts []content.CommitOpt) (content.CommitOpts, error) {
	var co content.CommitOpts
	for _, o := range opts {
		if err := o(&co); err != nil {
			return co, err
		}
	}
	return co, labels.ValidateAll(co.Labels)
}

// recordBlob records the blob dgst of size in the namespace of t, held by
// lease when one is given; exists reports a record that was there already
// (the lease holds it then too).
func recordBlob(t *nsTx, db *DB, lease string, dgst digest.Digest, size int64, lbls map[string]string) (exists bool, err error) {
	if lease != "" {
		if err := addLeaseResource(t, lease, leases.Resource{Type: "content", ID: dgst.String()}); err != nil && !errdefs.IsNotFound(err) {
			return false, err
		}
	}
	b, err := t.createBucket(bucketContent)
	if err != nil {
		return false, err
	}
	if b.Get([]byte(dgst.String())) != nil {
		return true, nil
	}
	now := time.Now().UTC()
	r := blobRecord{Size: size, Labels: copyLabels(lbls), CreatedAt: now, UpdatedAt: now}
	if err := putRecord(b, dgst.String(), &r); err != nil {
		return false, err
	}
	t.publish(db, "/content/create", &eventstypes.ContentCreate{Digest: dgst.String(), Size: size})
	return false, nil
}

// lockRef takes the ref for one writer; a second gets Unavailable, as from
// the backend.
func (db *DB) lockRef(bref, ref string) error {
	db.writingMu.Lock()
	defer db.writingMu.Unlock()
	if since, ok := db.writing[bref]; ok {
		return fmt.Errorf("ref %s locked for %s (since %s): %w", ref, time.Since(since).Round(time.Millisecond), since.Format(time.RFC3339), errdefs.ErrUnavailable)
	}
	db.writing[bref] = time.Now()
	return nil
}

// isWriting reports whether a writer of this process holds bref.
func (db *DB) isWriting(bref string) bool {
	db.writingMu.Lock()
	defer db.writingMu.Unlock()
	_, ok := db.writing[bref]
	return ok
}

func (db *DB) unlockRef(bref string) {
	db.writingMu.Lock()
	delete(db.writing, bref)
	db.writingMu.Unlock()
}

func (s contentStore) writer(ctx context.Context, ns string, wo content.WriterOpts) (content.Writer, error) {
	lease, hasLease := leases.FromContext(ctx)
	created := false // whether this call recorded the ingest
	err := s.db.update(ctx, func(t *nsTx) error {
		if hasLease {
			if err := addLeaseResource(t, lease, leases.Resource{Type: "ingests", ID: wo.Ref}); err != nil {
				return err
			}
		}
		if wo.Desc.Digest != "" {
			if cb := t.bucket(bucketContent); cb != nil && cb.Get([]byte(wo.Desc.Digest.String())) != nil {
				if hasLease {
					if err := addLeaseResource(t, lease, leases.Resource{Type: "content", ID: wo.Desc.Digest.String()}); err != nil {
						return err
					}
				}
				return alreadyExists("content %s", wo.Desc.Digest)
			}
		}
		b, err := t.createBucket(bucketIngests)
		if err != nil {
			return err
		}
		var r ingestRecord
		found, err := getRecord(b, wo.Ref, &r)
		if err != nil {
			return err
		}
		created = !found
		if wo.Desc.Digest != "" {
			r.Expected = wo.Desc.Digest
		}
		if wo.Desc.Size > 0 {
			r.Total = wo.Desc.Size
		}
		r.Leased = r.Leased || hasLease
		return putRecord(b, wo.Ref, &r)
	})
	if err != nil {
		return nil, err
	}
	// The backend is not told the digest: it would refuse a blob that
	// exists in another namespace, which this namespace must still write.
	bw, err := s.db.backend.Writer(ctx, content.WithRef(backendRef(ns, wo.Ref)), content.WithDescriptor(ocispec.Descriptor{Size: wo.Desc.Size}))
	if err != nil {
		if created {
			// An ingest that never started (the disk was full, say) must
			// not stay behind as a record no ingest matches, nor as the
			// start of one that no record names.
			s.db.updateFreeing(ctx, func(t *nsTx) error {
				if b := t.bucket(bucketIngests); b != nil {
					return b.Delete([]byte(wo.Ref))
				}
				return nil
			})
			if aerr := s.db.backend.Abort(ctx, backendRef(ns, wo.Ref)); aerr != nil && !errdefs.IsNotFound(aerr) {
				s.db.log.Warn("remove ingest that failed to open", "namespace", ns, "ref", wo.Ref, "error", aerr)
			}
		}
		return nil, err
	}
	// An open writer uses its lease, however long between its writes.
	return &nsWriter{Writer: bw, db: s.db, ns: ns, ref: wo.Ref, lease: lease, expected: wo.Desc.Digest, release: s.db.HoldLease(ctx)}, nil
}

// Close releases the ref; the ingest stays to be resumed.
func (w *nsWriter) Close() error {
	err := w.Writer.Close()
	w.unlock.Do(w.done)
	return err
}

// done ends the writer's hold on its ref and its lease.
func (w *nsWriter) done() {
	w.db.unlockRef(backendRef(w.ns, w.ref))
	w.release()
}

// nsWriter records the blob in its namespace when the backend commits it.
type nsWriter struct {
	content.Writer
	db       *DB
	ns, ref  string
	lease    string
	expected digest.Digest
	unlock   sync.Once
	release  func()
}

func (w *nsWriter) Status() (content.Status, error) {
	st, err := w.Writer.Status()
	st.Ref = w.ref
	if w.expected != "" {
		st.Expected = w.expected
	}
	return st, err
}

func (w *nsWriter) Commit(ctx context.Context, size int64, expected digest.Digest, opts ...content.CommitOpt) error {
	co, err := commitOptions(opts)
	if err != nil {
		return err
	}
	if expected == "" {
		expected = w.expected
	}
	// The ref stays locked until the record exists (see DB.writing).
	defer w.unlock.Do(w.done)
	// Hold off the collector from the moment the blob exists on disk
	// until this namespace records it.
	w.db.gcMu.RLock()
	defer w.db.gcMu.RUnlock()
	dgst := w.Writer.Digest()
	if err := w.Writer.Commit(ctx, size, expected); err != nil && !errdefs.IsAlreadyExists(err) {
		return err
	}
	// The blob is in place and this namespace does not record it yet. A
	// crash here leaves a blob no record names, which the next collection
	// removes, and an ingest record without an ingest, which the next
	// collection drops; a new pull writes the blob again.
	crashpoint.Hit(crashpoint.ContentCommit)
	if expected == "" {
		expected = dgst
	}
	actualSize := size
	if actualSize <= 0 {
		st, err := w.db.backend.Info(ctx, expected)
		if err != nil {
			return err
		}
		actualSize = st.Size
	}
	ctx = namespaces.WithNamespace(ctx, w.ns)
	var exists bool
	err = w.db.update(ctx, func(t *nsTx) error {
		exists = false
		if ib := t.bucket(bucketIngests); ib != nil {
			if err := ib.Delete([]byte(w.ref)); err != nil {
				return err
			}
		}
		if w.lease != "" {
			_ = deleteLeaseResource(t, w.lease, leases.Resource{Type: "ingests", ID: w.ref})
		}
		// An existing record still lets the ingest record's removal commit.
		var err error
		exists, err = recordBlob(t, w.db, w.lease, expected, actualSize, co.Labels)
		return err
	})
	if err != nil {
		return err
	}
	if exists {
		return alreadyExists("content %s", expected)
	}
	return nil
}
