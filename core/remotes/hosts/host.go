// Package hosts reads containerd's registry host configuration (a directory
// with one hosts.toml per registry) and turns it into the ordered list of
// hosts to try for a registry, each with its capabilities, TLS, headers and
// timeouts.
package hosts

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"time"
)

// Capabilities are what a host may be used for.
type Capabilities uint8

const (
	// CapabilityPull fetches blobs and manifests by digest.
	CapabilityPull Capabilities = 1 << iota
	// CapabilityResolve resolves tags to digests.
	CapabilityResolve
	// CapabilityPush uploads.
	CapabilityPush
)

// Has reports whether all of c2 are in c.
func (c Capabilities) Has(c2 Capabilities) bool { return c&c2 == c2 }

// Host is one endpoint to try for a registry.
type Host struct {
	// Scheme is "https" or "http".
	Scheme string
	// Host is host[:port].
	Host string
	// Path is the API root, "/v2" unless the config overrides it.
	Path string
	// Capabilities says what this host may be used for.
	Capabilities Capabilities
	// Header is added to every request to this host.
	Header http.Header
	// TLS is the client TLS configuration (nil for plain http).
	TLS *tls.Config
	// TLSID identifies TLS by what it is made of: Hosts with equal TLSIDs
	// have equivalent TLS configurations, whichever reading of the files
	// made them, so that their connections can be shared. "" for plain
	// http, and for a TLS configuration made elsewhere than Configure.
	TLSID string
	// DialTimeout bounds connecting; default 30s.
	DialTimeout time.Duration
	// Mirror is true for hosts from [host] entries, false for the
	// registry's own server (upstream).
	Mirror bool
	// Proxy, when set (hosts.toml "proxy"), is the proxy to reach this
	// host through; it overrides HTTPS_PROXY, HTTP_PROXY and NO_PROXY for
	// this host only. Nil means the environment decides.
	Proxy *url.URL

	// The following say where the settings came from, for `hullctl hosts
	// check` and error messages.

	// ConfigFile is the hosts.toml the entry came from ("" for defaults).
	ConfigFile string
	// CAFiles are the CA certificate files trusted (beyond system roots).
	CAFiles []string
	// ClientCertFiles are the [cert, key] file pairs offered.
	ClientCertFiles [][2]string
	// SkipVerify is true when server certificates are not verified.
	SkipVerify bool
}

// URL returns scheme://host/path.
func (h *Host) URL() string { return h.Scheme + "://" + h.Host + h.Path }
