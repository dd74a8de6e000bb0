// Package diff registers the diff service: the differ plugin's Applier and
// Comparer in process (diff-service) and containerd's diff gRPC API over
// them.
package diff

import (
	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/plugins/services"
)

// Register adds the diff service plugin (the differ plugin's Applier and
// Comparer) and its gRPC adapter to r.
func Register(r *plugin.Registry) {
	r.Register(&plugin.Registration{
		Type: plugin.ServicePlugin, ID: services.DiffService, Requires: []plugin.Type{plugin.DiffPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			return plugin.Single[Differ](ic, plugin.DiffPlugin)
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "diff", Requires: []plugin.Type{plugin.ServicePlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			d, err := plugin.Instance[Differ](ic, plugin.ServicePlugin, services.DiffService)
			if err != nil {
				return nil, err
			}
			return &diffService{differ: d}, nil
		},
	})
}
