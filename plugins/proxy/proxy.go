// Package proxy registers the plugins of [proxy_plugins]: plugins served by
// another process over containerd's gRPC APIs. A proxy snapshotter is a
// snapshotter whose every call goes to the remote snapshots service, which
// is how lazy-pulling snapshotters plug in. A proxy content store replaces
// hulld's blob store under the metadata store (disable
// io.containerd.content.v1.content then, as with containerd).
package proxy

import (
	"context"
	"fmt"
	"io"
	"sort"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc"

	"github.com/hullrt/hull/config"
	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/metadata"
	"github.com/hullrt/hull/internal/proxy"
	"github.com/hullrt/hull/plugin"
)

// Register adds a plugin for each [proxy_plugins.<name>] entry. Types other
// than "snapshot" and "content" are reported as failed plugins naming the
// type.
func Register(r *plugin.Registry, proxies map[string]config.ProxyPlugin) {
	names := make([]string, 0, len(proxies))
	for n := range proxies {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		p := proxies[name]
		switch p.Type {
		case "snapshot":
			r.Register(&plugin.Registration{
				Type: plugin.SnapshotPlugin, ID: name,
				Init: func(ic *plugin.InitContext) (any, error) {
					conn, err := dial(ic, name, p)
					if err != nil {
						return nil, err
					}
					return proxy.NewSnapshotter(conn, name, conn), nil
				},
			})
		case "content":
			r.Register(&plugin.Registration{
				Type: plugin.ContentPlugin, ID: name,
				Init: func(ic *plugin.InitContext) (any, error) {
					conn, err := dial(ic, name, p)
					if err != nil {
						return nil, err
					}
					return contentBackend{proxy.NewContentStore(conn), conn}, nil
				},
			})
		default:
			r.Register(&plugin.Registration{
				Type: plugin.Type("io.containerd.proxy." + p.Type), ID: name,
				Init: func(ic *plugin.InitContext) (any, error) {
					return nil, fmt.Errorf("proxy plugin %s: type %q is not supported (hull proxies snapshotters and content stores): %w", name, p.Type, errdefs.ErrNotImplemented)
				},
			})
		}
	}
}

// dial connects to p's socket and records its exports and capabilities.
func dial(ic *plugin.InitContext, name string, p config.ProxyPlugin) (*grpc.ClientConn, error) {
	if p.Address == "" {
		return nil, fmt.Errorf("proxy plugin %s: address is required: %w", name, errdefs.ErrInvalidArgument)
	}
	conn, err := proxy.Dial(p.Address)
	if err != nil {
		return nil, fmt.Errorf("proxy plugin %s at %s: %w", name, p.Address, err)
	}
	ic.Meta.Exports["address"] = p.Address
	for k, v := range p.Exports {
		ic.Meta.Exports[k] = v
	}
	ic.Meta.Capabilities = p.Capabilities
	return conn, nil
}

// contentBackend is a content store served by another process, as the
// metadata store's blob backend: a walk over every blob, and a Close that
// closes the connection.
type contentBackend struct {
	content.Store
	conn io.Closer
}

var _ metadata.Backend = contentBackend{}

// Walk calls fn for every blob of the remote store.
func (b contentBackend) Walk(ctx context.Context, fn content.WalkFunc) error {
	return b.Store.Walk(ctx, fn)
}

// Close closes the connection.
func (b contentBackend) Close() error { return b.conn.Close() }
