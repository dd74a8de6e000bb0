package local

import (
	"bytes"
	"sync"

	"github.com/opencontainers/go-digest"
)

// Small blobs (manifests, indexes, image configs) are read far more often
// than large ones: `ctr images ls` reads every image's manifest twice and its
// config once. Keeping them in memory saves the open, stat, read and close of
// each read. Blobs never change once committed, so the only invalidation is
// Delete.
const (
	// smallBlobMax is the largest blob kept; manifests and configs are a
	// few kilobytes, layers are not cached.
	smallBlobMax = 64 << 10
	// smallBlobBudget bounds the bytes kept in all.
	smallBlobBudget = 4 << 20
)

// blobCache is a bounded map of small blobs' bytes, evicting the oldest
// entry first: the working set (an image store's manifests and configs) is
// small, so recency bookkeeping would cost more than it saves.
type blobCache struct {
	mu    sync.Mutex
	used  int
	m     map[digest.Digest][]byte
	order []digest.Digest // insertion order; may name entries since deleted
}

func (c *blobCache) get(d digest.Digest) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.m[d]
	return b, ok
}

func (c *blobCache) put(d digest.Digest, b []byte) {
	if len(b) > smallBlobMax {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[digest.Digest][]byte)
	}
	if _, ok := c.m[d]; ok {
		return
	}
	for c.used+len(b) > smallBlobBudget && len(c.order) > 0 {
		old := c.order[0]
		c.order = c.order[1:]
		if ob, ok := c.m[old]; ok {
			c.used -= len(ob)
			delete(c.m, old)
		}
	}
	c.m[d] = b
	c.used += len(b)
	c.order = append(c.order, d)
	// Deleted entries leave names behind in order; drop them when they
	// outnumber the live ones, so that order stays bounded.
	if len(c.order) > 2*len(c.m)+64 {
		live := c.order[:0]
		for _, k := range c.order {
			if _, ok := c.m[k]; ok {
				live = append(live, k)
			}
		}
		c.order = live
	}
}

func (c *blobCache) remove(d digest.Digest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.m[d]; ok {
		c.used -= len(b)
		delete(c.m, d)
	}
}

// memReaderAt serves a cached blob.
type memReaderAt struct {
	*bytes.Reader
	b []byte
}

func newMemReaderAt(b []byte) memReaderAt { return memReaderAt{bytes.NewReader(b), b} }

func (memReaderAt) Close() error { return nil }

// Bytes returns the whole blob without copying, for callers that only
// read it (content.BytesReaderAt).
func (r memReaderAt) Bytes() []byte { return r.b }
