package registry

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hullrt/hull/core/remotes/hosts"
)

// Transports are HTTP clients, with their pools of connections, that
// Resolvers share: one for each configuration of an endpoint (scheme, host,
// TLS configuration, proxy, timeouts). A daemon builds a Resolver for every
// pull, since each pull brings its own credentials and options; with one
// Transports among them, the pulls of one registry reuse its connections,
// and the TLS handshakes made for them, instead of dialling again. Nothing
// of a caller's is kept here: credentials and tokens stay in each Resolver,
// and requests carry them.
//
// A Resolver made without Transports has its own. Transports is safe for
// concurrent use; the zero value is not, use NewTransports.
type Transports struct {
	mu    sync.Mutex
	byKey map[clientKey]*http.Client
	// order is the creation order of clients, oldest first, for
	// eviction: a Hosts function that builds a new tls.Config per call
	// (without TLSID) would otherwise grow clients without bound.
	order []clientKey
}

// NewTransports returns an empty Transports.
func NewTransports() *Transports {
	return &Transports{byKey: map[clientKey]*http.Client{}}
}

// clientKey says which endpoint configurations may share a client.
type clientKey struct {
	scheme, host string
	// tlsID identifies a TLS configuration by content (hosts.Host.TLSID);
	// tls by identity, for one made without an ID.
	tlsID  string
	tls    *tls.Config
	proxy  string
	dial   time.Duration
	header time.Duration // ResponseHeaderTimeout
	idle   int           // MaxIdleConnsPerHost
}

func keyOf(h hosts.Host, headerTimeout time.Duration, maxIdle int) clientKey {
	k := clientKey{scheme: h.Scheme, host: h.Host, tlsID: h.TLSID, dial: h.DialTimeout, header: headerTimeout, idle: maxIdle}
	if h.TLSID == "" {
		k.tls = h.TLS
	}
	if h.Proxy != nil {
		k.proxy = h.Proxy.String()
	}
	return k
}

// clients returns h's clients, making them if needed: the normal one,
// whose wait for response headers is bounded by firstByte, and the one for
// uploads, whose is not; each keeps up to maxIdle idle connections to a
// host.
func (t *Transports) clients(h hosts.Host, firstByte time.Duration, maxIdle int) *hostClients {
	t.mu.Lock()
	defer t.mu.Unlock()
	return &hostClients{normal: t.client(h, firstByte, maxIdle), upload: t.client(h, 0, maxIdle)}
}

// client returns the client for h with the given ResponseHeaderTimeout
// (0 for none) that keeps up to maxIdle idle connections to a host,
// making it if needed. t.mu is held.
func (t *Transports) client(h hosts.Host, headerTimeout time.Duration, maxIdle int) *http.Client {
	key := keyOf(h, headerTimeout, maxIdle)
	if c, ok := t.byKey[key]; ok {
		return c
	}
	if len(t.order) >= maxClients {
		old := t.order[0]
		t.order = t.order[1:]
		if oc := t.byKey[old]; oc != nil {
			// Requests in flight keep working; only the idle
			// connections go.
			oc.CloseIdleConnections()
		}
		delete(t.byKey, old)
	}
	c := newClient(h, headerTimeout, maxIdle)
	t.byKey[key] = c
	t.order = append(t.order, key)
	return c
}

// CloseIdleConnections closes the idle connections of every client.
func (t *Transports) CloseIdleConnections() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.byKey {
		c.CloseIdleConnections()
	}
}

// newClient makes the client for h. A proxy that hosts.toml names for h
// replaces the environment's (HTTPS_PROXY, HTTP_PROXY, NO_PROXY).
func newClient(h hosts.Host, headerTimeout time.Duration, maxIdle int) *http.Client {
	proxy := http.ProxyFromEnvironment
	if h.Proxy != nil {
		proxy = http.ProxyURL(h.Proxy)
	}
	d := &net.Dialer{Timeout: h.DialTimeout, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy:               proxy,
		DialContext:         d.DialContext,
		TLSClientConfig:     h.TLS,
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   true,
		// Byte offsets must be those of the blob for Range requests
		// and size checks, so no transparent gzip.
		DisableCompression:    true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   maxIdle,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: headerTimeout,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{Transport: t, CheckRedirect: checkRedirect}
}
