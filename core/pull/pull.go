// Package pull fetches an image from a registry into the content store and
// records it: the one pull path behind the client library, hullctl and,
// later, the CRI image service.
//
// A pull resolves the reference, then walks index -> manifest -> config and
// layers. Indexes and manifests are read into memory (they are small and
// bounded), verified, and stored after their children, with the
// containerd.io/gc.ref.content.* labels that keep the tree alive; blobs are
// streamed straight into the content store, several at a time. Blobs already
// present are skipped, and two pulls of the same blob share one download: the
// second waits for the first's ingest and then finds the blob. Everything is
// held by a lease until the image record exists.
//
// The first blob that fails ends the pull: the other downloads are cancelled
// and the pull returns that failure, not the cancellations it caused.
//
// A content store that answers Unavailable means one of two things. Either
// another writer holds the blob's ingest (another pull of the same blob):
// the store still answers for the ingest, and the pull waits for as long as
// it takes, since the store drops the hold when the holder's write ends.
// Or the store is not there (hulld is down or restarting): the pull retries
// for StoreTimeout, resuming partial blobs once it answers again, and then
// gives up with the store's own error.
package pull

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/remotes"
)

// Status is the state of one blob in a pull.
type Status string

// The states a blob goes through.
const (
	StatusWaiting     Status = "waiting"
	StatusDownloading Status = "downloading"
	StatusDone        Status = "done"
	StatusExists      Status = "exists"
	// StatusLocked: another writer (another pull of the same blob) holds
	// the blob's ingest; this pull waits for it to store the blob. Offset
	// is the other writer's.
	StatusLocked Status = "locked"
	// StatusRetrying: the content store answered Unavailable with no
	// other writer in sight (Err says what it answered); the pull retries
	// until Options.StoreTimeout.
	StatusRetrying Status = "retrying"
)

// Progress reports one blob's state.
type Progress struct {
	Desc   ocispec.Descriptor
	Status Status
	Offset int64 // bytes stored so far
	// Err is why the blob is retrying (StatusRetrying); nil otherwise.
	Err error
	// Parent is the index or manifest that named the blob; nil for the
	// descriptor the reference resolved to. A blob that several name
	// has the first of them.
	Parent *ocispec.Descriptor
}

// Options configure a pull.
type Options struct {
	Resolver remotes.Resolver
	Content  content.Store
	Images   images.Store
	// Leases holds the pull's content while it runs when ctx carries no
	// lease; nil requires a lease in ctx. It also adds the blobs the store
	// has already to the pull's lease, so that no collection takes them
	// before the image is recorded; without it, a pull racing a delete of
	// another image with the same blobs can record an image whose blobs
	// are gone.
	Leases leases.Manager
	// Platform picks the manifest of an index; default: the host's
	// (platforms.Default()). Only the best match is pulled.
	Platform platforms.MatchComparer
	// AllPlatforms pulls every manifest of an index.
	AllPlatforms bool
	// MaxConcurrentDownloads bounds the blobs larger than smallBlobSize
	// fetched at once; default 3. Smaller blobs are fetched beside them,
	// up to max(smallBlobsAtOnce, MaxConcurrentDownloads) at a time.
	MaxConcurrentDownloads int
	// Progress, if set, is called (from several goroutines) as blobs move.
	Progress func(Progress)
	// ChunkSize and ParallelChunks: blobs of at least ParallelThreshold
	// bytes are fetched as ChunkSize ranges, ParallelChunks at a time,
	// where the registry supports ranges. Defaults 8 MiB, 4, 64 MiB.
	ChunkSize         int64
	ParallelChunks    int
	ParallelThreshold int64
	// OnResolved, if set, is called with the name the reference resolved
	// to and its descriptor, before anything is fetched.
	OnResolved func(name string, desc ocispec.Descriptor)
	// OnManifest, if set, is called with each platform manifest as soon as
	// it is read, before its blobs are fetched, so that a caller can start
	// unpacking layers while later ones still download.
	OnManifest func(ctx context.Context, desc ocispec.Descriptor, m ocispec.Manifest)
	// Unpack, if set, runs on each pulled platform manifest before the
	// image is recorded.
	Unpack func(ctx context.Context, manifest ocispec.Descriptor) error
	// StoreTimeout bounds how long a blob keeps retrying a content store
	// that answers Unavailable while no other writer holds its ingest
	// (hulld down or restarting), counted from the last answer that
	// showed progress. Default 30s; negative: no retries.
	StoreTimeout time.Duration
}

