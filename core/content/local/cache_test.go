package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestSmallBlobsAreServedFromMemoryUntilDeleted(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	small := []byte(`{"schemaVersion":2}`)
	d := commit(t, s, "small", small)
	for i := 0; i < 2; i++ { // a miss that fills the cache, then a hit
		if got := readAll(t, s, d); !bytes.Equal(got, small) {
			t.Fatalf("read %d: %q", i, got)
		}
	}
	if _, ok := s.small.get(d); !ok {
		t.Fatal("a small blob that was read is not cached")
	}
	if err := s.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReaderAt(ctx, ocispec.Descriptor{Digest: d}); !errdefs.IsNotFound(err) {
		t.Fatalf("read after delete: %v, want not found", err)
	}
	large := bytes.Repeat([]byte("x"), smallBlobMax+1)
	dl := commit(t, s, "large", large)
	if got := readAll(t, s, dl); !bytes.Equal(got, large) {
		t.Fatal("large blob read back wrong")
	}
	if _, ok := s.small.get(dl); ok {
		t.Fatal("a blob over smallBlobMax was cached")
	}
}

func TestBlobCacheStaysWithinBudget(t *testing.T) {
	var c blobCache
	blob := make([]byte, smallBlobMax)
	n := 3 * smallBlobBudget / smallBlobMax
	var first, last digest.Digest
	for i := 0; i < n; i++ {
		d := digest.FromString(fmt.Sprint(i))
		if i == 0 {
			first = d
		}
		last = d
		c.put(d, blob)
		if i%7 == 0 {
			c.remove(d)
		}
	}
	if c.used > smallBlobBudget {
		t.Fatalf("cache holds %d bytes, budget %d", c.used, smallBlobBudget)
	}
	if _, ok := c.get(first); ok {
		t.Fatal("the oldest entry was not evicted")
	}
	if _, ok := c.get(last); !ok {
		t.Fatal("the newest entry is missing")
	}
	if len(c.order) > 2*len(c.m)+64 {
		t.Fatalf("eviction order grew to %d names for %d entries", len(c.order), len(c.m))
	}
	if _, err := newMemReaderAt(nil).ReadAt(make([]byte, 1), 0); !errors.Is(err, io.EOF) {
		t.Fatalf("read past the end of a cached blob: %v", err)
	}
}
