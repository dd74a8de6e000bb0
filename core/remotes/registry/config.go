package registry

import (
	"context"
	"sync"
	"time"

	"github.com/hullrt/hull/core/remotes/credentials"
	"github.com/hullrt/hull/core/remotes/hosts"
)

// Config is what users configure about registries: where the hosts.toml
// directory is, whether loopback registries may be plain http, and the
// credentials. NewFromConfig turns it into a Resolver, the one way hullctl,
// the client library and the CRI plugin build theirs, so they always agree.
type Config struct {
	// HostsDir is the hosts.toml directory; "" means hosts.DefaultConfigDir.
	HostsDir string
	// PlainHTTP allows plain http to loopback registries that have no
	// hosts.toml saying otherwise.
	PlainHTTP bool
	// Credentials; nil means anonymous.
	Credentials credentials.Store
	// UserAgent of requests; default "hull".
	UserAgent string
	// Transports to share with other Resolvers; nil for the Resolver's
	// own.
	Transports *Transports
}

// hostsCacheTTL bounds how long a Resolver reuses a hosts.toml reading:
// long enough that a pull reads the file and its certificates once, not
// once per request, short enough that an edited file takes effect without
// a restart in a long-lived Resolver.
const hostsCacheTTL = 30 * time.Second

// NewFromConfig returns a Resolver for cfg.
func NewFromConfig(cfg Config) *Resolver {
	dir := cfg.HostsDir
	if dir == "" {
		dir = hosts.DefaultConfigDir
	}
	cache := &hostsCache{opts: hosts.Options{ConfigDir: dir, PlainHTTP: cfg.PlainHTTP}, entries: map[string]hostsEntry{}}
	ua := cfg.UserAgent
	if ua == "" {
		ua = "hull"
	}
	opts := Options{Hosts: cache.get, UserAgent: ua, Transports: cfg.Transports}
	if cfg.Credentials != nil {
		opts.Credentials = func(ctx context.Context, host string) (string, string, error) {
			c, err := cfg.Credentials.Get(ctx, host)
			if err != nil {
				return "", "", err
			}
			if c.IdentityToken != "" {
				// An empty username with a secret is an identity token
				// to exchange, as in containerd.
				return "", c.IdentityToken, nil
			}
			return c.Username, c.Secret, nil
		}
	}
	return NewResolver(opts)
}

type hostsEntry struct {
	hosts []hosts.Host
	err   error
	at    time.Time
}

// hostsCache keeps each registry's host list for hostsCacheTTL.
type hostsCache struct {
	opts    hosts.Options
	mu      sync.Mutex
	entries map[string]hostsEntry
}

func (c *hostsCache) get(registry string) ([]hosts.Host, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[registry]; ok && time.Since(e.at) < hostsCacheTTL {
		return e.hosts, e.err
	}
	hs, err := hosts.Configure(registry, c.opts)
	c.entries[registry] = hostsEntry{hosts: hs, err: err, at: time.Now()}
	return hs, err
}
