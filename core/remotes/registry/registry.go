// Package registry is hull's client for the OCI distribution HTTP API: it
// resolves references, fetches and pushes manifests and blobs, and lists tags,
// trying the hosts that remotes/hosts configures for a registry in order
// (mirrors first, then the registry itself).
//
// A Resolver keeps the per-host semaphores and the tokens of one caller's
// credentials. Its HTTP clients, with their connections, come from a
// Transports, which Resolvers of different callers can share: a daemon,
// which makes a Resolver per pull, keeps one Transports so that pulls reuse
// the connections of the pulls before them.
package registry

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/hullrt/hull/core/remotes"
	"github.com/hullrt/hull/core/remotes/hosts"
)

const (
	defaultMaxConcurrent    = 8
	defaultRetries          = 3
	defaultFirstByteTimeout = 10 * time.Second
	defaultStallTimeout     = 30 * time.Second
	defaultDialTimeout      = 30 * time.Second
	maxClients              = 64

	// maxManifestSize bounds what is read into memory for a manifest: the
	// distribution spec lets registries refuse larger ones, and anything
	// bigger is more likely a misbehaving server than a manifest.
	maxManifestSize = 4 << 20
)

// Options configure a Resolver.
type Options struct {
	// Hosts returns the hosts to try for a registry host name (the part of
	// a reference before the first '/'), in order. Required.
	Hosts func(registryHost string) ([]hosts.Host, error)
	// Credentials returns the username and secret for host (host[:port] of
	// the endpoint being contacted). An empty username with a secret is an
	// identity (refresh) token. Nil means anonymous.
	Credentials func(ctx context.Context, host string) (username, secret string, err error)
	// UserAgent is sent with every request.
	UserAgent string
	// MaxConcurrentPerHost bounds the requests in flight to one host:port,
	// counting a response until its body is closed; default 8.
	MaxConcurrentPerHost int
	// Retries is how many times a request is retried after 429, 5xx (but
	// not 501) or a broken connection, and how many times a blob download
	// is resumed; default 3, negative for none.
	Retries int
	// FirstByteTimeout bounds the wait for response headers, so that a
	// mirror that accepts connections but never answers costs seconds, not
	// minutes; default 10s. It does not apply to blob uploads, whose final
	// answer may take long while the registry verifies a large blob.
	FirstByteTimeout time.Duration
	// StallTimeout bounds the wait for the next bytes of a blob download:
	// a registry that stops sending in the middle of a body, with the
	// connection still open, would otherwise hold the pull for ever. The
	// download resumes from where it stopped, as after a broken
	// connection, up to Retries times; default 30s.
	StallTimeout time.Duration
	// Logger receives debug and warning messages; nil discards them.
	Logger *slog.Logger
	// Transports are the HTTP clients to use, shared with other
	// Resolvers; nil means clients of this Resolver's own.
	Transports *Transports
}

// Resolver implements remotes.Resolver over the OCI distribution API, and
// adds Tags and Check. It is safe for concurrent use.
type Resolver struct {
	opts    Options
	retries int
	log     *slog.Logger
	auth    *authCache

	mu   sync.Mutex
	sems map[string]chan struct{}
	// down records when a host last failed without answering (refused,
	// timed out, TLS failure). For downPenalty after that it is tried
	// last, so that a dead mirror costs one timeout per pull rather than
	// one per blob.
	down map[string]time.Time
}

// downPenalty is how long a host that did not answer is tried last.
const downPenalty = time.Minute

var _ remotes.Resolver = (*Resolver)(nil)

