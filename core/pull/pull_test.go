package pull

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/content/local"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/leases"
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

// manifestRegistry is a memRegistry that reads the manifest while it
// resolves (remotes.ManifestResolver), counting how it was asked.
type manifestRegistry struct {
	*memRegistry
	heads, gets int
	serve       []byte // what ResolveManifest answers with
}

func (m *manifestRegistry) Resolve(ctx context.Context, ref string) (string, ocispec.Descriptor, error) {
	m.heads++
	return m.memRegistry.Resolve(ctx, ref)
}

func (m *manifestRegistry) ResolveManifest(ctx context.Context, ref string) (string, ocispec.Descriptor, []byte, error) {
	m.gets++
	return ref, m.root, m.serve, nil
}

// A pull of a name the store lacks reads the manifest in the request that
// resolves it and does not fetch it again; a pull of a name it has asks
// for the headers alone and reads the manifest from the store. A body
// that does not match what it resolved to is not taken.
func TestPullReadsTheManifestWhileResolving(t *testing.T) {
	db, ctx := setup(t)
	img := testimage.New([]string{"/bin/sh"}, []testimage.File{{Name: "a", Data: []byte("a")}})
	reg := &manifestRegistry{memRegistry: &memRegistry{blobs: map[digest.Digest][]byte{}, root: img.Manifest.Desc}, serve: img.Manifest.Data}
	for _, b := range img.Blobs() {
		reg.add(b)
	}
	o := opts(db, reg)
	if _, err := Pull(ctx, "registry.test/app:1", o); err != nil {
		t.Fatal(err)
	}
	if reg.gets != 1 || reg.heads != 0 || reg.count(img.Manifest.Desc.Digest) != 0 {
		t.Fatalf("first pull: %d resolves with the manifest, %d without, the manifest fetched %d times; want 1, 0, 0", reg.gets, reg.heads, reg.count(img.Manifest.Desc.Digest))
	}
	if _, err := Pull(ctx, "registry.test/app:1", o); err != nil {
		t.Fatal(err)
	}
	if reg.gets != 1 || reg.heads != 1 || reg.count(img.Manifest.Desc.Digest) != 0 {
		t.Fatalf("second pull: %d resolves with the manifest, %d without, the manifest fetched %d times; want 1, 1, 0", reg.gets, reg.heads, reg.count(img.Manifest.Desc.Digest))
	}

	for i, serve := range [][]byte{[]byte("{}"), bytes.Replace(img.Manifest.Data, []byte("{"), []byte("["), 1)} {
		db2, ctx2 := setup(t)
		reg.serve = serve
		if _, err := Pull(ctx2, "registry.test/app:1", opts(db2, reg)); err != nil {
			t.Fatal(err)
		}
		if n := int(reg.count(img.Manifest.Desc.Digest)); n != i+1 {
			t.Fatalf("a manifest body that is not the digest (%q) was taken: the manifest was fetched %d times, want %d", serve, n, i+1)
		}
		if _, err := db2.Content().Info(ctx2, img.Manifest.Desc.Digest); err != nil {
			t.Fatalf("the pulled manifest: %v", err)
		}
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

// pullConcurrently runs n pulls of ref at once and fails t with the first
// error other than the image record's AlreadyExists.
func pullConcurrently(t *testing.T, ctx context.Context, n int, ref string, o Options) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			if _, err := Pull(ctx, ref, o); err != nil && !errdefs.IsAlreadyExists(err) {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// A layer larger than content.MaxPutSize goes through the ingest its
// pulls share: pulls of it at once download it once.
func TestConcurrentPullsShareDownloads(t *testing.T) {
	db, ctx := setup(t)
	big := make([]byte, content.MaxPutSize+1<<10)
	rand.Read(big) // incompressible, so the layer stays larger than MaxPutSize
	img := testimage.New([]string{"/x"}, []testimage.File{{Name: "big", Data: big}})
	if img.Layers[0].Desc.Size <= content.MaxPutSize {
		t.Fatalf("the layer is %d bytes, not above content.MaxPutSize", img.Layers[0].Desc.Size)
	}
	reg := &memRegistry{blobs: map[digest.Digest][]byte{}, root: img.Manifest.Desc, delay: 100 * time.Millisecond}
	for _, b := range img.Blobs() {
		reg.add(b)
	}
	pullConcurrently(t, ctx, 4, "registry.test/one:1", opts(db, reg))
	if n := reg.count(img.Layers[0].Desc.Digest); n != 1 {
		t.Fatalf("the layer was fetched %d times by 4 concurrent pulls, want 1", n)
	}
}

// writerCounter is a store that can Put and counts the ingests opened.
type writerCounter struct {
	content.Store
	content.Putter
	writers atomic.Int32
}

func (w *writerCounter) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	w.writers.Add(1)
	return w.Store.Writer(ctx, opts...)
}

// Blobs up to content.MaxPutSize are stored in one step, without an
// ingest: pulls of them at once may each download them, and all succeed
// with the blobs stored once, labelled, and no ingest left.
func TestConcurrentPullsOfSmallBlobs(t *testing.T) {
	db, ctx := setup(t)
	img := testimage.New([]string{"/x"}, []testimage.File{{Name: "small", Data: bytes.Repeat([]byte("x"), 1<<20)}})
	reg := &memRegistry{blobs: map[digest.Digest][]byte{}, root: img.Manifest.Desc, delay: 20 * time.Millisecond}
	for _, b := range img.Blobs() {
		reg.add(b)
	}
	store := &writerCounter{Store: db.Content(), Putter: db.Content().(content.Putter)}
	o := opts(db, reg)
	o.Content = store
	pullConcurrently(t, ctx, 4, "registry.test/small:1", o)
	if n := store.writers.Load(); n != 0 {
		t.Errorf("%d ingests opened for blobs of at most content.MaxPutSize", n)
	}
	for _, b := range img.Blobs() {
		if n := reg.count(b.Desc.Digest); n < 1 || n > 4 {
			t.Errorf("%s fetched %d times by 4 pulls", b.Desc.Digest, n)
		}
		info, err := db.Content().Info(ctx, b.Desc.Digest)
		if err != nil || info.Size != b.Desc.Size {
			t.Fatalf("%s: %+v %v", b.Desc.Digest, info, err)
		}
		if info.Labels[images.LabelDistributionSource+"registry.test"] != "small" {
			t.Errorf("%s: labels %v, want the distribution source", b.Desc.Digest, info.Labels)
		}
	}
	if img, err := db.Images().Get(ctx, "registry.test/small:1"); err != nil || img.Target.Digest == "" {
		t.Fatalf("image: %+v %v", img, err)
	}
	sts, err := db.Content().ListStatuses(ctx)
	if err != nil || len(sts) != 0 {
		t.Fatalf("ingests left: %v %v", sts, err)
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

// rangeRegistry adds range requests to memRegistry, and can break the
// first full fetch of one blob after some bytes.
type rangeRegistry struct {
	*memRegistry
	breakAfter int64
	broke      atomic.Bool
	ranges     sync.Map // "offset-length" -> true
	rangeBytes atomic.Int64
}

type breakingReader struct {
	r    io.Reader
	left int64
}

func (b *breakingReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("connection reset by peer")
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

func (r *rangeRegistry) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := r.memRegistry.Fetch(ctx, desc)
	if err != nil || r.breakAfter == 0 || desc.Size < r.breakAfter || !r.broke.CompareAndSwap(false, true) {
		return rc, err
	}
	return io.NopCloser(&breakingReader{r: rc, left: r.breakAfter}), nil
}

func (r *rangeRegistry) FetchRange(ctx context.Context, desc ocispec.Descriptor, offset, length int64) (io.ReadCloser, error) {
	data, ok := r.blobs[desc.Digest]
	if !ok {
		return nil, errdefs.ErrNotFound
	}
	end := int64(len(data))
	if length >= 0 && offset+length < end {
		end = offset + length
	}
	r.ranges.Store(fmt.Sprintf("%d-%d", offset, length), true)
	r.rangeBytes.Add(end - offset)
	return io.NopCloser(bytes.NewReader(data[offset:end])), nil
}

func (r *rangeRegistry) Fetcher(ctx context.Context, ref string) (remotes.Fetcher, error) {
	return r, nil
}

func TestInterruptedPullResumesWithRange(t *testing.T) {
	db, ctx := setup(t)
	big := make([]byte, 3<<20)
	rand.Read(big)
	img := testimage.New([]string{"/x"}, []testimage.File{{Name: "big", Data: big}})
	mem := &memRegistry{blobs: map[digest.Digest][]byte{}, root: img.Manifest.Desc}
	for _, b := range img.Blobs() {
		mem.add(b)
	}
	layer := img.Layers[0].Desc
	reg := &rangeRegistry{memRegistry: mem, breakAfter: layer.Size / 2}
	if _, err := Pull(ctx, "registry.test/resume:1", opts(db, reg)); err == nil {
		t.Fatal("the broken pull succeeded")
	}
	if _, err := db.Images().Get(ctx, "registry.test/resume:1"); !errdefs.IsNotFound(err) {
		t.Fatal("a failed pull recorded an image")
	}
	st, err := db.Content().Status(ctx, "pull-"+layer.Digest.String())
	if err != nil || st.Offset == 0 {
		t.Fatalf("no resumable ingest after the break: %+v %v", st, err)
	}
	if _, err := Pull(ctx, "registry.test/resume:1", opts(db, reg)); err != nil {
		t.Fatal(err)
	}
	if _, ok := reg.ranges.Load(fmt.Sprintf("%d--1", st.Offset)); !ok {
		t.Fatalf("the second pull did not resume at %d with a range request", st.Offset)
	}
	if got := reg.rangeBytes.Load(); got != layer.Size-st.Offset {
		t.Fatalf("resumed pull fetched %d bytes by range, want %d", got, layer.Size-st.Offset)
	}
}

func TestParallelChunks(t *testing.T) {
	db, ctx := setup(t)
	big := make([]byte, 1<<20+123)
	rand.Read(big) // incompressible, so the layer stays large
	img := testimage.New([]string{"/x"}, []testimage.File{{Name: "big", Data: big}})
	mem := &memRegistry{blobs: map[digest.Digest][]byte{}, root: img.Manifest.Desc}
	for _, b := range img.Blobs() {
		mem.add(b)
	}
	reg := &rangeRegistry{memRegistry: mem}
	o := opts(db, reg)
	o.ParallelThreshold, o.ChunkSize, o.ParallelChunks = 64<<10, 64<<10, 3
	if _, err := Pull(ctx, "registry.test/chunks:1", o); err != nil {
		t.Fatal(err)
	}
	n := 0
	reg.ranges.Range(func(any, any) bool { n++; return true })
	layer := img.Layers[0].Desc
	if want := int((layer.Size + 64<<10 - 1) / (64 << 10)); n < want {
		t.Fatalf("%d range requests, want at least %d chunks", n, want)
	}
	if _, err := db.Content().Info(ctx, layer.Digest); err != nil {
		t.Fatalf("chunked layer not stored: %v", err)
	}
}

func TestPullRefusesOversizedManifestsAndConfigs(t *testing.T) {
	db, ctx := setup(t)
	img := testimage.New([]string{"/x"}, []testimage.File{{Name: "f"}})
	huge := img.Manifest.Desc
	huge.Size = 5 << 20
	reg := &memRegistry{blobs: map[digest.Digest][]byte{}, root: huge}
	if _, err := Pull(ctx, "registry.test/huge:1", opts(db, reg)); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "4 MiB") {
		t.Fatalf("5 MiB manifest: %v", err)
	}
	// A manifest naming a 9 MiB config.
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[]}`, digest.FromString("cfg"), 9<<20)
	md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString(m), Size: int64(len(m))}
	reg = &memRegistry{blobs: map[digest.Digest][]byte{md.Digest: []byte(m)}, root: md}
	if _, err := Pull(ctx, "registry.test/bigcfg:1", opts(db, reg)); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), digest.FromString("cfg").String()) {
		t.Fatalf("9 MiB config: %v", err)
	}
	// A reference resolving to something that is no image.
	reg = &memRegistry{blobs: map[digest.Digest][]byte{}, root: ocispec.Descriptor{MediaType: "text/html", Digest: digest.FromString("x"), Size: 1}}
	if _, err := Pull(ctx, "registry.test/html:1", opts(db, reg)); err == nil || !strings.Contains(err.Error(), "text/html") {
		t.Fatalf("text/html root: %v", err)
	}
	if imgs, _ := db.Images().List(ctx); len(imgs) != 0 {
		t.Fatalf("images recorded: %v", imgs)
	}
}

// TestPullLeasesBlobsItFinds: a pull that finds blobs already stored adds
// them to its lease before it relies on them, so that a collection
// between finding them and recording the image (their old image being
// deleted meanwhile) cannot take them: the image would name missing blobs.
func TestPullLeasesBlobsItFinds(t *testing.T) {
	db, ctx := setup(t)
	img := testimage.New([]string{"/bin/sh"}, []testimage.File{{Name: "f", Data: []byte("found")}})
	reg := &memRegistry{blobs: map[digest.Digest][]byte{}, root: img.Manifest.Desc}
	for _, b := range img.Blobs() {
		reg.add(b)
	}
	if _, err := Pull(ctx, "registry.test/app:1", opts(db, reg)); err != nil {
		t.Fatal(err)
	}
	if err := db.Images().Delete(ctx, "registry.test/app:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Leases().Create(ctx, "second-pull", nil); err != nil {
		t.Fatal(err)
	}
	lctx := leases.WithLease(ctx, "second-pull")
	if _, err := Pull(lctx, "registry.test/app:2", opts(db, reg)); err != nil {
		t.Fatal(err)
	}
	// The image record goes too: only the lease holds the blobs now.
	if err := db.Images().Delete(ctx, "registry.test/app:2"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	for _, b := range img.Blobs() {
		if _, err := db.Content().Info(ctx, b.Desc.Digest); err != nil {
			t.Errorf("blob %s found by the second pull is not held by its lease: %v", b.Desc.Digest, err)
		}
	}
}

// laneRegistry is a memRegistry whose fetches report the blobs in flight
// by lane, and whose large blobs wait until every small one was fetched.
type laneRegistry struct {
	*memRegistry
	mu                       sync.Mutex
	small, large             int // in flight now
	maxSmall, maxLarge, all  int
	smallFetched, smallTotal int
	smallDone                chan struct{}
	largeSlots               int
	wide                     chan struct{} // closed when both lanes are full
}

func (l *laneRegistry) Fetcher(ctx context.Context, ref string) (remotes.Fetcher, error) {
	return l, nil
}

func (l *laneRegistry) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if images.IsManifest(desc.MediaType) {
		// A manifest is read before its blobs, outside the lanes.
		return l.memRegistry.Fetch(ctx, desc)
	}
	isSmall := desc.Size <= smallBlobSize
	l.mu.Lock()
	if isSmall {
		l.small++
		l.maxSmall = max(l.maxSmall, l.small)
	} else {
		l.large++
		l.maxLarge = max(l.maxLarge, l.large)
	}
	l.all = max(l.all, l.small+l.large)
	if l.small == smallBlobsAtOnce && l.large == l.largeSlots {
		close(l.wide)
	}
	l.mu.Unlock()
	if isSmall {
		// The first small blobs wait until both lanes are full, so a
		// lane narrower than its bound shows as a timeout.
		select {
		case <-l.wide:
		case <-time.After(5 * time.Second):
		}
	} else {
		// Large blobs hold their slots until the small ones are in.
		select {
		case <-l.smallDone:
		case <-time.After(5 * time.Second):
		}
	}
	rc, err := l.memRegistry.Fetch(ctx, desc)
	l.mu.Lock()
	if isSmall {
		l.small--
		l.smallFetched++
		if l.smallFetched == l.smallTotal {
			close(l.smallDone)
		}
	} else {
		l.large--
	}
	l.mu.Unlock()
	return rc, err
}

// TestPullFetchesSmallBlobsBesideLargeOnes checks the two lanes of a
// pull: blobs above smallBlobSize are fetched MaxConcurrentDownloads at a
// time, smaller ones smallBlobsAtOnce at a time beside them, so that they
// neither queue behind the large ones nor take a round trip each few.
func TestPullFetchesSmallBlobsBesideLargeOnes(t *testing.T) {
	db, ctx := setup(t)
	var layers []testimage.BuiltLayer
	for i := 0; i < 4; i++ {
		data := make([]byte, smallBlobSize+1)
		rand.Read(data)
		layers = append(layers, testimage.MakeLayer([]testimage.File{{Name: fmt.Sprintf("large%d", i), Data: data}}, testimage.Uncompressed))
	}
	for _, files := range testimage.ManyLayers(2 * smallBlobsAtOnce) {
		layers = append(layers, testimage.MakeLayer(files, testimage.Gzip))
	}
	img := testimage.NewLayers(platforms.DefaultSpec(), []string{"/x"}, layers...)
	reg := &laneRegistry{memRegistry: &memRegistry{blobs: map[digest.Digest][]byte{}, root: img.Manifest.Desc},
		largeSlots: 2, smallDone: make(chan struct{}), wide: make(chan struct{})}
	for _, b := range img.Blobs() {
		reg.add(b)
		if b.Desc.Digest != img.Manifest.Desc.Digest && b.Desc.Size <= smallBlobSize {
			reg.smallTotal++
		}
	}
	o := opts(db, reg)
	o.MaxConcurrentDownloads = 2
	start := time.Now()
	if _, err := Pull(ctx, "registry.test/lanes:1", o); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("the pull took %s: a lane waited for a timeout (small blobs in flight at most %d of %d, fetched %d of %d)", took, reg.maxSmall, smallBlobsAtOnce, reg.smallFetched, reg.smallTotal)
	}
	if reg.maxLarge != 2 {
		t.Errorf("%d large blobs were fetched at once, want MaxConcurrentDownloads (2)", reg.maxLarge)
	}
	if reg.maxSmall != smallBlobsAtOnce {
		t.Errorf("%d small blobs were fetched at once, want %d", reg.maxSmall, smallBlobsAtOnce)
	}
	if reg.all != 2+smallBlobsAtOnce {
		t.Errorf("%d blobs were fetched at once, want %d", reg.all, 2+smallBlobsAtOnce)
	}
}

// deferLog is a content store that writes small blobs' records behind
// them (content.DeferredPutter) and logs the calls.
type deferLog struct {
	content.Store
	mu  sync.Mutex
	log []string
}

func (d *deferLog) add(s string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.log = append(d.log, s)
}

func (d *deferLog) Put(ctx context.Context, desc ocispec.Descriptor, data []byte, opts ...content.CommitOpt) error {
	d.add("put")
	return d.Store.(content.Putter).Put(ctx, desc, data, opts...)
}

func (d *deferLog) PutDeferred(ctx context.Context, desc ocispec.Descriptor, data []byte, opts ...content.CommitOpt) error {
	d.add("deferred")
	return d.Store.(content.DeferredPutter).PutDeferred(ctx, desc, data, opts...)
}

func (d *deferLog) FlushDeferred(ctx context.Context) error {
	d.add("flush")
	return d.Store.(content.DeferredPutter).FlushDeferred(ctx)
}

// A pull into a store that writes records behind the blobs stores each
// small blob that way and writes their records once, after the last blob
// and before the image names them; a pull that fails writes those it
// stored too, so that a pull again resumes from them.
func TestPullWritesRecordsBehind(t *testing.T) {
	db, ctx := setup(t)
	img := testimage.New([]string{"/x"}, []testimage.File{{Name: "a", Data: []byte("a")}}, []testimage.File{{Name: "b", Data: []byte("b")}})
	reg := &memRegistry{blobs: map[digest.Digest][]byte{}, root: img.Manifest.Desc}
	for _, b := range img.Blobs() {
		reg.add(b)
	}
	dl := &deferLog{Store: db.Content()}
	o := opts(db, reg)
	o.Content, o.Images = dl, &imageLog{Store: db.Images(), d: dl}
	if _, err := Pull(ctx, "registry.test/app:1", o); err != nil {
		t.Fatal(err)
	}
	want := append(slices.Repeat([]string{"deferred"}, len(img.Blobs())), "flush", "image")
	if !slices.Equal(dl.log, want) {
		t.Fatalf("calls: %v, want %v", dl.log, want)
	}

	bad := testimage.New([]string{"/x"}, []testimage.File{{Name: "c", Data: []byte("c")}})
	reg = &memRegistry{blobs: map[digest.Digest][]byte{}, root: bad.Manifest.Desc, corrupt: bad.Layers[0].Desc.Digest}
	for _, b := range bad.Blobs() {
		reg.add(b)
	}
	dl.log = nil
	o.Resolver = reg
	if _, err := Pull(ctx, "registry.test/bad:1", o); err == nil {
		t.Fatal("pull of a corrupt layer succeeded")
	}
	if n := len(dl.log); n == 0 || dl.log[n-1] != "flush" || slices.Contains(dl.log, "image") {
		t.Fatalf("calls of a failed pull: %v, want its puts then a flush", dl.log)
	}
}

// imageLog logs image creates in d's log.
type imageLog struct {
	images.Store
	d *deferLog
}

func (l *imageLog) Create(ctx context.Context, img images.Image) (images.Image, error) {
	l.d.add("image")
	return l.Store.Create(ctx, img)
}
