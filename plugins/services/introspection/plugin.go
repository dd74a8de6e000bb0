// Package introspection registers the introspection service: what plugins
// hulld runs and who it is, in process (introspection-service) and over
// containerd's introspection gRPC API.
package introspection

import (
	"path/filepath"

	api "github.com/containerd/containerd/api/services/introspection/v1"
	"github.com/google/uuid"

	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/plugins/services"
)

// Register adds the introspection service plugin and its gRPC adapter to r.
func Register(r *plugin.Registry) {
	r.Register(&plugin.Registration{
		Type: plugin.ServicePlugin, ID: services.IntrospectionService,
		Init: func(ic *plugin.InitContext) (any, error) {
			// The UUID stays where the gRPC plugin kept it before the
			// service layer existed, so that it survives the upgrade.
			id, err := loadUUID(filepath.Join(filepath.Dir(ic.Root), string(plugin.GRPCPlugin)+".introspection"), uuid.NewString)
			if err != nil {
				return nil, err
			}
			return NewLocal(ic.Plugins(), id), nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "introspection", Requires: []plugin.Type{plugin.ServicePlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			local, err := plugin.Instance[api.IntrospectionClient](ic, plugin.ServicePlugin, services.IntrospectionService)
			if err != nil {
				return nil, err
			}
			// Where hulld keeps its state and effective configuration,
			// for debug tools (hullctl debug dump) on the same host.
			for _, k := range []string{"root", "state", "config.effective"} {
				if v := ic.Properties[k]; v != "" {
					ic.Meta.Exports[k] = v
				}
			}
			return &service{local: local}, nil
		},
	})
}
