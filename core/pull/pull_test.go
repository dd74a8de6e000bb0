package pull

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content/local"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/metadata"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/core/remotes"
	"github.com/hullrt/hull/internal/testimage"
)

// memRegistry serves blobs from memory, counting fetches, and can slow
// them down to make concurrent pulls overlap.
type memRegistry struct {
	blobs   map[digest.Digest][]byte
	root    ocispec.Descriptor
	fetches sync.Map // digest -> *atomic.Int32
	delay   time.Duration
	corrupt digest.Digest
}

func (m *memRegistry) add(b testimage.Blob) { m.blobs[b.Desc.Digest] = b.Data }

func (m *memRegistry) Resolve(ctx context.Context, ref string) (string, ocispec.Descriptor, error) {
	return ref, m.root, nil
}
func (m *memRegistry) Fetcher(ctx context.Context, ref string) (remotes.Fetcher, error) {
	return m, nil
}
func (m *memRegistry) Pusher(ctx context.Context, ref string) (remotes.Pusher, error) {
	return nil, errdefs.ErrNotImplemented
}

func (m *memRegistry) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	n, _ := m.fetches.LoadOrStore(desc.Digest, new(atomic.Int32))
	n.(*atomic.Int32).Add(1)
	data, ok := m.blobs[desc.Digest]
	if !ok {
		return nil, fmt.Errorf("%s: %w", desc.Digest, errdefs.ErrNotFound)
	}
	if desc.Digest == m.corrupt {
		data = append([]byte("X"), data[1:]...)
	}
	time.Sleep(m.delay)
	return io.NopCloser(bytes.NewReader(data)), nil
}

func (m *memRegistry) count(d digest.Digest) int32 {
	n, ok := m.fetches.Load(d)
	if !ok {
		return 0
	}
	return n.(*atomic.Int32).Load()
}

