// Package leases registers the leases service: the metadata store's
// leases.Manager in process (leases-service) and containerd's leases gRPC
// API over it.
package leases

import (
	"context"

	"github.com/google/uuid"
	coreleases "github.com/hullrt/hull/core/leases"

	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/plugins/services"
)

// Register adds the leases service plugin (LeasesService, the metadata
// store's coreleases.Manager) and its gRPC adapter to r.
func Register(r *plugin.Registry) {
	r.Register(&plugin.Registration{
		Type: plugin.ServicePlugin, ID: services.LeasesService, Requires: []plugin.Type{plugin.MetadataPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			db, err := plugin.Single[interface{ Leases() coreleases.Manager }](ic, plugin.MetadataPlugin)
			if err != nil {
				return nil, err
			}
			return generatedIDs{db.Leases()}, nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "leases", Requires: []plugin.Type{plugin.ServicePlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			s, err := plugin.Instance[coreleases.Manager](ic, plugin.ServicePlugin, services.LeasesService)
			if err != nil {
				return nil, err
			}
			return &leasesService{manager: s}, nil
		},
	})
}

// generatedIDs gives a lease created without an ID a random one, as
// containerd's leases service does, for in-process and gRPC callers alike.
type generatedIDs struct{ coreleases.Manager }

// Create creates lease id, or a lease with a new random ID when id is "".
func (m generatedIDs) Create(ctx context.Context, id string, labels map[string]string) (coreleases.Lease, error) {
	if id == "" {
		id = uuid.NewString()
	}
	return m.Manager.Create(ctx, id, labels)
}
