package registry

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"
)

const (
	backoffBase = 200 * time.Millisecond
	backoffMax  = 10 * time.Second
	// maxRetryAfter is the longest Retry-After honoured; a registry asking
	// for more is treated as failing now, so that the next host is tried
	// instead of hanging.
	maxRetryAfter = time.Minute
)

// request is one API call to an endpoint.
type request struct {
	ep     *endpoint
	method string
	url    string
	header http.Header
	// body returns a fresh body for each attempt; nil for none.
	body func() (io.ReadCloser, error)
	size int64
	// scopes are the token scopes the call needs.
	scopes []string
	// stream says body can be read only once: no retries, no
	// re-authentication.
	stream bool
	// upload selects the client without a first-byte timeout.
	upload bool
}

// do sends rq with authentication and retries, and returns the response for
// the caller to judge (any status). The response holds a slot of the host's
// semaphore until its body is closed.
func (r *Resolver) do(ctx context.Context, rq *request) (*http.Response, error) {
	var (
		attempt  int
		reauthed bool
	)
	for {
		hreq, err := r.newHTTPRequest(ctx, rq)
		if err != nil {
			return nil, err
		}
		sent, err := r.auth.authorize(ctx, rq.ep, rq.scopes, hreq)
		if err != nil {
			return nil, err
		}
		release, err := acquire(ctx, rq.ep.sem)
		if err != nil {
			return nil, err
		}
		client := rq.ep.clients.normal
		if rq.upload {
			client = rq.ep.clients.upload
		}
		resp, err := client.Do(hreq)
		if err != nil {
			release()
			if ctx.Err() == nil && !rq.stream && attempt < r.retries && brokenConn(err) {
				d := r.backoff(attempt)
				r.log.DebugContext(ctx, "registry request failed, retrying", "method", rq.method, "url", rq.url, "error", err, "in", d)
				if err := sleep(ctx, d); err != nil {
					return nil, err
				}
				attempt++
				continue
			}
			return nil, err
		}
		if resp.StatusCode == http.StatusUnauthorized && !reauthed && !rq.stream {
			chs := parseChallenges(resp.Header.Values("WWW-Authenticate"))
			scopes, retry := r.auth.challenged(ctx, rq.ep, chs, sent, rq.scopes)
			if retry {
				drain(resp.Body)
				release()
				rq.scopes = scopes
				reauthed = true
				continue
			}
		}
		if retryableStatus(resp.StatusCode) && !rq.stream && attempt < r.retries {
			d, ok := retryAfter(resp.Header.Get("Retry-After"))
			if !ok {
				d = r.backoff(attempt)
			}
			if d <= maxRetryAfter {
				drain(resp.Body)
				release()
				r.log.DebugContext(ctx, "registry busy, retrying", "method", rq.method, "url", rq.url, "status", resp.Status, "in", d)
				if err := sleep(ctx, d); err != nil {
					return nil, err
				}
				attempt++
				continue
			}
		}
		resp.Body = &releasingBody{ReadCloser: resp.Body, release: release}
		return resp, nil
	}
}

func (r *Resolver) newHTTPRequest(ctx context.Context, rq *request) (*http.Request, error) {
	var body io.ReadCloser
	if rq.body != nil {
		b, err := rq.body()
		if err != nil {
			return nil, err
		}
		body = b
	}
	hreq, err := http.NewRequestWithContext(ctx, rq.method, rq.url, body)
	if err != nil {
		return nil, err
	}
	if rq.body != nil {
		hreq.ContentLength = rq.size
		if rq.size == 0 {
			body.Close()
			hreq.Body = http.NoBody
		}
		if !rq.stream {
			// Lets the client replay the body on 307/308 redirects.
			hreq.GetBody = rq.body
		}
	}
	if hreq.URL.Host == rq.ep.Host.Host {
		// Configured headers are for the configured host, not for an
		// upload location elsewhere.
		for k, vs := range rq.ep.Header {
			for _, v := range vs {
				hreq.Header.Add(k, v)
			}
		}
	}
	for k, vs := range rq.header {
		hreq.Header[k] = vs
	}
	if r.opts.UserAgent != "" {
		hreq.Header.Set("User-Agent", r.opts.UserAgent)
	}
	return hreq, nil
}

func acquire(ctx context.Context, sem chan struct{}) (release func(), err error) {
	select {
	case sem <- struct{}{}:
		return sync.OnceFunc(func() { <-sem }), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type releasingBody struct {
	io.ReadCloser
	release func()
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.release()
	return err
}

func retryableStatus(code int) bool {
	return code == http.StatusTooManyRequests || (code >= 500 && code != http.StatusNotImplemented)
}

// brokenConn reports whether err is a connection that broke after it was
// made. Refused connections, TLS failures and timeouts are not retried: the
// host is down or misconfigured, and the next host is a better bet.
func brokenConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED)
}

// backoff is the wait before retry attempt+1: exponential from 200ms, with
// jitter so that clients cut off together do not come back together.
func (r *Resolver) backoff(attempt int) time.Duration {
	d := backoffBase << min(attempt, 10)
	d = min(d, backoffMax)
	return d/2 + rand.N(d)
}

// retryAfter parses a Retry-After header (seconds or an HTTP date).
func retryAfter(v string) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
