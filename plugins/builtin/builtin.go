// Package builtin registers hulld's core plugins: the event exchange, the
// content store, the metadata store, its garbage collector and the lease
// manager. The gRPC adapters over them are in package grpcapi.
package builtin

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hullrt/hull/core/content/local"
	"github.com/hullrt/hull/core/events/exchange"
	"github.com/hullrt/hull/core/metadata"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/plugin"
)

// GCConfig is the configuration of the garbage collection scheduler.
type GCConfig struct {
	ScheduleDelay string `toml:"schedule_delay" doc:"How long after a deletion garbage collection runs, so that a burst of deletions is collected once (Go duration)."`
	StartupDelay  string `toml:"startup_delay" doc:"How long after start-up the first collection runs (Go duration)."`
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
	r.Register(&plugin.Registration{
		Type: plugin.MetadataPlugin, ID: "bolt",
		Requires: []plugin.Type{plugin.ContentPlugin, plugin.EventPlugin, plugin.SnapshotPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			cs, err := ic.GetSingle(plugin.ContentPlugin)
			if err != nil {
				return nil, err
			}
			ev, err := ic.GetSingle(plugin.EventPlugin)
			if err != nil {
				return nil, err
			}
			if err := os.MkdirAll(ic.Root, 0o700); err != nil {
				return nil, err
			}
			path := filepath.Join(ic.Root, "meta.db")
			ic.Meta.Exports["path"] = path
			db, err := metadata.Open(path, cs.(*local.Store), metadata.Options{Publisher: ev.(*exchange.Exchange)})
			if err != nil {
				return nil, err
			}
			for name, sn := range ic.GetByType(plugin.SnapshotPlugin) {
				db.AddSnapshotter(name, sn.(snapshots.Snapshotter))
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
			m, err := ic.GetSingle(plugin.MetadataPlugin)
			if err != nil {
				return nil, err
			}
			db := m.(*metadata.DB)
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
			m, err := ic.GetSingle(plugin.MetadataPlugin)
			if err != nil {
				return nil, err
			}
			return m.(*metadata.DB).Leases(), nil
		},
	})
}
