package registry

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/hullrt/hull/core/remotes/hosts"
)

// HostReport is what Check found out about one host. It holds no secrets:
// credential-like header values are redacted and tokens are never shown.
type HostReport struct {
	URL          string
	Mirror       bool
	Capabilities []string // "pull", "resolve", "push"
	ConfigFile   string
	CAFiles      []string
	// ClientCertFiles are [certificate, key] file paths.
	ClientCertFiles [][2]string
	SkipVerify      bool
	// Headers are the configured extra headers; values of those whose
	// names suggest credentials are "<redacted>".
	Headers map[string][]string
	// Challenges are the host's WWW-Authenticate challenges to an
	// unauthenticated request for its API root.
	Challenges []AuthChallenge
	// Steps are the checks tried, in order; a failed connect or TLS step
	// ends the list.
	Steps []CheckStep
}

// AuthChallenge is one authentication challenge of a host.
type AuthChallenge struct {
	Scheme  string // "Bearer", "Basic"
	Realm   string
	Service string
}

// CheckStep is one check of a host: "connect", "tls", "auth" or "resolve"
// ("reference" or "hosts" when Check could not start).
type CheckStep struct {
	Name    string
	OK      bool
	Skipped bool
	// Detail says what was found: the address connected to, the server
	// certificate or the verification error, the challenge, the status.
	Detail string
	// StatusCode is the HTTP status of the auth and resolve steps.
	StatusCode int
	Duration   time.Duration
}

// Check tries each host configured for ref's registry, in order, and
// reports each step: connecting, the TLS handshake, the authentication
// challenge, and resolving ref (with credentials, as Resolve would).
func (r *Resolver) Check(ctx context.Context, ref string) []HostReport {
	rf, err := parseRef(ref)
	if err != nil {
		return []HostReport{{Steps: []CheckStep{{Name: "reference", Detail: err.Error()}}}}
	}
	if r.opts.Hosts == nil {
		return []HostReport{{Steps: []CheckStep{{Name: "hosts", Detail: "registry.Options.Hosts is not set"}}}}
	}
	hs, err := r.opts.Hosts(rf.host)
	if err != nil {
		return []HostReport{{Steps: []CheckStep{{Name: "hosts", Detail: err.Error()}}}}
	}
	reports := make([]HostReport, 0, len(hs))
	for _, h := range hs {
		reports = append(reports, r.checkHost(ctx, rf, r.endpoint(h)))
	}
	return reports
}