// NewResolver returns a Resolver using opts.
func NewResolver(opts Options) *Resolver {
	if opts.MaxConcurrentPerHost <= 0 {
		opts.MaxConcurrentPerHost = defaultMaxConcurrent
	}
	if opts.FirstByteTimeout <= 0 {
		opts.FirstByteTimeout = defaultFirstByteTimeout
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = defaultStallTimeout
	}
	retries := opts.Retries
	switch {
	case retries == 0:
		retries = defaultRetries
	case retries < 0:
		retries = 0
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Transports == nil {
		opts.Transports = NewTransports()
	}
	return &Resolver{
		opts:    opts,
		retries: retries,
		log:     log,
		auth:    newAuthCache(opts.Credentials, opts.UserAgent, log),
		sems:    make(map[string]chan struct{}),
		down:    make(map[string]time.Time),
	}
}

// CloseIdleConnections closes the idle connections of the Resolver's
// clients, which are those of every Resolver sharing its Transports.
func (r *Resolver) CloseIdleConnections() {
	r.opts.Transports.CloseIdleConnections()
}

// reference is a parsed host[:port]/path[:tag][@digest]. The full grammar
// belongs to core/reference; this is only what the wire protocol needs.
type reference struct {
	raw  string
	host string
	repo string
	tag  string
	dgst digest.Digest
}

func parseRef(s string) (reference, error) {
	ref := reference{raw: s}
	i := strings.IndexByte(s, '/')
	if i <= 0 || i == len(s)-1 {
		return ref, fmt.Errorf("reference %q: want host/repository[:tag][@digest]: %w", s, errdefs.ErrInvalidArgument)
	}
	ref.host, ref.repo = s[:i], s[i+1:]
	if j := strings.IndexByte(ref.repo, '@'); j >= 0 {
		d, err := digest.Parse(ref.repo[j+1:])
		if err != nil {
			return ref, fmt.Errorf("reference %q: %v: %w", s, err, errdefs.ErrInvalidArgument)
		}
		ref.dgst, ref.repo = d, ref.repo[:j]
	}
	last := strings.LastIndexByte(ref.repo, '/') + 1
	if j := strings.LastIndexByte(ref.repo[last:], ':'); j >= 0 {
		ref.tag = ref.repo[last+j+1:]
		ref.repo = ref.repo[:last+j]
		if ref.tag == "" {
			return ref, fmt.Errorf("reference %q: empty tag: %w", s, errdefs.ErrInvalidArgument)
		}
	}
	if ref.repo == "" || strings.HasSuffix(ref.repo, "/") || strings.Contains(ref.repo, "//") {
		return ref, fmt.Errorf("reference %q: bad repository path: %w", s, errdefs.ErrInvalidArgument)
	}
	return ref, nil
}

// name is host/repo, for messages about objects that are not the reference's
// own target.
func (r reference) name() string { return r.host + "/" + r.repo }

// scope returns the token scope for actions ("pull" or "pull,push") on repo.
func scope(repo, actions string) string { return "repository:" + repo + ":" + actions }

// hostClients are the HTTP clients of one endpoint configuration. Uploads
// get their own client because a registry may take long to answer the final
// PUT of a large blob, longer than FirstByteTimeout allows.
type hostClients struct {
	normal, upload *http.Client
}

// endpoint is one configured host with what is needed to talk to it.
type endpoint struct {
	hosts.Host
	base    string // scheme://host/path without a trailing slash
	clients *hostClients
	sem     chan struct{}
}

// endpoints returns the hosts for ref's registry that have a capability
// accepted by want, in the configured order.
func (r *Resolver) endpoints(ref reference, want func(hosts.Capabilities) bool) ([]*endpoint, error) {
	if r.opts.Hosts == nil {
		return nil, fmt.Errorf("%s: registry.Options.Hosts is not set: %w", ref.raw, errdefs.ErrInvalidArgument)
	}
	hs, err := r.opts.Hosts(ref.host)
	if err != nil {
		return nil, fmt.Errorf("%s: hosts: %w", ref.raw, err)
	}
	var eps, last []*endpoint
	for _, h := range hs {
		if want == nil || want(h.Capabilities) {
			ep := r.endpoint(h)
			if r.isDown(ep.base) {
				last = append(last, ep)
			} else {
				eps = append(eps, ep)
			}
		}
	}
	return append(eps, last...), nil
}

// markDown records that the host at base did not answer.
func (r *Resolver) markDown(base string) {
	r.mu.Lock()
	r.down[base] = time.Now()
	r.mu.Unlock()
}

func (r *Resolver) isDown(base string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.down[base]
	if ok && time.Since(t) > downPenalty {
		delete(r.down, base)
		return false
	}
	return ok
}

func (r *Resolver) endpoint(h hosts.Host) *endpoint {
	if h.Path == "" {
		h.Path = "/v2"
	}
	if h.DialTimeout <= 0 {
		h.DialTimeout = defaultDialTimeout
	}
	hp := hostPort(h.Scheme, h.Host)
	maxIdle := max(8, r.opts.MaxConcurrentPerHost)
	c := r.opts.Transports.clients(h, r.opts.FirstByteTimeout, maxIdle)

	r.mu.Lock()
	defer r.mu.Unlock()
	sem, ok := r.sems[hp]
	if !ok {
		sem = make(chan struct{}, r.opts.MaxConcurrentPerHost)
		r.sems[hp] = sem
	}
	return &endpoint{
		Host:    h,
		base:    h.Scheme + "://" + h.Host + strings.TrimSuffix(h.Path, "/"),
		clients: c,
		sem:     sem,
	}
}

// redirectSafe reports whether request header k may follow a redirect to
// another host (blob storage): anything else may carry credentials, either
// ours or ones configured in hosts.toml.
func redirectSafe(k string) bool {
	switch k {
	case "Accept", "Accept-Encoding", "Range", "User-Agent", "If-Match", "If-None-Match":
		return true
	}
	return false
}

func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return fmt.Errorf("stopped after %d redirects", len(via))
	}
	if req.URL.Host != via[0].URL.Host {
		for k := range req.Header {
			if !redirectSafe(k) {
				delete(req.Header, k)
			}
		}
	}
	return nil
}

func hostPort(scheme, host string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	if scheme == "http" {
		return net.JoinHostPort(host, "80")
	}
	return net.JoinHostPort(host, "443")
}

// isProxy reports whether ep serves refHost's content on its behalf, in which
// case requests carry ?ns=<refHost> as containerd's do, so that a mirror
// serving several registries knows which one is meant.
func (ep *endpoint) isProxy(refHost string) bool {
	if refHost == "docker.io" && ep.Host.Host == "registry-1.docker.io" {
		return false
	}
	return ep.Host.Host != refHost
}

// url returns the URL of repo's API path elems on ep.
func (ep *endpoint) url(ref reference, q url.Values, elems ...string) string {
	u := ep.base + "/" + ref.repo + "/" + strings.Join(elems, "/")
	if q == nil {
		q = url.Values{}
	}
	if ep.isProxy(ref.host) {
		q.Set("ns", ref.host)
	}
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

func pullOrResolve(c hosts.Capabilities) bool {
	return c.Has(hosts.CapabilityPull) || c.Has(hosts.CapabilityResolve)
}

func canResolve(c hosts.Capabilities) bool { return c.Has(hosts.CapabilityResolve) }
func canPull(c hosts.Capabilities) bool    { return c.Has(hosts.CapabilityPull) }
func canPush(c hosts.Capabilities) bool    { return c.Has(hosts.CapabilityPush) }
