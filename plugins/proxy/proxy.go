// Package proxy registers the plugins of [proxy_plugins]: plugins served by
// another process over containerd's gRPC APIs. A proxy snapshotter is a
// snapshotter whose every call goes to the remote snapshots service, which
// is how lazy-pulling snapshotters plug in.
package proxy

import (
	"fmt"
	"sort"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/config"
	"github.com/hullrt/hull/plugin"
)

// Register adds a plugin for each [proxy_plugins.<name>] entry. Types other
// than "snapshot" are reported as failed plugins naming the type.
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
					if p.Address == "" {
						return nil, fmt.Errorf("proxy plugin %s: address is required: %w", name, errdefs.ErrInvalidArgument)
					}
					conn, err := grpc.NewClient("unix://"+p.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
					if err != nil {
						return nil, fmt.Errorf("proxy plugin %s at %s: %w", name, p.Address, err)
					}
					ic.Meta.Exports["address"] = p.Address
					for k, v := range p.Exports {
						ic.Meta.Exports[k] = v
					}
					ic.Meta.Capabilities = p.Capabilities
					return client.NewRemoteSnapshotter(conn, name, true), nil
				},
			})
		default:
			r.Register(&plugin.Registration{
				Type: plugin.Type("io.containerd.proxy." + p.Type), ID: name,
				Init: func(ic *plugin.InitContext) (any, error) {
					return nil, fmt.Errorf("proxy plugin %s: type %q is not supported (hull proxies snapshotters): %w", name, p.Type, errdefs.ErrNotImplemented)
				},
			})
		}
	}
}
