package local

import (
	"fmt"
	"io"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// Small blobs (manifests, indexes, image configs) are read far more often
// than large ones: `ctr images ls` reads every image's manifest twice and its
// config once. Keeping them in memory saves the open, stat, read and close of
// each read. Blobs never change once committed, so the only invalidation is
// Delete.
//
// A read fills the cache after it read the file, so a Delete can fall
// between the two: the reader opened the blob before the unlink and puts
// its bytes back after the Delete dropped them. Each fill therefore
// carries the cache's removal count from before its open (ticket) and is
// refused if any removal happened since; Delete unlinks the file before it
// counts its removal, so a reader that took its ticket later can no longer
// open the file.
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
	// removals counts remove calls; see ticket.
	removals uint64
}

// ticket returns what a reader passes to put: the removal count before it
// opens the file.
func (c *blobCache) ticket() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.removals
}

func (c *blobCache) get(d digest.Digest) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.m[d]
	return b, ok
}

// put keeps b as the bytes of d, unless a removal happened since ticket
// was taken: that removal may have been of d, which must not come back.
// Any removal refuses the fill (one count, not one per digest, so the
// bookkeeping stays constant in size); the next read fills it then.
func (c *blobCache) put(d digest.Digest, b []byte, ticket uint64) {
	if len(b) > smallBlobMax {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removals != ticket {
		return
	}
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

// remove drops d, and refuses the fills of reads that began before.
func (c *blobCache) remove(d digest.Digest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removals++
	if b, ok := c.m[d]; ok {
		c.used -= len(b)
		delete(c.m, d)
	}
}

// memReaderAt serves a cached blob, without a bytes.Reader around it: a
// ReadAt needs no position.
type memReaderAt struct{ b []byte }

func newMemReaderAt(b []byte) memReaderAt { return memReaderAt{b} }

// ReadAt copies the blob's bytes at off into p.
func (r memReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read at offset %d: %w", off, errdefs.ErrInvalidArgument)
	}
	if off >= int64(len(r.b)) {
		return 0, io.EOF
	}
	n := copy(p, r.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Size is the blob's size.
func (r memReaderAt) Size() int64 { return int64(len(r.b)) }

func (memReaderAt) Close() error { return nil }

// Bytes returns the whole blob without copying, for callers that only
// read it (content.BytesReaderAt).
func (r memReaderAt) Bytes() []byte { return r.b }
