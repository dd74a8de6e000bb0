package restart

import (
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/restart"
	"github.com/hullrt/hull/plugin"
)

func TestParseInterval(t *testing.T) {
	for in, want := range map[string]time.Duration{"": DefaultInterval, "0": DefaultInterval, "0s": DefaultInterval, "250ms": 250 * time.Millisecond, "1m": time.Minute} {
		if got, err := parseInterval(in); got != want || err != nil {
			t.Errorf("parseInterval(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"10", "-1s", "soon"} {
		if _, err := parseInterval(in); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), in) {
			t.Errorf("parseInterval(%q): %v, want InvalidArgument naming it", in, err)
		}
	}
}

func TestRegistration(t *testing.T) {
	r := &plugin.Registry{}
	Register(r)
	regs := r.Graph(nil)
	if len(regs) != 1 || regs[0].URI() != "io.containerd.monitor.container.v1.restart" {
		t.Fatalf("registered %v", regs)
	}
	if cfg := regs[0].Config.(*Config); cfg.Interval != "10s" {
		t.Errorf("default interval %q, want containerd's 10s", cfg.Interval)
	}
	// A bad interval stops the plugin before it looks for services.
	set := &plugin.Set{}
	p := set.Init(regs[0], &plugin.InitContext{Context: t.Context(), Config: &Config{Interval: "often"}})
	if !errdefs.IsInvalidArgument(p.Err) {
		t.Errorf("interval \"often\": %v", p.Err)
	}
	// Without the service plugins it does not run.
	p = set.Init(regs[0], &plugin.InitContext{Context: t.Context(), Config: &Config{Interval: "1s"}})
	if p.Err == nil {
		t.Error("the monitor started without services")
	}
}

func TestLogCreator(t *testing.T) {
	for _, tc := range []struct {
		labels         map[string]string
		tty            bool
		stdout, stderr string
	}{
		{nil, false, "", ""},
		{map[string]string{restart.LogURILabel: "file:///var/log/a.log"}, false, "file:///var/log/a.log", "file:///var/log/a.log"},
		{map[string]string{restart.LogURILabel: "binary:///usr/bin/logger?tag=x"}, false, "binary:///usr/bin/logger?tag=x", "binary:///usr/bin/logger?tag=x"},
		{map[string]string{restart.LogURILabel: "file:///var/log/a.log"}, true, "file:///var/log/a.log", ""},
		// The old label is a path; the URI wins over it.
		{map[string]string{restart.LogPathLabel: "/var/log/b.log"}, false, "file:///var/log/b.log", "file:///var/log/b.log"},
		{map[string]string{restart.LogPathLabel: "/var/log/b.log", restart.LogURILabel: "file:///c"}, false, "file:///c", "file:///c"},
	} {
		creator, err := logCreator(tc.labels, tc.tty)
		if err != nil {
			t.Fatalf("%v: %v", tc.labels, err)
		}
		io, err := creator("ct")
		if err != nil {
			t.Fatal(err)
		}
		if cfg := io.Config(); cfg.Stdout != tc.stdout || cfg.Stderr != tc.stderr || cfg.Terminal != (tc.tty && tc.stdout != "") || cfg.Stdin != "" {
			t.Errorf("%v tty %v: %+v; want stdout %q stderr %q", tc.labels, tc.tty, cfg, tc.stdout, tc.stderr)
		}
	}
	for _, labels := range []map[string]string{
		{restart.LogPathLabel: "relative.log"},
		{restart.LogURILabel: "no scheme"},
		{restart.LogURILabel: "%zz"},
	} {
		if _, err := logCreator(labels, false); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "containerd.io/restart.log") {
			t.Errorf("%v: %v, want InvalidArgument naming the label", labels, err)
		}
	}
}

func FuzzLogCreator(f *testing.F) {
	for _, s := range []string{"file:///var/log/x", "binary:///bin/logger?a=b", "", "x", "%", "/abs/path", "file://host/x"} {
		f.Add(s, s, false)
	}
	f.Fuzz(func(t *testing.T, uri, path string, tty bool) {
		creator, err := logCreator(map[string]string{restart.LogURILabel: uri, restart.LogPathLabel: path}, tty)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("%q %q: error %v is not InvalidArgument", uri, path, err)
			}
			return
		}
		io, err := creator("x")
		if err != nil {
			t.Fatal(err)
		}
		cfg := io.Config()
		if cfg.Stdin != "" || (tty && cfg.Stderr != "") {
			t.Fatalf("%q %q tty %v: %+v", uri, path, tty, cfg)
		}
		if uri == "" && path == "" && cfg.Stdout != "" {
			t.Fatalf("no labels gave stdout %q", cfg.Stdout)
		}
	})
}

func FuzzParseInterval(f *testing.F) {
	for _, s := range []string{"", "10s", "0", "-1s", "1h2m", "9999999999h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseInterval(s)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("%q: %v", s, err)
			}
			return
		}
		if d <= 0 {
			t.Fatalf("%q: interval %v", s, d)
		}
	})
}
