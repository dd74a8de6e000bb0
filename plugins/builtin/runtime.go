package builtin

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/core/events"
	"github.com/hullrt/hull/core/runtime/shims"
	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/shim/runc"
)

// RuntimeConfig is the configuration of the runtime manager
// (io.containerd.runtime.v2.task).
type RuntimeConfig struct {
	DefaultRuntime    string                  `toml:"default_runtime" doc:"Runtime of containers that name none."`
	ReconcileInterval string                  `toml:"reconcile_interval" doc:"How often shims and tasks are checked against each other, so that a shim without a task or a task without a live shim is cleaned up (Go duration; 0 disables)."`
	ShimDebug         bool                    `toml:"shim_debug" doc:"Start shims with -debug, so that they log at debug level into hulld's log."`
	Runtimes          map[string]RuntimeEntry `toml:"runtimes" doc:"Per runtime name settings, e.g. [plugins.\"io.containerd.runtime.v2.task\".runtimes.\"io.containerd.runc.v2\"]."`
}

// RuntimeEntry configures one runtime name.
type RuntimeEntry struct {
	Binary string `toml:"binary" doc:"Absolute path of the shim binary, instead of containerd-shim-<name>-<version> looked up on PATH."`
}

func registerRuntime(r *plugin.Registry) {
	r.Register(&plugin.Registration{
		Type: plugin.RuntimePluginV2, ID: "task",
		Requires: []plugin.Type{plugin.EventPlugin, plugin.MetadataPlugin},
		Config:   &RuntimeConfig{DefaultRuntime: "io.containerd.hull.v2", ReconcileInterval: "1m"},
		Init: func(ic *plugin.InitContext) (any, error) {
			cfg := ic.Config.(*RuntimeConfig)
			interval, err := time.ParseDuration(cfg.ReconcileInterval)
			if err != nil {
				return nil, fmt.Errorf("reconcile_interval %q: %v: %w", cfg.ReconcileInterval, err, errdefs.ErrInvalidArgument)
			}
			ev, err := plugin.Single[events.Publisher](ic, plugin.EventPlugin)
			if err != nil {
				return nil, err
			}
			db, err := plugin.Single[interface{ Containers() containers.Store }](ic, plugin.MetadataPlugin)
			if err != nil {
				return nil, err
			}
			store := db.Containers()
			runtimes := map[string]shims.RuntimeConfig{}
			for name, rc := range cfg.Runtimes {
				if rc.Binary != "" && !filepath.IsAbs(rc.Binary) {
					return nil, fmt.Errorf("runtimes.%q.binary %q must be an absolute path: %w", name, rc.Binary, errdefs.ErrInvalidArgument)
				}
				runtimes[name] = shims.RuntimeConfig{Binary: rc.Binary}
			}
			self, err := os.Executable()
			if err != nil {
				return nil, err
			}
			address := ic.Properties["grpc.address"]
			ic.Meta.Exports["state"] = ic.State // bundles, for debug dumps
			log := ic.Log
			if log == nil {
				log = slog.Default()
			}
			warnOldRunc(log)
			// The bus delivers container deletions, whose tasks go at
			// once (a bus without subscriptions leaves it to the
			// reconciler).
			sub, _ := ev.(events.Subscriber)
			return shims.New(ic.Context, shims.Config{
				Containers: sub,
				Root:       ic.Root, State: ic.State,
				Address: address, TTRPCAddress: ic.Properties["ttrpc.address"],
				PublishBinary:  self,
				Debug:          cfg.ShimDebug,
				DefaultRuntime: cfg.DefaultRuntime, Runtimes: runtimes,
				RuncRoot:          filepath.Join(filepath.Dir(ic.State), "runc"),
				ReconcileInterval: interval,
				Publisher:         ev,
				Log:               log,
				ContainerExists: func(ctx context.Context, id string) (bool, error) {
					_, err := store.Get(ctx, id)
					if errdefs.IsNotFound(err) {
						return false, nil
					}
					return err == nil, err
				},
			})
		},
	})
}

// warnOldRunc says at start-up when the runc on PATH predates the fixes
// for the 2025 container escapes (CVE-2025-31133, CVE-2025-52565,
// CVE-2025-52881): 1.2.8, 1.3.3 and 1.4.0 carry them.
func warnOldRunc(log *slog.Logger) {
	path, err := exec.LookPath("runc")
	if err != nil {
		log.Warn("runc not found on PATH: containers cannot run until it is installed")
		return
	}
	v, err := runc.Probe(path, nil)
	if err != nil {
		log.Warn("runc --version failed", "path", path, "error", err)
		return
	}
	if !v.HasEscapeFixes() {
		log.Warn("runc is older than the releases fixing CVE-2025-31133, CVE-2025-52565 and CVE-2025-52881 (1.2.8, 1.3.3, 1.4.0): see docs/operations.md to install a fixed one", "path", path, "version", v.String())
	}
}

// RuncVersion extracts the version from `runc --version` output
// ("runc version 1.1.5+ds1" → "1.1.5"); the parsing is shim/runc's.
func RuncVersion(out string) string {
	v, ok := runc.ParseVersion(out)
	if !ok {
		return ""
	}
	return v.String()
}

// RuncFixed reports whether runc version v carries the 2025 escape fixes.
func RuncFixed(v string) bool {
	parsed, ok := runc.ParseVersion("runc version " + v)
	return ok && parsed.HasEscapeFixes()
}
