// Package sandboxes registers the sandbox store service: the metadata
// store's sandboxes.Store in process (sandboxes-service) and containerd's
// containerd.services.sandbox.v1.Store gRPC API over it (grpc plugin
// "sandboxes", containerd's name), which `ctr sandboxes ls` calls.
package sandboxes

import (
	coresandboxes "github.com/hullrt/hull/core/sandboxes"

	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/plugins/services"
)

// Register adds the sandbox store service plugin (SandboxesService, the
// metadata store's coresandboxes.Store) and its gRPC adapter to r.
func Register(r *plugin.Registry) {
	r.Register(&plugin.Registration{
		Type: plugin.ServicePlugin, ID: services.SandboxesService, Requires: []plugin.Type{plugin.MetadataPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			db, err := plugin.Single[interface{ Sandboxes() coresandboxes.Store }](ic, plugin.MetadataPlugin)
			if err != nil {
				return nil, err
			}
			return db.Sandboxes(), nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "sandboxes", Requires: []plugin.Type{plugin.ServicePlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			s, err := plugin.Instance[coresandboxes.Store](ic, plugin.ServicePlugin, services.SandboxesService)
			if err != nil {
				return nil, err
			}
			return &storeService{store: s}, nil
		},
	})
}
