// Package credentials finds the user name and secret to present to a
// registry: given on the command line, or from Docker's config.json and the
// credential helpers it names, so that `docker login` is enough for hull too.
//
// Secrets never appear in errors or in the String form of Credentials, so
// that callers may log both freely.
package credentials

import (
	"context"
	"fmt"
	"strings"
)

// Credentials are what a registry's token or basic auth needs. The zero
// value means anonymous access.
type Credentials struct {
	// Username is the account name; empty with an IdentityToken.
	Username string
	// Secret is the password or access token.
	Secret string
	// IdentityToken is an OAuth2 refresh token (docker's identitytoken),
	// exchanged with the registry's token server for access tokens.
	IdentityToken string
}

// IsAnonymous reports whether c holds nothing to authenticate with.
func (c Credentials) IsAnonymous() bool {
	return c.Username == "" && c.Secret == "" && c.IdentityToken == ""
}

// String shows the user name only, so that printing Credentials (with %v,
// %+v or %s) cannot leak a secret into a log.
func (c Credentials) String() string {
	switch {
	case c.IsAnonymous():
		return "anonymous"
	case c.IdentityToken != "":
		return fmt.Sprintf("identity token (user %q)", c.Username)
	default:
		return fmt.Sprintf("user %q", c.Username)
	}
}

// GoString keeps %#v from printing the secret fields.
func (c Credentials) GoString() string { return "credentials.Credentials{" + c.String() + "}" }

// Store finds the credentials for a registry host.
type Store interface {
	// Get returns the credentials for host (host[:port], as in an image
	// reference, e.g. "docker.io" or "127.0.0.1:5000"). No credentials is
	// not an error: it returns the zero Credentials.
	Get(ctx context.Context, host string) (Credentials, error)
}

// Static returns a Store that gives user and secret for host, or for every
// host when host is empty: what `hullctl --user user[:password]` means.
func Static(host, username, secret string) Store {
	return &static{host: NormalizeHost(host), creds: Credentials{Username: username, Secret: secret}}
}

type static struct {
	host  string
	creds Credentials
}

func (s *static) Get(_ context.Context, host string) (Credentials, error) {
	if s.host != "" && s.host != NormalizeHost(host) {
		return Credentials{}, nil
	}
	return s.creds, nil
}

// Chain returns a Store that asks stores in turn and returns the first
// credentials that are not anonymous. An error from a store ends the
// search: falling through to another store would present an identity the
// user did not choose.
func Chain(stores ...Store) Store {
	var list []Store
	for _, s := range stores {
		if s != nil {
			list = append(list, s)
		}
	}
	return chain(list)
}

type chain []Store

func (c chain) Get(ctx context.Context, host string) (Credentials, error) {
	for _, s := range c {
		creds, err := s.Get(ctx, host)
		if err != nil {
			return Credentials{}, err
		}
		if !creds.IsAnonymous() {
			return creds, nil
		}
	}
	return Credentials{}, nil
}

// Docker Hub answers to several names; docker stores its credentials under
// the v1 index URL, and hull looks them up under "docker.io".
const (
	dockerHub         = "docker.io"
	dockerHubIndexURL = "https://index.docker.io/v1/"
)

// NormalizeHost reduces the ways a registry is written in config.json, on
// the command line and in a kubelet's auth ("https://ghcr.io", "ghcr.io/",
// "HTTPS://GHCR.IO", "https://index.docker.io/v1/") to the host[:port]
// that images name.
func NormalizeHost(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	s = strings.ToLower(s)
	switch s {
	case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return dockerHub
	}
	return s
}
