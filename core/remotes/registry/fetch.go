package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/remotes"
)

const (
	defaultChunkSize = 8 << 20
	defaultParallel  = 4
)

// RangeFetcher is what the Fetchers of this package offer beyond
// remotes.Fetcher; callers type-assert to it.
type RangeFetcher interface {
	remotes.Fetcher
	// FetchRange returns length bytes of desc from offset (to the end if
	// length < 0).
	FetchRange(ctx context.Context, desc ocispec.Descriptor, offset, length int64) (io.ReadCloser, error)
	// FetchParallel writes desc to w in chunks fetched in parallel when the
	// registry supports Range requests, and sequentially otherwise. The
	// digest is not checked: the caller verifies what w received.
	FetchParallel(ctx context.Context, desc ocispec.Descriptor, w io.WriterAt, chunkSize int64, parallel int) error
}

type fetcher struct {
	r   *Resolver
	ref reference
}

var _ RangeFetcher = (*fetcher)(nil)

// Fetcher returns a Fetcher for ref's repository (tag and digest are
// ignored); it also implements RangeFetcher.
func (r *Resolver) Fetcher(ctx context.Context, ref string) (remotes.Fetcher, error) {
	rf, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	return &fetcher{r: r, ref: rf}, nil
}

func (f *fetcher) subject(desc ocispec.Descriptor) string {
	return f.ref.name() + "@" + desc.Digest.String()
}

func (f *fetcher) objectURL(ep *endpoint, desc ocispec.Descriptor) string {
	kind := "blobs"
	if isManifestType(desc.MediaType) {
		kind = "manifests"
	}
	return ep.url(f.ref, nil, kind, desc.Digest.String())
}

func (f *fetcher) header(desc ocispec.Descriptor) http.Header {
	if !isManifestType(desc.MediaType) {
		return nil
	}
	return http.Header{"Accept": {desc.MediaType + ", " + manifestAccept}}
}

// knownSize returns desc's size, or -1 when the descriptor does not say:
// a zero size is taken at its word only for the empty blob.
func knownSize(desc ocispec.Descriptor) int64 {
	if desc.Size > 0 || desc.Digest == digest.Canonical.FromBytes(nil) {
		return desc.Size
	}
	return -1
}

// Fetch streams desc from the first pull host that has it. A connection
// that breaks mid-body is resumed with a Range request; the size read is
// checked against desc.Size.
func (f *fetcher) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	return f.open(ctx, desc, 0, knownSize(desc), false)
}

// FetchRange returns length bytes of desc from offset (to the end if
// length < 0).
func (f *fetcher) FetchRange(ctx context.Context, desc ocispec.Descriptor, offset, length int64) (io.ReadCloser, error) {
	size := knownSize(desc)
	if offset < 0 || (size >= 0 && offset > size) {
		return nil, fmt.Errorf("%s: offset %d out of range: %w", f.subject(desc), offset, errdefs.ErrOutOfRange)
	}
	end := int64(-1)
	if length >= 0 {
		end = offset + length
	}
	if size >= 0 && (end < 0 || end > size) {
		end = size
	}
	if end == offset {
		return io.NopCloser(strings.NewReader("")), nil
	}
	return f.open(ctx, desc, offset, end, offset > 0 || end != size)
}

func (f *fetcher) open(ctx context.Context, desc ocispec.Descriptor, off, end int64, ranged bool) (io.ReadCloser, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("%s: descriptor digest: %v: %w", f.ref.name(), err, errdefs.ErrInvalidArgument)
	}
	eps, err := f.r.endpoints(f.ref, canPull)
	if err != nil {
		return nil, err
	}
	var rc io.ReadCloser
	err = f.r.tryHosts(ctx, f.subject(desc), eps, func(ep *endpoint) error {
		br := f.newReader(ctx, ep, desc, off, end, ranged)
		if err := br.connect(); err != nil {
			return err
		}
		rc = br
		return nil
	})
	return rc, err
}