// defaultStoreTimeout is StoreTimeout's default: long enough for a daemon
// to restart, short enough that nobody takes the pull for hung.
const defaultStoreTimeout = 30 * time.Second

// smallBlobSize is the size up to which a blob is fetched in the pull's
// small lane. Below about a megabyte a blob costs a request's round trip
// rather than bandwidth, so a pull whose small blobs queued behind
// MaxConcurrentDownloads slots would wait one round trip per few of them
// (40 small layers: 14 round trips at 3 at a time, 5 at 8), and behind
// large layers' downloads, though they take little of the link.
const smallBlobSize = 1 << 20

// smallBlobsAtOnce is the small lane's width: the registry resolver's
// default bound on requests in flight to one host, which still holds (it
// counts every pull's requests).
const smallBlobsAtOnce = 8

// maxConfigSize bounds image configs, which are read whole into memory (the
// CVE-2023-25153 class of memory exhaustion).
const maxConfigSize = 8 << 20

func isConfig(mt string) bool {
	return mt == ocispec.MediaTypeImageConfig || mt == images.MediaTypeDockerConfig
}

// sourceLabel names the repository a blob came from, as containerd does, so
// that a later push can mount it across repositories.
func sourceLabel(host string) string { return images.DistributionSourceKey(host) }

// Pull fetches ref (a fully qualified reference) and records it as an image
// named ref. It returns the image.
func Pull(ctx context.Context, ref string, o Options) (images.Image, error) {
	if o.Resolver == nil || o.Content == nil || o.Images == nil {
		return images.Image{}, fmt.Errorf("pull %s: resolver, content and image stores are required: %w", ref, errdefs.ErrInvalidArgument)
	}
	if o.Platform == nil {
		o.Platform = platforms.Default()
	}
	if o.MaxConcurrentDownloads <= 0 {
		o.MaxConcurrentDownloads = 3
	}
	if o.ChunkSize <= 0 {
		o.ChunkSize = 8 << 20
	}
	if o.ParallelChunks <= 0 {
		o.ParallelChunks = 4
	}
	if o.ParallelThreshold <= 0 {
		o.ParallelThreshold = 64 << 20
	}
	if o.StoreTimeout == 0 {
		o.StoreTimeout = defaultStoreTimeout
	}
	if _, ok := leases.FromContext(ctx); !ok {
		if o.Leases == nil {
			return images.Image{}, fmt.Errorf("pull %s: no lease in the context and no lease manager: %w", ref, errdefs.ErrInvalidArgument)
		}
		l, err := o.Leases.Create(ctx, fmt.Sprintf("pull-%d", time.Now().UnixNano()), map[string]string{
			leases.ExpireLabel: time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
		})
		if err != nil {
			return images.Image{}, err
		}
		ctx = leases.WithLease(ctx, l.ID)
		defer o.Leases.Delete(context.WithoutCancel(ctx), l.ID, false)
	}
	name, desc, manifest, err := resolve(ctx, o, ref)
	if err != nil {
		return images.Image{}, err
	}
	if !images.IsIndex(desc.MediaType) && !images.IsManifest(desc.MediaType) {
		return images.Image{}, fmt.Errorf("pull %s: it resolves to %s of media type %q, which is neither an image index nor a manifest: %w", ref, desc.Digest, desc.MediaType, errdefs.ErrNotImplemented)
	}
	fetcher, err := o.Resolver.Fetcher(ctx, name)
	if err != nil {
		return images.Image{}, err
	}
	host, repo := splitName(name)
	treeCtx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	if o.OnResolved != nil {
		o.OnResolved(name, desc)
	}
	p := &puller{o: o, fetcher: fetcher, top: desc, topData: manifest, labels: map[string]string{sourceLabel(host): repo}, sem: make(chan struct{}, o.MaxConcurrentDownloads), smallSem: make(chan struct{}, max(smallBlobsAtOnce, o.MaxConcurrentDownloads)), fail: fail}
	p.progress(desc, StatusWaiting, 0)
	err = p.fetchTree(treeCtx, desc)
	// The small blobs' records were written behind them (put): all of
	// them now, in one transaction, before the image names them, and
	// after a failure too, so that a pull again resumes from what this
	// one stored.
	if dp, ok := o.Content.(content.DeferredPutter); ok {
		if ferr := dp.FlushDeferred(context.WithoutCancel(ctx)); ferr != nil && err == nil {
			return images.Image{}, fmt.Errorf("pull %s: record its blobs: %w", ref, ferr)
		}
	}
	if err != nil {
		// The first failure cancelled the rest; theirs are its echoes.
		if cause := context.Cause(treeCtx); cause != nil {
			err = cause
		}
		return images.Image{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	img := images.Image{Name: ref, Target: ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}}
	out, err := o.Images.Create(ctx, img)
	if errdefs.IsAlreadyExists(err) {
		out, err = o.Images.Update(ctx, img, "target")
	}
	return out, err
}

// resolve resolves ref, reading what it points at in the same request when
// the resolver can (remotes.ManifestResolver) and the store has no image
// of that name: such a pull reads the manifest anyway, and reading it now
// saves a round trip before anything else can be fetched. A pull of a name
// stored (an update, most often of nothing) asks for the headers alone,
// which registries do not count as a pull.
func resolve(ctx context.Context, o Options, ref string) (string, ocispec.Descriptor, []byte, error) {
	if mr, ok := o.Resolver.(remotes.ManifestResolver); ok {
		if _, err := o.Images.Get(ctx, ref); errdefs.IsNotFound(err) {
			return mr.ResolveManifest(ctx, ref)
		}
	}
	name, desc, err := o.Resolver.Resolve(ctx, ref)
	return name, desc, nil, err
}

// splitName returns the host and the repository path of a reference.
func splitName(name string) (host, repo string) {
	if i := strings.IndexAny(name, "@"); i >= 0 {
		name = name[:i]
	}
	host, repo, _ = strings.Cut(name, "/")
	if i := strings.LastIndexByte(repo, ':'); i >= 0 {
		repo = repo[:i]
	}
	return host, repo
}

type puller struct {
	o       Options
	fetcher remotes.Fetcher
	// top is what the reference resolved to, and topData its bytes
	// when the resolve read them (nil when it did not).
	top     ocispec.Descriptor
	topData []byte
	labels  map[string]string
	// sem and smallSem bound the blobs being fetched, larger and not
	// larger than smallBlobSize.
	sem, smallSem chan struct{}
	// parents maps the digest of each blob an index or manifest named to
	// the first that named it (Progress.Parent).
	parents sync.Map
	// bufs holds the copy buffers of maxCopyBuffer bytes for the pull's
	// later blobs (copyBuffer).
	bufs sync.Pool
	// fail cancels the whole tree with the first failure as the cause.
	fail context.CancelCauseFunc
}

func (p *puller) progress(desc ocispec.Descriptor, st Status, off int64) {
	if p.o.Progress == nil {
		return
	}
	ev := Progress{Desc: desc, Status: st, Offset: off}
	if parent, ok := p.parents.Load(desc.Digest); ok {
		d := parent.(ocispec.Descriptor)
		ev.Parent = &d
	}
	p.o.Progress(ev)
}

// fetchTree stores desc and everything below it, children first.
func (p *puller) fetchTree(ctx context.Context, desc ocispec.Descriptor) error {
	if !images.IsIndex(desc.MediaType) && !images.IsManifest(desc.MediaType) {
		if desc.MediaType == images.MediaTypeDockerSchema1 || strings.HasPrefix(desc.MediaType, "application/vnd.docker.distribution.manifest.v1") {
			return fmt.Errorf("%s is a Docker schema 1 manifest, which hull does not pull: push the image again with a current client: %w", desc.Digest, errdefs.ErrNotImplemented)
		}
		if isConfig(desc.MediaType) && desc.Size > maxConfigSize {
			// Configs are read whole into memory by whoever uses them.
			return fmt.Errorf("config %s is %d bytes, more than the %d a config may have: %w", desc.Digest, desc.Size, maxConfigSize, errdefs.ErrInvalidArgument)
		}
		return p.fetchBlob(ctx, desc, p.labels)
	}
	data, err := p.readManifest(ctx, desc)
	if err != nil {
		return err
	}
	children, refs, err := images.ParseChildren(desc, data)
	if err != nil {
		return err
	}
	if images.IsManifest(desc.MediaType) && p.o.OnManifest != nil {
		var m ocispec.Manifest
		if err := json.Unmarshal(data, &m); err == nil {
			p.o.OnManifest(ctx, desc, m)
		}
	}
	labels := map[string]string{}
	for k, v := range p.labels {
		labels[k] = v
	}
	if images.IsIndex(desc.MediaType) {
		children, refs = p.selectPlatforms(children, refs)
		if len(children) == 0 {
			return fmt.Errorf("index %s has no manifest for platform %s: %w", desc.Digest, platforms.Format(platforms.DefaultSpec()), errdefs.ErrNotFound)
		}
	}
	for i, ch := range children {
		labels[images.LabelGCRefContent+"."+refs[i]] = ch.Digest.String()
		p.parents.LoadOrStore(ch.Digest, ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size})
		p.progress(ch, StatusWaiting, 0)
	}
	if err := images.EachConcurrently(children, func(ch ocispec.Descriptor) error {
		err := p.fetchTree(ctx, ch)
		if err != nil {
			p.fail(err)
		}
		return err
	}); err != nil {
		return err
	}
	if images.IsManifest(desc.MediaType) && p.o.Unpack != nil {
		if err := p.o.Unpack(ctx, desc); err != nil {
			return err
		}
	}
	if err := p.store(ctx, desc, bytes.NewReader(data), labels); err != nil {
		return err
	}
	p.progress(desc, StatusDone, desc.Size)
	return nil
}

