package metadata

import (
	"context"
	"maps"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/namespaces"
)

// recordBehind is how long a blob stored by PutDeferred may wait for its
// record when nothing else writes it: a pull writes its blobs' records when
// its fetches end, so only a pull of minutes leaves records this long, and
// a crash then costs it at most this much of its downloads.
const recordBehind = time.Second

// pendingBlobs are blobs in the backend whose records are written behind
// (contentStore.PutDeferred). Until then Info and ReaderAt of their
// namespace see them and the collector spares them; every other
// operation on the namespace's content records writes them first.
//
// An entry is added under gcMu held for reading, after the blob is in the
// backend, and removed under it once its record has committed, so the
// collector, which holds gcMu for writing, sees each blob on disk recorded
// or pending, never neither.
type pendingBlobs struct {
	mu     sync.Mutex
	m      map[infoKey]*pendingBlob
	timer  *time.Timer
	closed bool // the store is closing: no more entries, no timer
}

// pendingBlob is what a blob's record will hold.
type pendingBlob struct {
	lease  string
	size   int64
	labels map[string]string
	at     time.Time
}

// add makes key pending unless it is already or the store is closing;
// flush is called after recordBehind unless a flush comes first.
func (p *pendingBlobs) add(key infoKey, b *pendingBlob, flush func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.m[key]; ok || p.closed {
		return false
	}
	if p.m == nil {
		p.m = map[infoKey]*pendingBlob{}
	}
	p.m[key] = b
	if p.timer == nil {
		p.timer = time.AfterFunc(recordBehind, flush)
	}
	return true
}

// info returns the info key's record will have, if it is pending.
func (p *pendingBlobs) info(key infoKey) (content.Info, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.m[key]
	if !ok {
		return content.Info{}, false
	}
	return content.Info{Digest: key.dgst, Size: b.size, Labels: maps.Clone(b.labels), CreatedAt: b.at, UpdatedAt: b.at}, true
}

// in returns the pending blobs of namespace ns ("" for all).
func (p *pendingBlobs) in(ns string) map[infoKey]*pendingBlob {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out map[infoKey]*pendingBlob
	for k, b := range p.m {
		if ns == "" || k.ns == ns {
			if out == nil {
				out = map[infoKey]*pendingBlob{}
			}
			out[k] = b
		}
	}
	return out
}

// digests adds the digests of every pending blob to set.
func (p *pendingBlobs) digests(set map[digest.Digest]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k := range p.m {
		set[k.dgst] = true
	}
}

// done drops the entries of recorded that are still those pending.
func (p *pendingBlobs) done(recorded map[infoKey]*pendingBlob) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, b := range recorded {
		if p.m[k] == b {
			delete(p.m, k)
		}
	}
	if len(p.m) == 0 && p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
}

// writePending writes the records of the blobs pending in the namespace
// of ctx, in one transaction; nothing when there are none.
func (db *DB) writePending(ctx context.Context) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	return db.writePendingIn(ctx, ns)
}

func (db *DB) writePendingIn(ctx context.Context, ns string) error {
	blobs := db.pending.in(ns)
	if len(blobs) == 0 {
		return nil
	}
	// The blobs' names first: a record must not outlive its blob in a
	// crash.
	if err := db.syncBackendNames(); err != nil {
		return err
	}
	db.gcMu.RLock()
	defer db.gcMu.RUnlock()
	err := db.update(namespaces.WithNamespace(ctx, ns), func(t *nsTx) error {
		for k, b := range blobs {
			if _, err := recordBlob(t, db, b.lease, k.dgst, b.size, b.labels); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	db.pending.done(blobs)
	return nil
}

// writeAllPending writes the records of every pending blob, one
// transaction per namespace: when they have waited recordBehind, and when
// the store closes.
func (db *DB) writeAllPending() {
	namespacesOf := map[string]bool{}
	for k := range db.pending.in("") {
		namespacesOf[k.ns] = true
	}
	for ns := range namespacesOf {
		if err := db.writePendingIn(context.Background(), ns); err != nil {
			db.log.Warn("write the records of blobs stored behind them", "namespace", ns, "error", err)
		}
	}
	db.pending.mu.Lock()
	defer db.pending.mu.Unlock()
	if db.pending.timer != nil {
		db.pending.timer.Stop()
		db.pending.timer = nil
	}
	if len(db.pending.m) > 0 && !db.pending.closed {
		// Some failed, or came meanwhile: try again later.
		db.pending.timer = time.AfterFunc(recordBehind, db.writeAllPending)
	}
}

// closePending writes the records of every pending blob as the store
// closes, and takes no more.
func (db *DB) closePending() {
	db.pending.mu.Lock()
	db.pending.closed = true
	db.pending.mu.Unlock()
	db.writeAllPending()
}
