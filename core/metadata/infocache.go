package metadata

import (
	"maps"
	"sync"

	digest "github.com/opencontainers/go-digest"

	"github.com/hullrt/hull/core/content"
)

// infoCacheMax bounds the content records kept; a full cache starts over.
const infoCacheMax = 8192

// infoCache keeps content records that reads found, for as long as no write
// transaction has committed since (DB.gen): `ctr images ls` asks for the
// same manifests and configs over and over, and each answer cost a bbolt
// read transaction and three bucket lookups. Any write at all invalidates
// everything, which keeps the rule simple enough to be obviously right;
// writes are rare next to these reads.
type infoCache struct {
	mu  sync.Mutex
	gen uint64 // the generation the entries were read at
	m   map[infoKey]content.Info
}

type infoKey struct {
	ns   string
	dgst digest.Digest
}

// get returns the record of key read at generation gen, with labels of
// its own for the caller to change.
func (c *infoCache) get(gen uint64, key infoKey) (content.Info, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return content.Info{}, false
	}
	info, ok := c.m[key]
	if ok && info.Labels != nil {
		info.Labels = maps.Clone(info.Labels)
	}
	return info, ok
}

// has reports whether the record of key, read at generation gen, is kept;
// it copies nothing.
func (c *infoCache) has(gen uint64, key infoKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.m[key]
	return ok && c.gen == gen
}

// put keeps info, read at generation gen; a read older than the cache's
// entries is dropped, a newer one replaces them.
func (c *infoCache) put(gen uint64, key infoKey, info content.Info) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case gen < c.gen:
		return
	case gen > c.gen || c.m == nil || len(c.m) >= infoCacheMax:
		c.gen, c.m = gen, make(map[infoKey]content.Info)
	}
	if info.Labels != nil {
		info.Labels = maps.Clone(info.Labels)
	}
	c.m[key] = info
}