// selectPlatforms keeps the manifests to pull from an index: all matching
// ones with AllPlatforms, else the best match only.
func (p *puller) selectPlatforms(children []ocispec.Descriptor, refs []string) ([]ocispec.Descriptor, []string) {
	var outC []ocispec.Descriptor
	var outR []string
	best := -1
	for i, ch := range children {
		if p.o.AllPlatforms {
			outC, outR = append(outC, ch), append(outR, refs[i])
			continue
		}
		if ch.Platform == nil || !p.o.Platform.Match(*ch.Platform) {
			continue
		}
		if best < 0 || p.o.Platform.Less(*ch.Platform, *children[best].Platform) {
			best = i
		}
	}
	if best >= 0 {
		return []ocispec.Descriptor{children[best]}, []string{refs[best]}
	}
	return outC, outR
}

// readManifest returns the bytes of an index or manifest, from the store if
// present, else from the registry, verified against its digest.
func (p *puller) readManifest(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
	if data, err := images.ReadManifest(ctx, p.o.Content, desc); err == nil {
		return data, nil
	}
	if p.topData != nil && desc.Digest == p.top.Digest && int64(len(p.topData)) == desc.Size && desc.Digest.Algorithm().FromBytes(p.topData) == desc.Digest {
		return p.topData, nil
	}
	if desc.Size > 4<<20 {
		return nil, fmt.Errorf("%s %s is %d bytes, more than the 4 MiB a manifest may have: %w", desc.MediaType, desc.Digest, desc.Size, errdefs.ErrInvalidArgument)
	}
	rc, err := p.fetcher.Fetch(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, desc.Size+1))
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", desc.Digest, err)
	}
	if int64(len(data)) != desc.Size || digest.FromBytes(data) != desc.Digest {
		return nil, fmt.Errorf("%s from the registry does not match its descriptor (got %d bytes, digest %s): %w", desc.Digest, len(data), digest.FromBytes(data), errdefs.ErrFailedPrecondition)
	}
	return data, nil
}

