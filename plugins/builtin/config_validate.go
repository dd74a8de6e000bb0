package builtin

import (
	"errors"
	"path/filepath"
	"sort"
	"time"

	"github.com/hullrt/hull/config"
)

// durationValue checks a Go duration that must not be negative, as key
// (a path inside the plugin's section).
func durationValue(v string, key ...string) error {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return config.InvalidValue(v, "not a Go duration such as \"100ms\", \"30s\" or \"1m\"", key...)
	}
	return nil
}

// absPath checks a path that, when set, must be absolute: hulld's working
// directory is nobody's choice.
func absPath(v string, key ...string) error {
	if v != "" && !filepath.IsAbs(v) {
		return config.InvalidValue(v, "must be an absolute path", key...)
	}
	return nil
}

// Validate checks the collector's delays.
func (c *GCConfig) Validate() error {
	return errors.Join(durationValue(c.ScheduleDelay, "schedule_delay"), durationValue(c.StartupDelay, "startup_delay"))
}

// Validate checks the reconcile interval and the runtimes' binaries.
func (c *RuntimeConfig) Validate() error {
	errs := []error{durationValue(c.ReconcileInterval, "reconcile_interval")}
	names := make([]string, 0, len(c.Runtimes))
	for name := range c.Runtimes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		errs = append(errs, absPath(c.Runtimes[name].Binary, "runtimes", name, "binary"))
	}
	return errors.Join(errs...)
}

// Validate checks the overlayfs snapshotter's root and unpack parallelism.
func (c *OverlayConfig) Validate() error {
	var err error
	if c.ParallelUnpack < 0 {
		err = config.InvalidValue(c.ParallelUnpack, "use 1 or more, or 0 for GOMAXPROCS", "parallel_unpack")
	}
	return errors.Join(absPath(c.RootPath, "root_path"), err)
}

// Validate checks the native snapshotter's root.
func (c *NativeConfig) Validate() error { return absPath(c.RootPath, "root_path") }
