package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/remotes"
)

const (
	// AnnotationSourceRepository on a blob's descriptor names a repository
	// of the same registry that has the blob, to mount it from instead of
	// uploading it. The value is a repository path, optionally prefixed
	// with the registry host. containerd's equivalent, one annotation per
	// registry host listing repositories (images.DistributionSource), is
	// read as well.
	AnnotationSourceRepository = "hull.io/distribution.source.repository"
)

// PushOption configures a Pusher.
type PushOption func(*pushOptions)

type pushOptions struct {
	mountFrom string
}

// WithMountFrom names a repository of the same registry that blobs may be
// mounted from (a descriptor's own annotation takes precedence).
func WithMountFrom(repo string) PushOption {
	return func(o *pushOptions) { o.mountFrom = repo }
}

type pusher struct {
	r    *Resolver
	ref  reference
	ep   *endpoint
	opts pushOptions
}

// Pusher returns a Pusher for ref's repository on its first host with the
// push capability.
func (r *Resolver) Pusher(ctx context.Context, ref string) (remotes.Pusher, error) {
	return r.PusherWith(ctx, ref)
}

// PusherWith is Pusher with options.
//
// Manifests are PUT by tag when ref has a tag and either no digest or the
// manifest's digest; otherwise by digest. An image is pushed children
// first, so with a tag-only reference the tag ends on the root, as with
// containerd.
func (r *Resolver) PusherWith(ctx context.Context, ref string, opts ...PushOption) (remotes.Pusher, error) {
	rf, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	eps, err := r.endpoints(rf, canPush)
	if err != nil {
		return nil, err
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("%s: no host with the push capability: %w", ref, errdefs.ErrNotFound)
	}
	p := &pusher{r: r, ref: rf, ep: eps[0]}
	for _, o := range opts {
		o(&p.opts)
	}
	return p, nil
}

func (p *pusher) subject(desc ocispec.Descriptor) string {
	return p.ref.name() + "@" + desc.Digest.String()
}

// wrap names the subject and host in an error from talking to the host.
func (p *pusher) wrap(desc ocispec.Descriptor, err error) error {
	if err == nil {
		return nil
	}
	var hse *hostsError
	if errors.As(err, &hse) {
		return err
	}
	he := toHostErr(err)
	kind := he.kind
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		kind = err
	}
	return &hostsError{subject: p.subject(desc), kind: kind, reasons: []string{p.ep.base + ": " + he.reason}, cause: he.cause}
}

func (p *pusher) alreadyExists(desc ocispec.Descriptor, how string) error {
	return &hostsError{subject: p.subject(desc), kind: errdefs.ErrAlreadyExists, reasons: []string{p.ep.base + ": " + how}}
}

func (p *pusher) scopes(extra ...string) []string {
	return append([]string{scope(p.ref.repo, "pull,push")}, extra...)
}

// Push returns a writer for desc, or AlreadyExists if the registry has it
// (for a blob: also after mounting it from another repository).
func (p *pusher) Push(ctx context.Context, desc ocispec.Descriptor) (content.Writer, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("%s: descriptor digest: %v: %w", p.ref.name(), err, errdefs.ErrInvalidArgument)
	}
	if isManifestType(desc.MediaType) {
		return p.pushManifest(ctx, desc)
	}
	return p.pushBlob(ctx, desc)
}

func (p *pusher) manifestTarget(desc ocispec.Descriptor) string {
	if p.ref.tag != "" && (p.ref.dgst == "" || p.ref.dgst == desc.Digest) {
		return p.ref.tag
	}
	return desc.Digest.String()
}