// fetchBlob streams a blob into the store unless it is there already.
func (p *puller) fetchBlob(ctx context.Context, desc ocispec.Descriptor, labels map[string]string) error {
	sem := p.sem
	if desc.Size > 0 && desc.Size <= smallBlobSize {
		sem = p.smallSem
	}
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-sem }()
	if ok, err := p.exists(ctx, desc, labels); err != nil {
		return err
	} else if ok {
		p.progress(desc, StatusExists, desc.Size)
		return nil
	}
	fetch := func(offset int64) (io.Reader, func(), error) {
		p.progress(desc, StatusDownloading, offset)
		rc, err := p.open(ctx, desc, offset)
		if err != nil {
			return nil, nil, err
		}
		cr := &countingReader{r: rc, n: offset, report: func(n int64) { p.progress(desc, StatusDownloading, n) }}
		return cr, func() { rc.Close() }, nil
	}
	fetched, err := p.write(ctx, desc, fetch, labels)
	if err != nil {
		return err
	}
	if fetched {
		p.progress(desc, StatusDone, desc.Size)
	} else {
		p.progress(desc, StatusExists, desc.Size)
	}
	return nil
}

// open returns desc's bytes from offset: by a range request where the
// fetcher can (in parallel chunks for a large blob), else by skipping.
func (p *puller) open(ctx context.Context, desc ocispec.Descriptor, offset int64) (io.ReadCloser, error) {
	if rf, ok := p.fetcher.(remotes.RangeFetcher); ok {
		if desc.Size-offset >= p.o.ParallelThreshold && p.o.ParallelChunks > 1 {
			return newChunkReader(ctx, rf, desc, offset, p.o.ChunkSize, p.o.ParallelChunks), nil
		}
		if offset > 0 {
			return rf.FetchRange(ctx, desc, offset, -1)
		}
	}
	rc, err := p.fetcher.Fetch(ctx, desc)
	if err != nil {
		return nil, err
	}
	if offset > 0 {
		if _, err := io.CopyN(io.Discard, rc, offset); err != nil {
			rc.Close()
			return nil, fmt.Errorf("fetch %s: skip to %d: %w", desc.Digest, offset, err)
		}
	}
	return rc, nil
}

