// Package containers registers the containers service: the metadata store's
// containers.Store in process (containers-service) and containerd's
// containers gRPC API over it.
package containers

import (
	corecontainers "github.com/hullrt/hull/core/containers"

	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/plugins/services"
)

// Register adds the containers service plugin (ContainersService, the metadata
// store's corecontainers.Store) and its gRPC adapter to r.
func Register(r *plugin.Registry) {
	r.Register(&plugin.Registration{
		Type: plugin.ServicePlugin, ID: services.ContainersService, Requires: []plugin.Type{plugin.MetadataPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			db, err := plugin.Single[interface{ Containers() corecontainers.Store }](ic, plugin.MetadataPlugin)
			if err != nil {
				return nil, err
			}
			return db.Containers(), nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "containers", Requires: []plugin.Type{plugin.ServicePlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			s, err := plugin.Instance[corecontainers.Store](ic, plugin.ServicePlugin, services.ContainersService)
			if err != nil {
				return nil, err
			}
			return &containersService{store: s}, nil
		},
	})
}
