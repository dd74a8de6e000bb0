// Package images registers the images service: the metadata store's
// images.Store in process (images-service) and containerd's images gRPC API
// over it.
package images

import (
	coreimages "github.com/hullrt/hull/core/images"

	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/plugins/services"
)

// Register adds the images service plugin (ImagesService, the metadata
// store's coreimages.Store) and its gRPC adapter to r.
func Register(r *plugin.Registry) {
	r.Register(&plugin.Registration{
		Type: plugin.ServicePlugin, ID: services.ImagesService, Requires: []plugin.Type{plugin.MetadataPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			db, err := plugin.Single[interface{ Images() coreimages.Store }](ic, plugin.MetadataPlugin)
			if err != nil {
				return nil, err
			}
			return db.Images(), nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "images", Requires: []plugin.Type{plugin.ServicePlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			s, err := plugin.Instance[coreimages.Store](ic, plugin.ServicePlugin, services.ImagesService)
			if err != nil {
				return nil, err
			}
			return &imagesService{store: s}, nil
		},
	})
}