// exists reports whether desc is stored, making sure it carries labels. An
// error other than NotFound is the store's trouble, which a download would
// only meet again.
func (p *puller) exists(ctx context.Context, desc ocispec.Descriptor, labels map[string]string) (bool, error) {
	info, err := p.o.Content.Info(ctx, desc.Digest)
	if errdefs.IsNotFound(err) {
		// Most blobs of a pull are new: writing one leases it.
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// The pull's lease takes a blob found before the pull relies on it: a
	// blob held by nothing else (its image being deleted) could otherwise
	// be collected before the image's record names it. It may have gone
	// between the first look and the lease, hence the second.
	if id, ok := leases.FromContext(ctx); ok && p.o.Leases != nil {
		if err := p.o.Leases.AddResource(ctx, id, leases.Resource{Type: "content", ID: desc.Digest.String()}); err != nil {
			return false, err
		}
		if info, err = p.o.Content.Info(ctx, desc.Digest); errdefs.IsNotFound(err) {
			return false, nil
		} else if err != nil {
			return false, err
		}
	}
	var paths []string
	update := map[string]string{}
	for k, v := range labels {
		if strings.HasPrefix(k, images.LabelDistributionSource) {
			// A blob pulled from several repositories lists them all.
			v = images.AppendDistributionSource(info.Labels[k], v)
		}
		if info.Labels[k] != v {
			paths = append(paths, "labels."+k)
			update[k] = v
		}
	}
	if len(paths) > 0 {
		p.o.Content.Update(ctx, content.Info{Digest: desc.Digest, Labels: update}, paths...)
	}
	return true, nil
}

// store writes the bytes of r as desc.
func (p *puller) store(ctx context.Context, desc ocispec.Descriptor, r io.Reader, labels map[string]string) error {
	_, err := p.write(ctx, desc, func(offset int64) (io.Reader, func(), error) {
		if s, ok := r.(io.Seeker); ok {
			if _, err := s.Seek(offset, io.SeekStart); err != nil {
				return nil, nil, err
			}
		}
		return r, func() {}, nil
	}, labels)
	return err
}

// write stores desc through the ingest "pull-<digest>", shared by every pull
// of that blob, calling open for the bytes only once it holds the ingest: a
// pull that finds the ref locked waits for the other one, which leaves the
// blob stored, so the blob is downloaded once. A blob of at most
// content.MaxPutSize goes to a store that can Put it in one step instead,
// without an ingest: pulls of it at once may each download it, which costs
// less than an ingest's files and records, and the first to store it wins.
// It reports whether it wrote the blob (false: it was there).
//
// The store answering Unavailable is retried (see the package doc): without
// end while another writer holds the ingest, for StoreTimeout from the last
// sign of progress otherwise. A retry resumes what was written.
func (p *puller) write(ctx context.Context, desc ocispec.Descriptor, open func(offset int64) (io.Reader, func(), error), labels map[string]string) (bool, error) {
	ref := "pull-" + desc.Digest.String()
	var (
		down    time.Time // since when the store has failed us; zero while it answers
		stored  int64     // the most of the blob the store has held
		backoff = minRetry
	)
	for {
		start := time.Now()
		fetched, n, err := p.attempt(ctx, ref, desc, open, labels)
		var se *storeError
		if err == nil || !errors.As(err, &se) || !errdefs.IsUnavailable(se.err) || ctx.Err() != nil {
			return fetched, unwrapStore(err)
		}
		switch {
		case n > stored:
			// It went down in the middle of a write that got somewhere:
			// the clock starts now.
			stored, down, backoff = n, time.Now(), minRetry
		case down.IsZero():
			down = start
		}
		if held, st := p.held(ctx, ref, se.opened); held {
			// Another writer has the ingest and the store answers for
			// it: wait for it, however long it takes.
			down = time.Time{}
			p.progress(desc, StatusLocked, st.Offset)
		} else {
			if p.o.StoreTimeout < 0 || time.Since(down) >= p.o.StoreTimeout {
				return false, se.err
			}
			if p.o.Progress != nil {
				p.o.Progress(Progress{Desc: desc, Status: StatusRetrying, Offset: stored, Err: se.err})
			}
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return false, ctx.Err()
		}
		backoff = min(2*backoff, maxRetry)
	}
}

// The pause between two tries of a store that answers Unavailable: short at
// first, since a locked ingest is often released at once, then up to a
// second, which is soon enough to notice a restarted daemon.
const (
	minRetry = 50 * time.Millisecond
	maxRetry = time.Second
)

// held reports whether another writer holds ref: the store, asked about the
// ingest, answers. Only a Writer that failed to open can mean that; one that
// broke off in the middle had the ingest itself.
func (p *puller) held(ctx context.Context, ref string, opened bool) (bool, content.Status) {
	if opened {
		return false, content.Status{}
	}
	st, err := p.o.Content.Status(ctx, ref)
	return err == nil, st
}

// attempt opens the ingest and writes the blob into it once. It returns the
// ingest's offset when it stopped, and marks the errors that came from the
// store, as opposed to the registry, as *storeError.
func (p *puller) attempt(ctx context.Context, ref string, desc ocispec.Descriptor, open func(offset int64) (io.Reader, func(), error), labels map[string]string) (bool, int64, error) {
	if pt, ok := p.o.Content.(content.Putter); ok && desc.Size > 0 && desc.Size <= content.MaxPutSize {
		return p.put(ctx, pt, desc, open, labels)
	}
	w, err := p.o.Content.Writer(ctx, content.WithRef(ref), content.WithDescriptor(desc))
	if errdefs.IsAlreadyExists(err) {
		_, err := p.exists(ctx, desc, labels)
		return false, desc.Size, err
	}
	if err != nil {
		return false, 0, &storeError{err: err}
	}
	defer w.Close()
	st, err := w.Status()
	if err != nil {
		return false, 0, &storeError{err: err, opened: true}
	}
	// An earlier pull that broke off left st.Offset bytes: fetch only the
	// rest.
	r, done, err := open(st.Offset)
	if err != nil {
		return false, st.Offset, err
	}
	cw := &countingWriter{w: w, n: st.Offset}
	buf := p.copyBuffer(desc.Size - st.Offset)
	err = copyCommit(ctx, cw, r, buf, desc, labels)
	if len(*buf) == maxCopyBuffer {
		p.bufs.Put(buf)
	}
	done()
	if errdefs.IsAlreadyExists(err) {
		_, err := p.exists(ctx, desc, labels)
		return false, desc.Size, err
	}
	return err == nil, cw.n, err
}

// put is attempt for a small blob: read whole, then stored in one step.
// One byte more than desc's size is asked for, so that a registry that
// sends too much fails the size check as a commit would.
func (p *puller) put(ctx context.Context, pt content.Putter, desc ocispec.Descriptor, open func(offset int64) (io.Reader, func(), error), labels map[string]string) (bool, int64, error) {
	r, done, err := open(0)
	if err != nil {
		return false, 0, err
	}
	data := make([]byte, desc.Size+1)
	n, err := io.ReadFull(r, data)
	done()
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return false, 0, fmt.Errorf("fetch %s: %w", desc.Digest, err)
	}
	if dp, ok := pt.(content.DeferredPutter); ok {
		// Blobs arrive one at a time: each record in a transaction
		// of its own would cost more than the blob. They are written
		// together when the pull's fetches end (Pull).
		err = dp.PutDeferred(ctx, desc, data[:n], content.WithLabels(labels))
	} else {
		err = pt.Put(ctx, desc, data[:n], content.WithLabels(labels))
	}
	switch {
	case errdefs.IsAlreadyExists(err):
		_, err := p.exists(ctx, desc, labels)
		return false, desc.Size, err
	case errdefs.IsFailedPrecondition(err):
		return false, 0, fmt.Errorf("fetch %s: %w", desc.Digest, err)
	case err != nil:
		return false, 0, &storeError{err: err}
	}
	return true, desc.Size, nil
}

