package grpcapi

import (
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/hullrt/hull/core/metadata"
	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/runtime"
)

// Register adds hulld's gRPC services to r.
func Register(r *plugin.Registry) {
	withDB := func(ic *plugin.InitContext) (*metadata.DB, error) {
		m, err := ic.GetSingle(plugin.MetadataPlugin)
		if err != nil {
			return nil, err
		}
		return m.(*metadata.DB), nil
	}
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "namespaces", Requires: []plugin.Type{plugin.MetadataPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			db, err := withDB(ic)
			if err != nil {
				return nil, err
			}
			return &namespacesService{store: db.Namespaces()}, nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "content", Requires: []plugin.Type{plugin.MetadataPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			db, err := withDB(ic)
			if err != nil {
				return nil, err
			}
			return &contentService{store: db.Content()}, nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "images", Requires: []plugin.Type{plugin.MetadataPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			db, err := withDB(ic)
			if err != nil {
				return nil, err
			}
			return &imagesService{store: db.Images()}, nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "containers", Requires: []plugin.Type{plugin.MetadataPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			db, err := withDB(ic)
			if err != nil {
				return nil, err
			}
			return &containersService{store: db.Containers()}, nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "leases", Requires: []plugin.Type{plugin.MetadataPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			db, err := withDB(ic)
			if err != nil {
				return nil, err
			}
			return &leasesService{manager: db.Leases()}, nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "snapshots", Requires: []plugin.Type{plugin.MetadataPlugin},
		Config: &SnapshotsConfig{DefaultSnapshotter: "overlayfs"},
		Init: func(ic *plugin.InitContext) (any, error) {
			db, err := withDB(ic)
			if err != nil {
				return nil, err
			}
			def := ic.Config.(*SnapshotsConfig).DefaultSnapshotter
			if _, err := db.Snapshotter(def); err != nil {
				// overlayfs may be missing on this host: fall back to
				// native rather than fail every unnamed call.
				if _, nerr := db.Snapshotter("native"); nerr == nil {
					def = "native"
				}
			}
			ic.Meta.Exports["default"] = def
			return NewSnapshotsServer(db, def), nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "diff", Requires: []plugin.Type{plugin.DiffPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			d, err := ic.GetSingle(plugin.DiffPlugin)
			if err != nil {
				return nil, err
			}
			return &diffService{differ: d.(differ)}, nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "events", Requires: []plugin.Type{plugin.EventPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			bus, err := ic.GetSingle(plugin.EventPlugin)
			if err != nil {
				return nil, err
			}
			return &eventsService{bus: bus.(eventBus)}, nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.TTRPCPlugin, ID: "events", Requires: []plugin.Type{plugin.EventPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			bus, err := ic.GetSingle(plugin.EventPlugin)
			if err != nil {
				return nil, err
			}
			return ttrpcEventsService{bus: bus.(eventBus)}, nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "tasks", Requires: []plugin.Type{plugin.RuntimePluginV2, plugin.MetadataPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			db, err := withDB(ic)
			if err != nil {
				return nil, err
			}
			rt, err := ic.GetByID(plugin.RuntimePluginV2, "task")
			if err != nil {
				return nil, err
			}
			return &tasksService{runtime: rt.(*runtime.Manager), containers: db.Containers(), snapshotter: db.Snapshotter}, nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "introspection",
		Init: func(ic *plugin.InitContext) (any, error) {
			id, err := loadUUID(ic.Root, uuid.NewString)
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
			return &introspectionService{plugins: ic.Plugins(), uuid: id}, nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "version",
		Init: func(ic *plugin.InitContext) (any, error) { return versionService{}, nil },
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "healthcheck",
		Init: func(ic *plugin.InitContext) (any, error) { return healthService{health.NewServer()}, nil },
	})
}

// SnapshotsConfig is the configuration of the snapshots service.
type SnapshotsConfig struct {
	DefaultSnapshotter string `toml:"default_snapshotter" doc:"Snapshotter used by calls that name none (ctr and hullctl without --snapshotter). Falls back to native when it is not loaded."`
}

type healthService struct{ *health.Server }

func (h healthService) RegisterGRPC(g *grpc.Server) { healthpb.RegisterHealthServer(g, h.Server) }
