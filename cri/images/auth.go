package images

import (
	"context"
	"fmt"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/core/remotes/credentials"
)

// pullCredentials are the credentials a PullImageRequest carries, for one
// pull: what the kubelet found (in a pull secret or its docker config) for
// the registry of the image. They are given to every host the pull talks to,
// which are the reference's registry and the mirrors its hosts.toml sends
// it to, since the resolver is made for this one pull. A server_address
// narrows that: when it names the reference's registry the credentials
// still go to all of the registry's hosts; when it names another host, only
// to that host, and when neither, to none (the kubelet found them for
// another registry).
type pullCredentials struct {
	creds credentials.Credentials
	// registry is the reference's registry host, normalized.
	registry string
	// server is the normalized server_address; "" means any host.
	server string
}

// Get returns the credentials for host.
func (p *pullCredentials) Get(_ context.Context, host string) (credentials.Credentials, error) {
	if p.server == "" || p.server == p.registry || p.server == normalizeHost(host) {
		return p.creds, nil
	}
	return credentials.Credentials{}, nil
}

// authCredentials turns a CRI AuthConfig into the credentials of a pull
// from registry (host[:port] of the reference). It returns nil for an
// anonymous pull. Of the ways the CRI has to say who the kubelet is:
// username and password, a base64 "user:password" auth, and an identity
// token (an OAuth2 refresh token, exchanged at the registry's token server)
// become credentials; a registry_token (a bearer token to send to the
// registry as it is) cannot be, since hull's resolver only presents tokens
// it obtained itself. Such a pull goes on anonymously, as containerd's does,
// with the second result saying so for the log.
func authCredentials(auth *runtime.AuthConfig, registry string) (credentials.Store, string, error) {
	if auth == nil {
		return nil, "", nil
	}
	var creds credentials.Credentials
	var note string
	switch {
	case auth.Username != "" || auth.Password != "":
		creds.Username, creds.Secret = auth.Username, auth.Password
	case auth.IdentityToken != "":
		creds.IdentityToken = auth.IdentityToken
	case auth.Auth != "":
		user, secret, err := decodeAuth(auth.Auth)
		if err != nil {
			return nil, "", err
		}
		creds.Username, creds.Secret = user, secret
	case auth.RegistryToken != "":
		note = "the pull's registry_token is ignored: hull cannot present a registry token it did not obtain; pulling anonymously"
	}
	if creds.IsAnonymous() {
		return nil, note, nil
	}
	p := &pullCredentials{creds: creds, registry: normalizeHost(registry)}
	if auth.ServerAddress != "" {
		p.server = normalizeHost(auth.ServerAddress)
	}
	return p, note, nil
}

// decodeAuth decodes the auth field of a kubelet's pull auth.
func decodeAuth(s string) (user, secret string, err error) {
	user, secret, err = credentials.DecodeAuth(s)
	if err != nil {
		return "", "", fmt.Errorf("registry auth: %w", err)
	}
	return user, secret, nil
}

// normalizeHost is credentials.NormalizeHost, the one way registry hosts
// are compared.
func normalizeHost(s string) string { return credentials.NormalizeHost(s) }
