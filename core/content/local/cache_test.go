package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
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
		c.put(d, blob, c.ticket())
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

// A Delete that falls between a read's open of a small blob and its cache
// fill must not leave the bytes cached: later reads must say NotFound.
func TestDeleteDuringReadDoesNotResurrectTheBlob(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	blob := []byte(`{"config":{}}`)
	d := commit(t, s, "small", blob)
	deleted := false
	s.beforeFill = func(got digest.Digest) {
		if got == d && !deleted {
			deleted = true
			if err := s.Delete(ctx, d); err != nil {
				t.Errorf("Delete inside the read: %v", err)
			}
		}
	}
	// The read itself opened the file before the Delete: it may return
	// the bytes, as a read that completed first would.
	if got := readAll(t, s, d); !bytes.Equal(got, blob) {
		t.Fatalf("read that raced the delete: %q", got)
	}
	if !deleted {
		t.Fatal("the hook never ran: the read did not take the fill path")
	}
	if ra, err := s.ReaderAt(ctx, ocispec.Descriptor{Digest: d}); !errdefs.IsNotFound(err) {
		if ra != nil {
			ra.Close()
		}
		t.Fatalf("read after the delete: %v, want not found", err)
	}
}

// Readers hammering a blob while it is deleted: once Delete has returned
// and the readers have stopped, the blob is gone for every later read.
// Run with -race too: the cache and the store are shared by all of them.
func TestDeleteRacingReadersStress(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	rounds := 200
	if testing.Short() {
		rounds = 20
	}
	for i := 0; i < rounds; i++ {
		blob := []byte(fmt.Sprintf(`{"round":%d}`, i))
		d := commit(t, s, fmt.Sprintf("r%d", i), blob)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for r := 0; r < 4; r++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					ra, err := s.ReaderAt(ctx, ocispec.Descriptor{Digest: d})
					if err != nil {
						if !errdefs.IsNotFound(err) {
							t.Errorf("round %d: read: %v", i, err)
						}
						continue
					}
					ra.Close()
				}
			}()
		}
		runtime.Gosched()
		if err := s.Delete(ctx, d); err != nil {
			t.Fatalf("round %d: delete: %v", i, err)
		}
		close(stop)
		wg.Wait()
		if ra, err := s.ReaderAt(ctx, ocispec.Descriptor{Digest: d}); !errdefs.IsNotFound(err) {
			if ra != nil {
				ra.Close()
			}
			t.Fatalf("round %d: read after delete: %v, want not found", i, err)
		}
	}
}
