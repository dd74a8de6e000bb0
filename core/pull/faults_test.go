package pull

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/remotes"
	"github.com/hullrt/hull/internal/testimage"
)

// guard is how long a test waits for a pull that should end much sooner:
// past it, the pull is taken for hung.
const guard = 20 * time.Second

// pullResult runs Pull on its own goroutine and returns its error and how
// long it took, failing the test if it does not end within guard.
func pullResult(t *testing.T, ctx context.Context, ref string, o Options) (error, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := Pull(ctx, ref, o)
		done <- err
	}()
	select {
	case err := <-done:
		return err, time.Since(start)
	case <-time.After(guard):
		cancel()
		<-done
		t.Fatalf("pull of %s did not end within %s", ref, guard)
		return nil, 0
	}
}

// downStore is a content store whose daemon is gone: every write and every
// question about an ingest is answered Unavailable, as the client library
// answers once it has given up waiting for hulld.
type downStore struct {
	content.Store
	err               error
	writers, statuses int
	mu                sync.Mutex
}

func (s *downStore) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	s.mu.Lock()
	s.writers++
	s.mu.Unlock()
	return nil, s.err
}

func (s *downStore) Status(ctx context.Context, ref string) (content.Status, error) {
	s.mu.Lock()
	s.statuses++
	s.mu.Unlock()
	return content.Status{}, s.err
}

// downPutter is a downStore that can Put, which it answers as Writer.
type downPutter struct{ *downStore }

func (s downPutter) Put(ctx context.Context, desc ocispec.Descriptor, data []byte, opts ...content.CommitOpt) error {
	_, err := s.Writer(ctx)
	return err
}

// A store that answers Unavailable is retried for StoreTimeout, then its
// error is the pull's: whether the blobs go through ingests or, small, in
// one Put.
func TestPullGivesUpOnAStoreThatStaysUnavailable(t *testing.T) {
	for _, canPut := range []bool{false, true} {
		t.Run(fmt.Sprintf("put=%v", canPut), func(t *testing.T) { testStoreStaysUnavailable(t, canPut) })
	}
}

func testStoreStaysUnavailable(t *testing.T, canPut bool) {
	db, ctx := setup(t)
	img := testimage.New([]string{"/x"}, []testimage.File{{Name: "f", Data: []byte("data")}})
	reg := &memRegistry{blobs: map[digest.Digest][]byte{}, root: img.Manifest.Desc}
	for _, b := range img.Blobs() {
		reg.add(b)
	}
	down := fmt.Errorf("hulld is not answering on /run/test.sock (connection refused): is it running? see systemctl status hull: %w", errdefs.ErrUnavailable)
	store := &downStore{Store: db.Content(), err: down}
	o := opts(db, reg)
	o.Content = store
	if canPut {
		o.Content = downPutter{store}
	}
	o.StoreTimeout = 300 * time.Millisecond
	var mu sync.Mutex
	var retrying []error
	o.Progress = func(p Progress) {
		if p.Status == StatusRetrying {
			mu.Lock()
			retrying = append(retrying, p.Err)
			mu.Unlock()
		}
	}
	err, took := pullResult(t, ctx, "registry.test/down:1", o)
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "hulld is not answering on /run/test.sock") {
		t.Fatalf("pull from a store that is down: %v, want its Unavailable error", err)
	}
	if strings.Contains(err.Error(), "context canceled") {
		t.Errorf("error %q tells of the cancellations, not the failure", err)
	}
	if took < o.StoreTimeout {
		t.Errorf("gave up after %s, before the %s it should retry for", took, o.StoreTimeout)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(retrying) == 0 || !errors.Is(retrying[0], down) {
		t.Errorf("progress did not say why it retried: %v", retrying)
	}
	if store.writers < 2 {
		t.Errorf("the store was tried %d times, want retries", store.writers)
	}
}

func TestPullWithoutStoreRetriesFailsAtOnce(t *testing.T) {
	db, ctx := setup(t)
	img := testimage.New([]string{"/x"}, []testimage.File{{Name: "f", Data: []byte("data")}})
	reg := &memRegistry{blobs: map[digest.Digest][]byte{}, root: img.Manifest.Desc}
	for _, b := range img.Blobs() {
		reg.add(b)
	}
	store := &downStore{Store: db.Content(), err: fmt.Errorf("gone: %w", errdefs.ErrUnavailable)}
	o := opts(db, reg)
	o.Content = store
	o.StoreTimeout = -1
	err, _ := pullResult(t, ctx, "registry.test/down:1", o)
	if !errdefs.IsUnavailable(err) {
		t.Fatalf("pull: %v, want Unavailable", err)
	}
	// One try for each of the two blobs (config and layer) at most.
	if store.writers > 2 {
		t.Errorf("the store was tried %d times for 2 blobs, want no retries", store.writers)
	}
}

// lockingStore counts the status questions about an ingest, for a holder
// that waits for them.
type lockingStore struct {
	content.Store
	content.Putter
	asked chan string
}

func (s *lockingStore) Status(ctx context.Context, ref string) (content.Status, error) {
	st, err := s.Store.Status(ctx, ref)
	if err == nil {
		select {
		case s.asked <- ref:
		default:
		}
	}
	return st, err
}