func (f *fetcher) newReader(ctx context.Context, ep *endpoint, desc ocispec.Descriptor, off, end int64, ranged bool) *blobReader {
	return &blobReader{
		ctx:    ctx,
		f:      f,
		ep:     ep,
		desc:   desc,
		url:    f.objectURL(ep, desc),
		off:    off,
		end:    end,
		ranged: ranged,
	}
}

// blobReader reads [off, end) of a blob from one host, resuming with Range
// requests when the connection breaks.
type blobReader struct {
	ctx  context.Context
	f    *fetcher
	ep   *endpoint
	desc ocispec.Descriptor
	url  string

	off    int64 // next byte to read
	end    int64 // end of the wanted range, -1 if unknown
	ranged bool  // the caller asked for part of the blob

	body io.ReadCloser
	// clamp says body runs past end (a 200 answer to a range request) and
	// is cut there.
	clamp   bool
	resumes int
	err     error // sticky: io.EOF, or why reading stopped
}

var errClosed = errors.New("reader closed")

// connect requests the rest of the range and checks the answer.
func (b *blobReader) connect() error {
	var h http.Header
	if fh := b.f.header(b.desc); fh != nil {
		h = fh.Clone()
	}
	partial := b.off > 0 || b.ranged
	if partial {
		if h == nil {
			h = http.Header{}
		}
		r := "bytes=" + strconv.FormatInt(b.off, 10) + "-"
		if b.end >= 0 {
			r += strconv.FormatInt(b.end-1, 10)
		}
		h.Set("Range", r)
	}
	resp, err := b.f.r.do(b.ctx, &request{
		ep:     b.ep,
		method: http.MethodGet,
		url:    b.url,
		header: h,
		scopes: []string{scope(b.f.ref.repo, "pull")},
	})
	if err != nil {
		return err
	}
	size := knownSize(b.desc)
	switch resp.StatusCode {
	case http.StatusOK:
		if b.off > 0 {
			resp.Body.Close()
			return failure(errdefs.ErrNotImplemented, true, "registry ignored Range: bytes=%d-", b.off)
		}
		if size >= 0 && resp.ContentLength >= 0 && resp.ContentLength != size {
			resp.Body.Close()
			return failure(errdefs.ErrDataLoss, true, "served %d bytes, descriptor says %d", resp.ContentLength, size)
		}
		b.clamp = b.end >= 0 && b.end != size
	case http.StatusPartialContent:
		if !partial {
			resp.Body.Close()
			return failure(errdefs.ErrDataLoss, true, "206 Partial Content to a request without Range")
		}
		first, last, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || first != b.off || (b.end >= 0 && last+1 != b.end) || (size >= 0 && total >= 0 && total != size) {
			resp.Body.Close()
			return failure(errdefs.ErrDataLoss, true, "Content-Range %q does not match the request for bytes %d-%d of %d",
				resp.Header.Get("Content-Range"), b.off, b.end-1, size)
		}
		b.clamp = false
	default:
		return statusErr(resp)
	}
	b.body = newStallBody(resp.Body, b.f.r.opts.StallTimeout)
	return nil
}

// stallBody fails a Read that waits longer than timeout for data, by
// closing the body under it: the connection may be alive while the
// registry sends nothing.
type stallBody struct {
	body    io.ReadCloser
	timeout time.Duration
	timer   *time.Timer
	stalled atomic.Bool
}

func newStallBody(body io.ReadCloser, timeout time.Duration) *stallBody {
	s := &stallBody{body: body, timeout: timeout}
	s.timer = time.AfterFunc(timeout, func() {
		s.stalled.Store(true)
		body.Close()
	})
	s.timer.Stop()
	return s
}

