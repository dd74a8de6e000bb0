// Package content registers the content service: the metadata store's
// namespaced content.Store in process (content-service) and containerd's
// content gRPC API over it.
package content

import (
	corecontent "github.com/hullrt/hull/core/content"

	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/plugins/services"
)

// Register adds the content service plugin (ContentService, the metadata
// store's corecontent.Store) and its gRPC adapter to r.
func Register(r *plugin.Registry) {
	r.Register(&plugin.Registration{
		Type: plugin.ServicePlugin, ID: services.ContentService, Requires: []plugin.Type{plugin.MetadataPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			db, err := plugin.Single[interface{ Content() corecontent.Store }](ic, plugin.MetadataPlugin)
			if err != nil {
				return nil, err
			}
			return db.Content(), nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "content", Requires: []plugin.Type{plugin.ServicePlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			s, err := plugin.Instance[corecontent.Store](ic, plugin.ServicePlugin, services.ContentService)
			if err != nil {
				return nil, err
			}
			return &contentService{store: s}, nil
		},
	})
}