// A pull that finds the ingest of a layer locked by another writer waits
// for it, however long: the layer is larger than content.MaxPutSize, so
// the pull would write it through that ingest even into a store that can
// Put.
func TestPullWaitsForTheHolderOfALockedIngest(t *testing.T) {
	db, ctx := setup(t)
	data := make([]byte, content.MaxPutSize+4<<10)
	rand.Read(data) // incompressible: the layer stays above MaxPutSize
	img := testimage.New([]string{"/x"}, []testimage.File{{Name: "f", Data: data}})
	reg := &memRegistry{blobs: map[digest.Digest][]byte{}, root: img.Manifest.Desc}
	for _, b := range img.Blobs() {
		reg.add(b)
	}
	layer := img.Layers[0]
	ref := "pull-" + layer.Desc.Digest.String()

	// Another pull of the layer holds its ingest, half written.
	holder, err := db.Content().Writer(ctx, content.WithRef(ref), content.WithDescriptor(layer.Desc))
	if err != nil {
		t.Fatal(err)
	}
	half := layer.Desc.Size / 2
	if _, err := holder.Write(layer.Data[:half]); err != nil {
		t.Fatal(err)
	}
	store := &lockingStore{Store: db.Content(), Putter: db.Content().(content.Putter), asked: make(chan string, 1)}
	o := opts(db, reg)
	o.Content = store
	o.StoreTimeout = 100 * time.Millisecond
	var mu sync.Mutex
	var locked []int64
	o.Progress = func(p Progress) {
		if p.Status == StatusLocked && p.Desc.Digest == layer.Desc.Digest {
			mu.Lock()
			locked = append(locked, p.Offset)
			mu.Unlock()
		}
	}
	// The holder finishes only when the pull has waited for it well past
	// StoreTimeout: a locked ingest is not a store that is down.
	go func() {
		start := time.Now()
		for range store.asked {
			if time.Since(start) > 5*o.StoreTimeout {
				break
			}
		}
		holder.Write(layer.Data[half:])
		holder.Commit(ctx, layer.Desc.Size, layer.Desc.Digest)
		holder.Close()
	}()
	err, took := pullResult(t, ctx, "registry.test/locked:1", o)
	close(store.asked)
	if err != nil {
		t.Fatalf("pull that waited for a locked ingest: %v", err)
	}
	if took < 5*o.StoreTimeout {
		t.Errorf("pull ended after %s, before the holder let go", took)
	}
	if n := reg.count(layer.Desc.Digest); n != 0 {
		t.Errorf("the layer was fetched %d times though another pull was storing it", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(locked) == 0 || locked[0] != half {
		t.Errorf("progress reported the lock as %v, want the holder's offset %d", locked, half)
	}
}

// stallRegistry fails one blob's fetch once another's is under way, and
// holds that other one until its context is cancelled.
type stallRegistry struct {
	*memRegistry
	fail, stall digest.Digest
	failure     error
	stalled     chan struct{} // closed when the stalled fetch has begun
	cancelled   chan struct{} // closed when it was cancelled
}

func (r *stallRegistry) Fetcher(ctx context.Context, ref string) (remotes.Fetcher, error) {
	return r, nil
}

func (r *stallRegistry) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	switch desc.Digest {
	case r.fail:
		select {
		case <-r.stalled:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return nil, r.failure
	case r.stall:
		close(r.stalled)
		<-ctx.Done()
		close(r.cancelled)
		return nil, fmt.Errorf("fetch %s: %w", desc.Digest, ctx.Err())
	}
	return r.memRegistry.Fetch(ctx, desc)
}

func TestFirstFailedBlobStopsTheOthers(t *testing.T) {
	db, ctx := setup(t)
	img := testimage.New([]string{"/x"},
		[]testimage.File{{Name: "a", Data: []byte("layer a")}},
		[]testimage.File{{Name: "b", Data: []byte("layer b")}})
	mem := &memRegistry{blobs: map[digest.Digest][]byte{}, root: img.Manifest.Desc}
	for _, b := range img.Blobs() {
		mem.add(b)
	}
	failure := fmt.Errorf("layer a: registry says 500: %w", errdefs.ErrUnknown)
	reg := &stallRegistry{memRegistry: mem, fail: img.Layers[0].Desc.Digest, stall: img.Layers[1].Desc.Digest,
		failure: failure, stalled: make(chan struct{}), cancelled: make(chan struct{})}
	o := opts(db, reg)
	o.MaxConcurrentDownloads = 4
	err, _ := pullResult(t, ctx, "registry.test/broken:1", o)
	if !errors.Is(err, failure) {
		t.Fatalf("pull: %v, want the first failure %v", err, failure)
	}
	if strings.Contains(err.Error(), "context canceled") {
		t.Errorf("error %q tells of the cancellations it caused", err)
	}
	select {
	case <-reg.cancelled:
	default:
		t.Error("the other layer's download was not cancelled")
	}
	if _, err := db.Images().Get(ctx, "registry.test/broken:1"); !errdefs.IsNotFound(err) {
		t.Errorf("an image was recorded for a failed pull: %v", err)
	}
}
