// Package namespaces registers the namespaces service: the metadata store's
// namespaces.Store in process (namespaces-service) and containerd's
// namespaces gRPC API over it.
package namespaces

import (
	corenamespaces "github.com/hullrt/hull/core/namespaces"

	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/plugins/services"
)

// Register adds the namespaces service plugin (NamespacesService, the metadata
// store's corenamespaces.Store) and its gRPC adapter to r.
func Register(r *plugin.Registry) {
	r.Register(&plugin.Registration{
		Type: plugin.ServicePlugin, ID: services.NamespacesService, Requires: []plugin.Type{plugin.MetadataPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			db, err := plugin.Single[interface{ Namespaces() corenamespaces.Store }](ic, plugin.MetadataPlugin)
			if err != nil {
				return nil, err
			}
			return db.Namespaces(), nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "namespaces", Requires: []plugin.Type{plugin.ServicePlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			s, err := plugin.Instance[corenamespaces.Store](ic, plugin.ServicePlugin, services.NamespacesService)
			if err != nil {
				return nil, err
			}
			return &namespacesService{store: s}, nil
		},
	})
}