func setup(t *testing.T) (*metadata.DB, context.Context) {
	dir := t.TempDir()
	backend, err := local.NewStore(dir + "/content")
	if err != nil {
		t.Fatal(err)
	}
	db, err := metadata.Open(dir+"/meta.db", backend, metadata.Options{GCDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, namespaces.WithNamespace(context.Background(), "pull")
}

func opts(db *metadata.DB, r remotes.Resolver) Options {
	return Options{Resolver: r, Content: db.Content(), Images: db.Images(), Leases: db.Leases()}
}

func TestPullIndexPicksHostPlatform(t *testing.T) {
	db, ctx := setup(t)
	host := testimage.NewFor(platforms.DefaultSpec(), []string{"/bin/sh"}, []testimage.File{{Name: "host", Data: []byte("h")}})
	other := testimage.NewFor(ocispec.Platform{OS: "linux", Architecture: "riscv64"}, []string{"/bin/sh"}, []testimage.File{{Name: "other", Data: []byte("o")}})
	idx := testimage.NewIndex(other, host)
	reg := &memRegistry{blobs: map[digest.Digest][]byte{}, root: idx.Index.Desc}
	for _, b := range idx.Blobs() {
		reg.add(b)
	}
	var mu sync.Mutex
	seen := map[Status]int{}
	o := opts(db, reg)
	o.Progress = func(p Progress) { mu.Lock(); seen[p.Status]++; mu.Unlock() }
	img, err := Pull(ctx, "registry.test/app:1", o)
	if err != nil {
		t.Fatal(err)
	}
	if img.Target.Digest != idx.Index.Desc.Digest {
		t.Fatalf("image target %s, want the index %s", img.Target.Digest, idx.Index.Desc.Digest)
	}
	for _, b := range host.Blobs() {
		info, err := db.Content().Info(ctx, b.Desc.Digest)
		if err != nil {
			t.Fatalf("host blob %s missing: %v", b.Desc.Digest, err)
		}
		if info.Labels["containerd.io/distribution.source.registry.test"] != "app" {
			t.Errorf("blob %s lacks its source label: %v", b.Desc.Digest, info.Labels)
		}
	}
	if _, err := db.Content().Info(ctx, other.Manifest.Desc.Digest); !errdefs.IsNotFound(err) {
		t.Fatalf("the other platform's manifest was pulled: %v", err)
	}
	mi, _ := db.Content().Info(ctx, host.Manifest.Desc.Digest)
	if mi.Labels["containerd.io/gc.ref.content.config"] != host.Config.Desc.Digest.String() || mi.Labels["containerd.io/gc.ref.content.l.0"] != host.Layers[0].Desc.Digest.String() {
		t.Fatalf("manifest gc labels: %v", mi.Labels)
	}
	ii, _ := db.Content().Info(ctx, idx.Index.Desc.Digest)
	if ii.Labels["containerd.io/gc.ref.content.m.1"] != host.Manifest.Desc.Digest.String() {
		t.Fatalf("index gc labels: %v", ii.Labels)
	}
	if seen[StatusDone] < 2 || seen[StatusWaiting] < 2 {
		t.Fatalf("progress: %v", seen)
	}
	// The pull's lease is gone, and gc keeps the tree the image holds.
	if ls, _ := db.Leases().List(ctx); len(ls) != 0 {
		t.Fatalf("leases left: %v", ls)
	}
	if _, err := db.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	for _, b := range host.Blobs() {
		if _, err := db.Content().Info(ctx, b.Desc.Digest); err != nil {
			t.Fatalf("gc removed %s of a pulled image", b.Desc.Digest)
		}
	}
	// A second pull finds everything present.
	seen = map[Status]int{}
	if _, err := Pull(ctx, "registry.test/app:1", o); err != nil {
		t.Fatal(err)
	}
	if seen[StatusDownloading] != 0 || seen[StatusExists] < 2 {
		t.Fatalf("second pull progress: %v", seen)
	}
}

func TestPullAllPlatforms(t *testing.T) {
	db, ctx := setup(t)
	a := testimage.NewFor(ocispec.Platform{OS: "linux", Architecture: "amd64"}, nil, []testimage.File{{Name: "a"}})
	b := testimage.NewFor(ocispec.Platform{OS: "linux", Architecture: "arm64"}, nil, []testimage.File{{Name: "b"}})
	idx := testimage.NewIndex(a, b)
	reg := &memRegistry{blobs: map[digest.Digest][]byte{}, root: idx.Index.Desc}
	for _, bl := range idx.Blobs() {
		reg.add(bl)
	}
	o := opts(db, reg)
	o.AllPlatforms = true
	if _, err := Pull(ctx, "registry.test/multi:1", o); err != nil {
		t.Fatal(err)
	}
	for _, bl := range idx.Blobs() {
		if _, err := db.Content().Info(ctx, bl.Desc.Digest); err != nil {
			t.Fatalf("%s missing after an all-platforms pull", bl.Desc.Digest)
		}
	}
}

func TestConcurrentPullsShareDownloads(t *testing.T) {
	db, ctx := setup(t)
	img := testimage.New([]string{"/x"}, []testimage.File{{Name: "big", Data: bytes.Repeat([]byte("x"), 1<<20)}})
	reg := &memRegistry{blobs: map[digest.Digest][]byte{}, root: img.Manifest.Desc, delay: 100 * time.Millisecond}
	for _, b := range img.Blobs() {
		reg.add(b)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := Pull(ctx, "registry.test/one:1", opts(db, reg))
			if err != nil && !errdefs.IsAlreadyExists(err) {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := reg.count(img.Layers[0].Desc.Digest); n != 1 {
		t.Fatalf("the layer was fetched %d times by 4 concurrent pulls, want 1", n)
	}
}

func TestPullRejectsCorruptBlob(t *testing.T) {
	db, ctx := setup(t)
	img := testimage.New([]string{"/x"}, []testimage.File{{Name: "f", Data: []byte("data")}})
	reg := &memRegistry{blobs: map[digest.Digest][]byte{}, root: img.Manifest.Desc, corrupt: img.Layers[0].Desc.Digest}
	for _, b := range img.Blobs() {
		reg.add(b)
	}
	_, err := Pull(ctx, "registry.test/bad:1", opts(db, reg))
	if err == nil || !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("pull of a corrupt layer: %v", err)
	}
	if _, err := db.Content().Info(ctx, img.Layers[0].Desc.Digest); !errdefs.IsNotFound(err) {
		t.Fatal("a corrupt blob is stored")
	}
	if _, err := db.Images().Get(ctx, "registry.test/bad:1"); !errdefs.IsNotFound(err) {
		t.Fatal("an image was recorded for a failed pull")
	}
	_ = images.IsIndex
}
