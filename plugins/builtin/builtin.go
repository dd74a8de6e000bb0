// Package builtin registers hulld's core plugins: the event exchange, the
// content store, the metadata store, its garbage collector, the lease
// manager, the snapshotters, the differ and the runtime manager. The service
// layer and the gRPC adapters over them are in plugins/services.
package builtin

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hullrt/hull/core/content/local"
	"github.com/hullrt/hull/core/events"
	"github.com/hullrt/hull/core/events/exchange"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/metadata"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/plugins/restart"
)

// GCConfig is the configuration of the garbage collection scheduler.
type GCConfig struct {
	ScheduleDelay string `toml:"schedule_delay" doc:"How long after a deletion garbage collection runs, so that a burst of deletions is collected once (Go duration)."`
	StartupDelay  string `toml:"startup_delay" doc:"How long after start-up the first collection runs (Go duration)."`
}

// The local store is what the metadata store runs over by default.
var _ metadata.Backend = (*local.Store)(nil)

// collector is what the gc scheduler drives in the metadata store.
type collector interface {
	SetGCDelay(time.Duration)
	ScheduleGC()
}

// Register adds the core plugins to r.
func Register(r *plugin.Registry) {
	r.Register(&plugin.Registration{
		Type: plugin.EventPlugin, ID: "exchange",
		Init: func(ic *plugin.InitContext) (any, error) { return exchange.New(), nil },
	})
	r.Register(&plugin.Registration{
		Type: plugin.ContentPlugin, ID: "content",
		Init: func(ic *plugin.InitContext) (any, error) {
			ic.Meta.Exports["root"] = ic.Root
			return local.NewStore(ic.Root)
		},
	})
	registerSnapshotters(r)
	registerRuntime(r)
	restart.Register(r)
	r.Register(&plugin.Registration{
		Type: plugin.MetadataPlugin, ID: "bolt",
		Requires: []plugin.Type{plugin.ContentPlugin, plugin.EventPlugin, plugin.SnapshotPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			cs, err := plugin.Single[metadata.Backend](ic, plugin.ContentPlugin)
			if err != nil {
				return nil, err
			}
			ev, err := plugin.Single[events.Publisher](ic, plugin.EventPlugin)
			if err != nil {
				return nil, err
			}
			if err := os.MkdirAll(ic.Root, 0o700); err != nil {
				return nil, err
			}
			path := filepath.Join(ic.Root, "meta.db")
			ic.Meta.Exports["path"] = path
			db, err := metadata.Open(path, cs, metadata.Options{Publisher: ev})
			if err != nil {
				return nil, err
			}
			for name, sn := range ic.GetByType(plugin.SnapshotPlugin) {
				s, ok := sn.(snapshots.Snapshotter)
				if !ok {
					ic.Log.Warn("snapshotter plugin does not implement snapshots.Snapshotter; not used", "id", name, "type", fmt.Sprintf("%T", sn))
					continue
				}
				db.AddSnapshotter(name, s)
			}
			return db, nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.GCPlugin, ID: "scheduler", Requires: []plugin.Type{plugin.MetadataPlugin},
		Config: &GCConfig{ScheduleDelay: "100ms", StartupDelay: "100ms"},
		Init: func(ic *plugin.InitContext) (any, error) {
			cfg := ic.Config.(*GCConfig)
			delay, err := time.ParseDuration(cfg.ScheduleDelay)
			if err != nil {
				return nil, fmt.Errorf("schedule_delay %q: %w", cfg.ScheduleDelay, err)
			}
			startup, err := time.ParseDuration(cfg.StartupDelay)
			if err != nil {
				return nil, fmt.Errorf("startup_delay %q: %w", cfg.StartupDelay, err)
			}
			db, err := plugin.Single[collector](ic, plugin.MetadataPlugin)
			if err != nil {
				return nil, err
			}
			db.SetGCDelay(delay)
			// The timer only kicks the collector, which Close stops; a kick
			// after Close is dropped.
			time.AfterFunc(startup, db.ScheduleGC)
			return db, nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.LeasePlugin, ID: "manager", Requires: []plugin.Type{plugin.MetadataPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			db, err := plugin.Single[interface{ Leases() leases.Manager }](ic, plugin.MetadataPlugin)
			if err != nil {
				return nil, err
			}
			return db.Leases(), nil
		},
	})
}
