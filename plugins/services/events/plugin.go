// Package events serves containerd's events API over the event exchange, on
// the gRPC socket for clients and on the ttrpc socket for shims.
package events

import (
	"github.com/hullrt/hull/plugin"
)

// Register adds the events service (gRPC, for clients) and its ttrpc twin
// (for shims, on TTRPC_ADDRESS) over the event exchange to r.
func Register(r *plugin.Registry) {
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "events", Requires: []plugin.Type{plugin.EventPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			bus, err := plugin.Single[eventBus](ic, plugin.EventPlugin)
			if err != nil {
				return nil, err
			}
			return &eventsService{bus: bus}, nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.TTRPCPlugin, ID: "events", Requires: []plugin.Type{plugin.EventPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			bus, err := plugin.Single[eventBus](ic, plugin.EventPlugin)
			if err != nil {
				return nil, err
			}
			return ttrpcEventsService{bus: bus}, nil
		},
	})
}