func (p *pusher) pushManifest(ctx context.Context, desc ocispec.Descriptor) (content.Writer, error) {
	if desc.Size > maxManifestSize {
		return nil, fmt.Errorf("%s: manifest of %d bytes is larger than %d: %w", p.subject(desc), desc.Size, maxManifestSize, errdefs.ErrInvalidArgument)
	}
	target := p.manifestTarget(desc)
	u := p.ep.url(p.ref, nil, "manifests", target)
	resp, err := p.r.do(ctx, &request{ep: p.ep, method: http.MethodHead, url: u,
		header: http.Header{"Accept": {desc.MediaType + ", " + manifestAccept}}, scopes: p.scopes()})
	if err != nil {
		return nil, p.wrap(desc, err)
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		if resp.Header.Get("Docker-Content-Digest") == desc.Digest.String() {
			return nil, p.alreadyExists(desc, "manifest "+target+" exists")
		}
	case resp.StatusCode != http.StatusNotFound:
		return nil, p.wrap(desc, statusErr(resp))
	}
	return &manifestWriter{p: p, desc: desc, url: u, started: time.Now(), digester: digest.Canonical.Digester()}, nil
}

// mountSource returns the repository to mount desc from, if any.
func (p *pusher) mountSource(desc ocispec.Descriptor) string {
	var cands []string
	if v := desc.Annotations[AnnotationSourceRepository]; v != "" {
		cands = append(cands, v)
	}
	if v := images.DistributionSource(desc.Annotations, p.ref.host); v != "" {
		cands = append(cands, strings.Split(v, ",")...)
	}
	if p.opts.mountFrom != "" {
		cands = append(cands, p.opts.mountFrom)
	}
	for _, c := range cands {
		c = strings.TrimSpace(c)
		c = strings.TrimPrefix(c, p.ref.host+"/")
		if c != "" && c != p.ref.repo {
			return c
		}
	}
	return ""
}