func (s *stallBody) Read(p []byte) (int, error) {
	s.timer.Reset(s.timeout)
	n, err := s.body.Read(p)
	s.timer.Stop()
	if err != nil && s.stalled.Load() {
		err = fmt.Errorf("the registry sent nothing for %s", s.timeout)
	}
	return n, err
}

func (s *stallBody) Close() error {
	s.timer.Stop()
	return s.body.Close()
}

// parseContentRange parses "bytes first-last/total" (total may be "*",
// returned as -1).
func parseContentRange(v string) (first, last, total int64, ok bool) {
	v, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(v, "/")
	if !found {
		return 0, 0, 0, false
	}
	f, l, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	var err1, err2 error
	first, err1 = strconv.ParseInt(strings.TrimSpace(f), 10, 64)
	last, err2 = strconv.ParseInt(strings.TrimSpace(l), 10, 64)
	if err1 != nil || err2 != nil || last < first {
		return 0, 0, 0, false
	}
	total = -1
	if tot != "*" {
		t, err := strconv.ParseInt(strings.TrimSpace(tot), 10, 64)
		if err != nil {
			return 0, 0, 0, false
		}
		total = t
	}
	return first, last, total, true
}

func (b *blobReader) fail(kind error, cause error, format string, args ...any) error {
	return &hostsError{
		subject: b.f.subject(b.desc),
		kind:    kind,
		reasons: []string{b.ep.base + ": " + fmt.Sprintf(format, args...)},
		cause:   cause,
	}
}

func (b *blobReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, b.err
	}
	for {
		if b.err != nil {
			return 0, b.err
		}
		if b.body == nil {
			b.resume()
			continue
		}
		q := p
		if b.clamp {
			if b.off >= b.end {
				b.closeBody()
				b.err = io.EOF
				continue
			}
			q = p[:min(int64(len(p)), b.end-b.off)]
		}
		n, err := b.body.Read(q)
		b.off += int64(n)
		if b.end >= 0 && b.off > b.end {
			b.closeBody()
			b.err = b.fail(errdefs.ErrDataLoss, nil, "served more than the %d bytes expected", b.end)
			return 0, b.err
		}
		switch {
		case err == nil:
			return n, nil
		case err == io.EOF:
			b.closeBody()
			b.err = io.EOF
			if b.end >= 0 && b.off < b.end {
				b.err = b.fail(errdefs.ErrDataLoss, io.ErrUnexpectedEOF, "short read: %d of %d bytes", b.off, b.end)
			}
		default:
			b.closeBody()
			switch {
			case b.ctx.Err() != nil:
				b.err = b.fail(b.ctx.Err(), err, "%v", err)
			case b.resumes >= b.f.r.retries:
				b.err = b.fail(errdefs.ErrUnavailable, err, "connection broken at byte %d after %d resumes: %v", b.off, b.resumes, err)
			default:
				b.f.r.log.WarnContext(b.ctx, "blob download broken, resuming", "blob", b.f.subject(b.desc), "host", b.ep.base, "offset", b.off, "error", err)
			}
		}
		if n > 0 {
			return n, nil
		}
	}
}

// resume reconnects after a broken body, from the next byte wanted.
func (b *blobReader) resume() {
	b.resumes++
	if err := sleep(b.ctx, b.f.r.backoff(b.resumes-1)); err != nil {
		b.err = b.fail(err, err, "%v", err)
		return
	}
	if err := b.connect(); err != nil {
		he := toHostErr(err)
		b.err = b.fail(he.kind, he.cause, "resuming at byte %d: %s", b.off, he.reason)
	}
}

func (b *blobReader) closeBody() {
	if b.body != nil {
		b.body.Close()
		b.body = nil
	}
}

// Close releases the connection; reading after Close fails.
func (b *blobReader) Close() error {
	b.closeBody()
	if b.err == nil {
		b.err = errClosed
	}
	return nil
}