func (r *Resolver) checkHost(ctx context.Context, rf reference, ep *endpoint) HostReport {
	rep := HostReport{
		URL:             ep.base,
		Mirror:          ep.Mirror,
		Capabilities:    capabilityNames(ep.Capabilities),
		ConfigFile:      ep.ConfigFile,
		CAFiles:         ep.CAFiles,
		ClientCertFiles: ep.ClientCertFiles,
		SkipVerify:      ep.SkipVerify,
		Headers:         redactHeaders(ep.Header),
	}
	step := func(name string, f func(*CheckStep)) bool {
		s := CheckStep{Name: name}
		start := time.Now()
		f(&s)
		s.Duration = time.Since(start)
		rep.Steps = append(rep.Steps, s)
		return s.OK
	}

	var conn net.Conn
	ok := step("connect", func(s *CheckStep) {
		d := net.Dialer{Timeout: ep.DialTimeout}
		c, err := d.DialContext(ctx, "tcp", hostPort(ep.Scheme, ep.Host.Host))
		if err != nil {
			s.Detail = toHostErr(err).reason
			return
		}
		conn, s.OK, s.Detail = c, true, "connected to "+c.RemoteAddr().String()
	})
	if !ok {
		return rep
	}
	if ep.Scheme == "https" {
		ok = step("tls", func(s *CheckStep) {
			var cfg *tls.Config
			if ep.TLS != nil {
				cfg = ep.TLS.Clone()
			} else {
				cfg = &tls.Config{}
			}
			if cfg.ServerName == "" {
				host, _, err := net.SplitHostPort(ep.Host.Host)
				if err != nil {
					host = ep.Host.Host
				}
				cfg.ServerName = host
			}
			hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			tc := tls.Client(conn, cfg)
			if err := tc.HandshakeContext(hctx); err != nil {
				s.Detail = err.Error()
				return
			}
			s.OK, s.Detail = true, describeTLS(tc.ConnectionState())
		})
	}
	conn.Close()
	if !ok {
		return rep
	}

	step("auth", func(s *CheckStep) {
		hreq, err := r.newHTTPRequest(ctx, &request{ep: ep, method: http.MethodGet, url: ep.base + "/"})
		if err != nil {
			s.Detail = err.Error()
			return
		}
		resp, err := ep.clients.normal.Do(hreq)
		if err != nil {
			s.Detail = toHostErr(err).reason
			return
		}
		drain(resp.Body)
		s.StatusCode = resp.StatusCode
		switch resp.StatusCode {
		case http.StatusOK:
			s.OK, s.Detail = true, "no authentication required"
		case http.StatusUnauthorized:
			var parts []string
			for _, c := range parseChallenges(resp.Header.Values("WWW-Authenticate")) {
				ac := AuthChallenge{Scheme: canonicalScheme(c.scheme), Realm: c.params["realm"], Service: c.params["service"]}
				rep.Challenges = append(rep.Challenges, ac)
				p := ac.Scheme
				if ac.Realm != "" {
					p += fmt.Sprintf(" realm=%q", ac.Realm)
				}
				if ac.Service != "" {
					p += fmt.Sprintf(" service=%q", ac.Service)
				}
				parts = append(parts, p)
			}
			s.OK = len(parts) > 0
			s.Detail = "authentication required: " + strings.Join(parts, ", ")
			if !s.OK {
				s.Detail = "401 without a WWW-Authenticate challenge"
			}
		default:
			s.Detail = resp.Status
		}
	})

	step("resolve", func(s *CheckStep) {
		obj := rf.tag
		want := canResolve
		if rf.dgst != "" {
			obj, want = rf.dgst.String(), pullOrResolve
		}
		switch {
		case obj == "":
			s.OK, s.Skipped, s.Detail = true, true, "reference has neither tag nor digest"
			return
		case !want(ep.Capabilities):
			s.OK, s.Skipped, s.Detail = true, true, "host is not used to resolve this reference"
			return
		}
		resp, err := r.do(ctx, &request{ep: ep, method: http.MethodHead, url: ep.url(rf, nil, "manifests", obj),
			header: http.Header{"Accept": {manifestAccept}}, scopes: []string{scope(rf.repo, "pull")}})
		if err != nil {
			s.Detail = toHostErr(err).reason
			return
		}
		resp.Body.Close()
		s.StatusCode = resp.StatusCode
		s.Detail = resp.Status
		if resp.StatusCode == http.StatusOK {
			s.OK = true
			if d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest")); err == nil {
				s.Detail += ", " + d.String()
			}
			if mt := contentType(resp.Header.Get("Content-Type")); mt != "" {
				s.Detail += ", " + mt
			}
		}
	})
	return rep
}

func describeTLS(cs tls.ConnectionState) string {
	d := tls.VersionName(cs.Version)
	if len(cs.PeerCertificates) > 0 {
		c := cs.PeerCertificates[0]
		d += fmt.Sprintf(", certificate %q issued by %q, valid until %s",
			c.Subject.String(), c.Issuer.String(), c.NotAfter.UTC().Format(time.RFC3339))
	}
	return d
}

func canonicalScheme(s string) string {
	switch s {
	case "bearer":
		return "Bearer"
	case "basic":
		return "Basic"
	}
	return s
}

func capabilityNames(c hosts.Capabilities) []string {
	var names []string
	if c.Has(hosts.CapabilityPull) {
		names = append(names, "pull")
	}
	if c.Has(hosts.CapabilityResolve) {
		names = append(names, "resolve")
	}
	if c.Has(hosts.CapabilityPush) {
		names = append(names, "push")
	}
	return names
}

// redactHeaders copies h, hiding the values of headers that look like they
// carry credentials.
func redactHeaders(h http.Header) map[string][]string {
	if len(h) == 0 {
		return nil
	}
	out := make(map[string][]string, len(h))
	for k, vs := range h {
		lk := strings.ToLower(k)
		secret := false
		for _, w := range []string{"auth", "token", "key", "secret", "cookie", "password", "session", "credential", "signature"} {
			if strings.Contains(lk, w) {
				secret = true
				break
			}
		}
		if secret {
			out[k] = []string{"<redacted>"}
		} else {
			out[k] = append([]string(nil), vs...)
		}
	}
	return out
}

// Resolved reports whether the host resolved the reference.
func (r HostReport) Resolved() bool {
	for _, s := range r.Steps {
		if s.Name == "resolve" && s.OK {
			return true
		}
	}
	return false
}