func (p *pusher) pushBlob(ctx context.Context, desc ocispec.Descriptor) (content.Writer, error) {
	if desc.Size < 0 || (desc.Size == 0 && knownSize(desc) < 0) {
		return nil, fmt.Errorf("%s: blob push needs the descriptor's size: %w", p.subject(desc), errdefs.ErrInvalidArgument)
	}
	resp, err := p.r.do(ctx, &request{ep: p.ep, method: http.MethodHead,
		url: p.ep.url(p.ref, nil, "blobs", desc.Digest.String()), scopes: p.scopes()})
	if err != nil {
		return nil, p.wrap(desc, err)
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return nil, p.alreadyExists(desc, "blob exists")
	case http.StatusNotFound:
	default:
		return nil, p.wrap(desc, statusErr(resp))
	}

	var loc *url.URL
	if from := p.mountSource(desc); from != "" {
		q := url.Values{"mount": {desc.Digest.String()}, "from": {from}}
		resp, err := p.r.do(ctx, &request{ep: p.ep, method: http.MethodPost,
			url:    p.ep.url(p.ref, q, "blobs", "uploads", ""),
			body:   func() (io.ReadCloser, error) { return http.NoBody, nil },
			scopes: p.scopes(scope(from, "pull"))})
		if err != nil {
			return nil, p.wrap(desc, err)
		}
		switch resp.StatusCode {
		case http.StatusCreated:
			drain(resp.Body)
			return nil, p.alreadyExists(desc, "mounted from "+from)
		case http.StatusAccepted:
			// Not mountable, but the registry started an upload.
			drain(resp.Body)
			if loc, err = location(resp); err != nil {
				return nil, p.wrap(desc, err)
			}
		default:
			he := statusErr(resp)
			p.r.log.DebugContext(ctx, "blob mount refused, uploading", "blob", p.subject(desc), "from", from, "reason", he.reason)
		}
	}
	w := &blobWriter{p: p, ctx: ctx, desc: desc, loc: loc, started: time.Now(), digester: digest.Canonical.Digester()}
	if loc == nil {
		if err := w.startSession(); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// location returns the upload URL of a POST or PATCH answer.
func location(resp *http.Response) (*url.URL, error) {
	l := resp.Header.Get("Location")
	if l == "" {
		return nil, failure(errdefs.ErrUnknown, false, "%s without a Location header", resp.Status)
	}
	u, err := resp.Request.URL.Parse(l)
	if err != nil {
		return nil, failure(errdefs.ErrUnknown, false, "bad upload Location: %v", err)
	}
	return u, nil
}

// manifestWriter buffers a manifest and PUTs it on Commit: manifests are
// small, and a buffered body can be retried.
type manifestWriter struct {
	p        *pusher
	desc     ocispec.Descriptor
	url      string
	buf      bytes.Buffer
	digester digest.Digester
	started  time.Time
	updated  time.Time
	closed   bool
}

func (w *manifestWriter) Write(b []byte) (int, error) {
	if w.closed {
		return 0, fmt.Errorf("%s: writer closed: %w", w.p.subject(w.desc), errdefs.ErrFailedPrecondition)
	}
	if w.buf.Len()+len(b) > maxManifestSize {
		return 0, fmt.Errorf("%s: manifest larger than %d bytes: %w", w.p.subject(w.desc), maxManifestSize, errdefs.ErrInvalidArgument)
	}
	w.buf.Write(b)
	w.digester.Hash().Write(b)
	w.updated = time.Now()
	return len(b), nil
}

func (w *manifestWriter) Digest() digest.Digest { return w.digester.Digest() }

func (w *manifestWriter) Status() (content.Status, error) {
	return content.Status{Ref: w.p.subject(w.desc), Offset: int64(w.buf.Len()), Total: w.desc.Size,
		Expected: w.desc.Digest, StartedAt: w.started, UpdatedAt: w.updated}, nil
}

func (w *manifestWriter) Truncate(size int64) error {
	if size != 0 {
		return fmt.Errorf("%s: truncate to %d: %w", w.p.subject(w.desc), size, errdefs.ErrNotImplemented)
	}
	w.buf.Reset()
	w.digester = digest.Canonical.Digester()
	return nil
}

func (w *manifestWriter) Close() error {
	w.closed = true
	return nil
}

func (w *manifestWriter) Commit(ctx context.Context, size int64, expected digest.Digest, _ ...content.CommitOpt) error {
	if w.closed {
		return fmt.Errorf("%s: writer closed: %w", w.p.subject(w.desc), errdefs.ErrFailedPrecondition)
	}
	if err := checkCommit(w.p.subject(w.desc), w.desc, int64(w.buf.Len()), w.Digest(), size, expected); err != nil {
		return err
	}
	body := w.buf.Bytes()
	resp, err := w.p.r.do(ctx, &request{
		ep:     w.p.ep,
		method: http.MethodPut,
		url:    w.url,
		header: http.Header{"Content-Type": {w.desc.MediaType}},
		body:   func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil },
		size:   int64(len(body)),
		scopes: w.p.scopes(),
	})
	if err != nil {
		return w.p.wrap(w.desc, err)
	}
	if resp.StatusCode/100 != 2 {
		return w.p.wrap(w.desc, statusErr(resp))
	}
	drain(resp.Body)
	if d := resp.Header.Get("Docker-Content-Digest"); d != "" && d != w.desc.Digest.String() {
		w.p.r.log.WarnContext(ctx, "registry reports another digest for the pushed manifest", "manifest", w.p.subject(w.desc), "registry_digest", d)
	}
	w.closed = true
	return nil
}

// checkCommit enforces the content.Writer contract: what was written must
// match the descriptor and Commit's arguments.
func checkCommit(subject string, desc ocispec.Descriptor, n int64, got digest.Digest, size int64, expected digest.Digest) error {
	if size > 0 && size != n {
		return fmt.Errorf("%s: unexpected commit size %d, expected %d: %w", subject, n, size, errdefs.ErrFailedPrecondition)
	}
	if n != desc.Size {
		return fmt.Errorf("%s: unexpected commit size %d, descriptor says %d: %w", subject, n, desc.Size, errdefs.ErrFailedPrecondition)
	}
	if expected != "" && expected != got {
		return fmt.Errorf("%s: unexpected commit digest %s, expected %s: %w", subject, got, expected, errdefs.ErrFailedPrecondition)
	}
	if got != desc.Digest {
		return fmt.Errorf("%s: unexpected commit digest %s, descriptor says %s: %w", subject, got, desc.Digest, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// blobWriter streams a blob to the registry as it is written: one PUT to
// the upload location with ?digest= and the descriptor's size as
// Content-Length, its body fed through a pipe. The blob's last byte is held
// back until Commit has checked size and digest, so that a mismatch aborts
// the upload instead of completing it.
type blobWriter struct {
	p    *pusher
	ctx  context.Context // Push's: the upload lives as long as it allows
	desc ocispec.Descriptor
	loc  *url.URL // upload session; nil when one must be started

	digester digest.Digester
	n        int64
	started  time.Time
	updated  time.Time

	held   []byte // the last byte, sent by Commit
	pw     *io.PipeWriter
	cancel context.CancelFunc
	done   chan struct{} // closed when the PUT has returned
	resp   *http.Response
	err    error // the PUT's error, valid after done

	// failed is why the upload in progress failed; a Truncate(0) starts
	// over.
	failed    error
	committed bool
	closed    bool
}

func (w *blobWriter) subject() string { return w.p.subject(w.desc) }

// startSession POSTs for a new upload location.
func (w *blobWriter) startSession() error {
	resp, err := w.p.r.do(w.ctx, &request{ep: w.p.ep, method: http.MethodPost,
		url:    w.p.ep.url(w.p.ref, nil, "blobs", "uploads", ""),
		body:   func() (io.ReadCloser, error) { return http.NoBody, nil },
		scopes: w.p.scopes()})
	if err != nil {
		return w.p.wrap(w.desc, err)
	}
	if resp.StatusCode != http.StatusAccepted {
		return w.p.wrap(w.desc, statusErr(resp))
	}
	drain(resp.Body)
	loc, err := location(resp)
	if err != nil {
		return w.p.wrap(w.desc, err)
	}
	w.loc = loc
	return nil
}

// startPut begins the PUT whose body is what Write sends.
func (w *blobWriter) startPut() error {
	if w.loc == nil {
		if err := w.startSession(); err != nil {
			return err
		}
	}
	u := *w.loc
	q := u.Query()
	q.Set("digest", w.desc.Digest.String())
	u.RawQuery = q.Encode()

	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(w.ctx)
	w.pw, w.cancel, w.done = pw, cancel, make(chan struct{})
	go func() {
		defer close(w.done)
		w.resp, w.err = w.p.r.do(ctx, &request{
			ep:     w.p.ep,
			method: http.MethodPut,
			url:    u.String(),
			header: http.Header{"Content-Type": {"application/octet-stream"}},
			body:   func() (io.ReadCloser, error) { return pr, nil },
			size:   w.desc.Size,
			scopes: w.p.scopes(),
			stream: true,
			upload: true,
		})
		// Unblock a Write the transport will no longer read.
		pr.CloseWithError(errUploadEnded)
	}()
	return nil
}

var errUploadEnded = errors.New("upload request ended")

// putResult waits for the PUT and returns its error, if any.
func (w *blobWriter) putResult(ctx context.Context) error {
	select {
	case <-w.done:
	case <-ctx.Done():
		w.cancel()
		<-w.done
		if w.resp != nil {
			w.resp.Body.Close()
		}
		return w.p.wrap(w.desc, ctx.Err())
	}
	if w.err != nil {
		return w.p.wrap(w.desc, w.err)
	}
	if w.resp.StatusCode != http.StatusCreated {
		return w.p.wrap(w.desc, statusErr(w.resp))
	}
	drain(w.resp.Body)
	return nil
}

// abortPut ends the PUT without completing its body, so the registry
// does not commit the blob.
func (w *blobWriter) abortPut(why error) {
	if w.pw == nil {
		return
	}
	w.pw.CloseWithError(why)
	w.cancel()
	<-w.done
	if w.resp != nil {
		w.resp.Body.Close()
	}
	w.pw, w.resp, w.err = nil, nil, nil
}

func (w *blobWriter) Write(b []byte) (int, error) {
	if w.closed || w.committed {
		return 0, fmt.Errorf("%s: writer closed: %w", w.subject(), errdefs.ErrFailedPrecondition)
	}
	if w.n+int64(len(b)) > w.desc.Size {
		return 0, fmt.Errorf("%s: writing past the descriptor's size %d: %w", w.subject(), w.desc.Size, errdefs.ErrFailedPrecondition)
	}
	if len(b) == 0 {
		return 0, nil
	}
	if w.failed != nil {
		return 0, w.failed
	}
	if err := w.ctx.Err(); err != nil {
		return 0, w.p.wrap(w.desc, err)
	}
	if w.pw == nil {
		if err := w.startPut(); err != nil {
			return 0, err
		}
	}
	send := b
	if w.n+int64(len(b)) == w.desc.Size {
		send, w.held = b[:len(b)-1], []byte{b[len(b)-1]}
	}
	var (
		n   int
		err error
	)
	if len(send) > 0 {
		n, err = w.pw.Write(send)
	}
	if n == len(send) {
		n = len(b)
	}
	w.digester.Hash().Write(b[:n])
	w.n += int64(n)
	w.updated = time.Now()
	if err != nil {
		w.held = nil
		w.failed = w.endedEarly(w.ctx, err)
		return n, w.failed
	}
	return n, nil
}

// endedEarly explains a write to a PUT that is no longer reading: its
// answer says why.
func (w *blobWriter) endedEarly(ctx context.Context, writeErr error) error {
	if err := w.putResult(ctx); err != nil {
		return err
	}
	return w.p.wrap(w.desc, fmt.Errorf("registry answered before the upload finished: %w", writeErr))
}

func (w *blobWriter) Digest() digest.Digest { return w.digester.Digest() }

func (w *blobWriter) Status() (content.Status, error) {
	return content.Status{Ref: w.subject(), Offset: w.n, Total: w.desc.Size, Expected: w.desc.Digest,
		StartedAt: w.started, UpdatedAt: w.updated}, nil
}

// Truncate(0) restarts the upload in a new session: bytes already sent
// cannot be taken back.
func (w *blobWriter) Truncate(size int64) error {
	if size != 0 {
		return fmt.Errorf("%s: truncate to %d: %w", w.subject(), size, errdefs.ErrNotImplemented)
	}
	if w.n == 0 {
		return nil
	}
	w.abortPut(fmt.Errorf("truncated: %w", errdefs.ErrAborted))
	w.loc = nil
	w.n = 0
	w.held = nil
	w.failed = nil
	w.digester = digest.Canonical.Digester()
	return nil
}

func (w *blobWriter) Commit(ctx context.Context, size int64, expected digest.Digest, _ ...content.CommitOpt) error {
	if w.closed || w.committed {
		return fmt.Errorf("%s: writer closed: %w", w.subject(), errdefs.ErrFailedPrecondition)
	}
	if w.failed != nil {
		return w.failed
	}
	if err := checkCommit(w.subject(), w.desc, w.n, w.Digest(), size, expected); err != nil {
		w.abortPut(err)
		w.loc = nil
		return err
	}
	if w.pw == nil {
		// An empty blob: nothing was written, so no PUT is running.
		if err := w.startPut(); err != nil {
			return err
		}
	}
	if len(w.held) > 0 {
		if _, err := w.pw.Write(w.held); err != nil {
			w.failed = w.endedEarly(ctx, err)
			return w.failed
		}
	}
	w.pw.Close()
	if err := w.putResult(ctx); err != nil {
		w.failed = err
		return err
	}
	w.pw = nil
	w.committed = true
	return nil
}

// Close abandons an uncommitted upload.
func (w *blobWriter) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	if !w.committed {
		w.abortPut(fmt.Errorf("writer closed: %w", errdefs.ErrAborted))
	}
	return nil
}
