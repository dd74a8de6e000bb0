// Package snapshots registers the snapshots service: the metadata store's
// namespaced snapshotters in process, with the default one
// (snapshots-service), and containerd's snapshots gRPC API over any Source,
// which hull-snapshotter serves too.
package snapshots

import (
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/plugins/services"
)

// Config is the configuration of the snapshots service.
type Config struct {
	DefaultSnapshotter string `toml:"default_snapshotter" doc:"Snapshotter used by calls that name none (ctr and hullctl without --snapshotter, in-process callers). Falls back to native when it is not loaded."`
}

// Defaulted is a Source that says which snapshotter "" names: what the
// snapshots service plugin provides.
type Defaulted interface {
	Source
	Default() string
}

// Service is the snapshots service plugin's instance: the metadata store's
// namespaced snapshotters, with "" naming the default one.
type Service struct {
	source      Source
	defaultName string
}

// Snapshotter returns the namespaced snapshotter name, or the default one
// for "".
func (s *Service) Snapshotter(name string) (snapshots.Snapshotter, error) {
	if name == "" {
		name = s.defaultName
	}
	return s.source.Snapshotter(name)
}

// Default is the name of the default snapshotter.
func (s *Service) Default() string { return s.defaultName }

// Register adds the snapshots service plugin and its gRPC adapter to r.
func Register(r *plugin.Registry) {
	r.Register(&plugin.Registration{
		Type: plugin.ServicePlugin, ID: services.SnapshotsService, Requires: []plugin.Type{plugin.MetadataPlugin},
		Config: &Config{DefaultSnapshotter: "overlayfs"},
		Init: func(ic *plugin.InitContext) (any, error) {
			db, err := plugin.Single[Source](ic, plugin.MetadataPlugin)
			if err != nil {
				return nil, err
			}
			def := ic.Config.(*Config).DefaultSnapshotter
			if _, err := db.Snapshotter(def); err != nil {
				// overlayfs may be missing on this host: fall back to
				// native rather than fail every unnamed call.
				if _, nerr := db.Snapshotter("native"); nerr == nil {
					def = "native"
				}
			}
			ic.Meta.Exports["default"] = def
			return &Service{source: db, defaultName: def}, nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "snapshots", Requires: []plugin.Type{plugin.ServicePlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			s, err := plugin.Instance[Defaulted](ic, plugin.ServicePlugin, services.SnapshotsService)
			if err != nil {
				return nil, err
			}
			// ctr and the client library find the default here.
			ic.Meta.Exports["default"] = s.Default()
			return NewSnapshotsServer(s), nil
		},
	})
}
