package builtin

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/config"
)

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  config.Validator
		want string // "" for valid
	}{
		{&GCConfig{ScheduleDelay: "100ms", StartupDelay: "0s"}, ""},
		{&GCConfig{ScheduleDelay: "soon", StartupDelay: "-1s"}, "schedule_delay = \"soon\": not a Go duration such as \"100ms\", \"30s\" or \"1m\"\nstartup_delay = \"-1s\": not a Go duration"},
		{&RuntimeConfig{ReconcileInterval: "0"}, ""},
		{&RuntimeConfig{ReconcileInterval: "1m", Runtimes: map[string]RuntimeEntry{"io.x.v2": {Binary: "/bin/x"}, "io.y.v2": {Binary: "y"}}}, "runtimes.\"io.y.v2\".binary = \"y\": must be an absolute path"},
		{&RuntimeConfig{ReconcileInterval: "1 minute"}, "reconcile_interval = \"1 minute\""},
		{&OverlayConfig{}, ""},
		{&OverlayConfig{RootPath: "snaps", ParallelUnpack: -1}, "root_path = \"snaps\": must be an absolute path\nparallel_unpack = -1: use 1 or more"},
		{&NativeConfig{RootPath: "/n"}, ""},
		{&NativeConfig{RootPath: "./n"}, "root_path = \"./n\""},
	} {
		err := c.cfg.Validate()
		if c.want == "" {
			if err != nil {
				t.Errorf("%+v: %v", c.cfg, err)
			}
			continue
		}
		if !errdefs.IsInvalidArgument(err) || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%+v:\n got %v\nwant %s...", c.cfg, err, c.want)
		}
		var ve *config.ValueError
		if !errors.As(err, &ve) {
			t.Errorf("%+v: %v holds no ValueError", c.cfg, err)
		}
	}
}