// storeError is an error of the content store's, met by a write.
type storeError struct {
	err error
	// opened: the writer had the ingest when it failed.
	opened bool
}

func (e *storeError) Error() string { return e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// unwrapStore drops the storeError mark, which is write's business only.
func unwrapStore(err error) error {
	var se *storeError
	if errors.As(err, &se) && err == error(se) {
		return se.err
	}
	return err
}

// countingWriter is a content.Writer that counts what it was given, so that
// a write that breaks off tells how far it got.
type countingWriter struct {
	w content.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	if err != nil {
		err = &storeError{err: err, opened: true}
	}
	return n, err
}

// maxCopyBuffer is the buffer a blob is copied through at most: big
// enough that a large layer is written in few calls.
const maxCopyBuffer = 1 << 20

// copyBuffer returns a buffer for copying a blob of which rest bytes are
// left (a size not above 0 is unknown). A blob smaller than the largest
// buffer gets one of its own size: the buffer is zeroed when made, and an
// image of many small layers would otherwise zero a megabyte for each
// (most of a pull's allocation, and the garbage collection it brings). The
// largest ones are kept for the pull's other blobs.
func (p *puller) copyBuffer(rest int64) *[]byte {
	if rest > 0 && rest < maxCopyBuffer {
		// One byte more than the blob: the read that fills it is
		// followed by one that meets the end, without a second buffer.
		b := make([]byte, max(rest+1, 512))
		return &b
	}
	if b, ok := p.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, maxCopyBuffer)
	return &b
}

// copyCommit writes r (which starts at w's offset) into w through buf and
// commits.
func copyCommit(ctx context.Context, w *countingWriter, r io.Reader, buf *[]byte, desc ocispec.Descriptor, labels map[string]string) error {
	if _, err := io.CopyBuffer(w, r, *buf); err != nil {
		return fmt.Errorf("fetch %s: %w", desc.Digest, err)
	}
	if err := w.w.Commit(ctx, desc.Size, desc.Digest, content.WithLabels(labels)); err != nil {
		if errdefs.IsAlreadyExists(err) {
			return err
		}
		return &storeError{err: err, opened: true}
	}
	return nil
}

type countingReader struct {
	r      io.Reader
	n      int64
	last   time.Time
	report func(int64)
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	if now := time.Now(); now.Sub(c.last) > 100*time.Millisecond {
		c.last = now
		c.report(c.n)
	}
	return n, err
}