// FetchParallel writes desc to w, in chunks of chunkSize bytes fetched by
// up to parallel requests when the registry supports Range requests (told
// by Accept-Ranges on a HEAD of the blob, or by a 206 to a one-byte probe).
// Otherwise, or for a blob of one chunk, it fetches sequentially. Each
// chunk resumes on its own if its connection breaks.
func (f *fetcher) FetchParallel(ctx context.Context, desc ocispec.Descriptor, w io.WriterAt, chunkSize int64, parallel int) error {
	if err := desc.Digest.Validate(); err != nil {
		return fmt.Errorf("%s: descriptor digest: %v: %w", f.ref.name(), err, errdefs.ErrInvalidArgument)
	}
	if chunkSize <= 0 {
		chunkSize = defaultChunkSize
	}
	if parallel <= 0 {
		parallel = defaultParallel
	}
	size := desc.Size
	var ep *endpoint
	if size > chunkSize && parallel > 1 {
		var err error
		if ep, err = f.rangeHost(ctx, desc); err != nil {
			return err
		}
	}
	if ep == nil {
		rc, err := f.Fetch(ctx, desc)
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.Copy(io.NewOffsetWriter(w, 0), rc)
		return err
	}

	chunks := (size + chunkSize - 1) / chunkSize
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		once     sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	for range min(int64(parallel), chunks) {
		wg.Go(func() {
			for cctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= chunks {
					return
				}
				start := i * chunkSize
				end := min(size, start+chunkSize)
				if err := f.fetchChunk(cctx, ep, desc, start, end, w); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

func (f *fetcher) fetchChunk(ctx context.Context, ep *endpoint, desc ocispec.Descriptor, start, end int64, w io.WriterAt) error {
	br := f.newReader(ctx, ep, desc, start, end, true)
	if err := br.connect(); err != nil {
		he := toHostErr(err)
		return &hostsError{subject: f.subject(desc), kind: he.kind, cause: he.cause,
			reasons: []string{fmt.Sprintf("%s: bytes %d-%d: %s", ep.base, start, end-1, he.reason)}}
	}
	defer br.Close()
	n, err := io.Copy(io.NewOffsetWriter(w, start), br)
	if err != nil {
		return err
	}
	if n != end-start {
		return br.fail(errdefs.ErrDataLoss, nil, "bytes %d-%d: read %d bytes", start, end-1, n)
	}
	return nil
}

// rangeHost returns the first pull host that has desc and serves Range
// requests, or nil if the first host that has it does not.
func (f *fetcher) rangeHost(ctx context.Context, desc ocispec.Descriptor) (*endpoint, error) {
	eps, err := f.r.endpoints(f.ref, canPull)
	if err != nil {
		return nil, err
	}
	var chosen *endpoint
	err = f.r.tryHosts(ctx, f.subject(desc), eps, func(ep *endpoint) error {
		u := f.objectURL(ep, desc)
		scopes := []string{scope(f.ref.repo, "pull")}
		resp, err := f.r.do(ctx, &request{ep: ep, method: http.MethodHead, url: u, header: f.header(desc), scopes: scopes})
		if err != nil {
			return err
		}
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK && strings.Contains(resp.Header.Get("Accept-Ranges"), "bytes"):
			chosen = ep
			return nil
		case resp.StatusCode == http.StatusNotFound:
			return statusErr(resp)
		}
		// No word on ranges (or HEAD is refused, as by storage that
		// signs redirects for GET only): ask for one byte.
		h := f.header(desc)
		if h == nil {
			h = http.Header{}
		}
		h.Set("Range", "bytes=0-0")
		resp, err = f.r.do(ctx, &request{ep: ep, method: http.MethodGet, url: u, header: h, scopes: scopes})
		if err != nil {
			return err
		}
		switch resp.StatusCode {
		case http.StatusPartialContent:
			drain(resp.Body)
			chosen = ep
			return nil
		case http.StatusOK:
			resp.Body.Close()
			return nil
		}
		return statusErr(resp)
	})
	return chosen, err
}
