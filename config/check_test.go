package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// testDelays validates like hull's own plugin configs: ValueErrors, joined.
type testDelays struct {
	Delay    string            `toml:"delay" doc:"A Go duration."`
	Runtimes map[string]string `toml:"runtimes" doc:"Binaries by runtime name."`
}

func (d *testDelays) Validate() error {
	var errs []error
	if _, err := time.ParseDuration(d.Delay); err != nil {
		errs = append(errs, InvalidValue(d.Delay, "not a Go duration such as \"100ms\"", "delay"))
	}
	for name, bin := range d.Runtimes {
		if !strings.HasPrefix(bin, "/") {
			errs = append(errs, InvalidValue(bin, "must be an absolute path", "runtimes", name))
		}
	}
	return errors.Join(errs...)
}

// testPlain validates like the CRI sections: plain errors that begin with
// the key.
type testPlain struct {
	CNI struct {
		IPPref string `toml:"ip_pref" doc:"ipv4 or ipv6."`
	} `toml:"cni" doc:"CNI."`
	Other string `toml:"other" doc:"Anything."`
}

func (p *testPlain) Validate() error {
	if p.CNI.IPPref != "ipv4" && p.CNI.IPPref != "ipv6" {
		return fmt.Errorf("cni.ip_pref %q: want ipv4 or ipv6: %w", p.CNI.IPPref, errdefs.ErrInvalidArgument)
	}
	if p.Other == "bad" {
		return fmt.Errorf("something about other is wrong: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}

func checkPlugins() []PluginSection {
	plain := &testPlain{}
	plain.CNI.IPPref = "ipv4"
	return append(testPlugins(),
		PluginSection{URI: "io.containerd.test.v1.delays", Config: &testDelays{Delay: "1s"}},
		PluginSection{URI: "io.containerd.test.v1.plain", Config: plain},
	)
}

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		file string
		want []string // each a whole line of the error, in order
	}{
		{"version = 3\n", nil},
		{"version = 3\nroot = \"var/lib/hull\"\n", []string{`/etc/hull/config.toml:2:1: invalid value "var/lib/hull" for "root": must be an absolute path`}},
		{"version = 3\nstate = \"\"\n", nil}, // empty means the default
		{"version = 3\noom_score = -1001\n", []string{`/etc/hull/config.toml:2:1: invalid value -1001 for "oom_score": must be between -1000 and 1000`}},
		{"version = 3\n[grpc]\naddress = \"hull.sock\"\nmax_recv_message_size = -1\n", []string{
			`/etc/hull/config.toml:3:1: invalid value "hull.sock" for 'plugins."io.containerd.server.v1.grpc".address': must be the absolute path of a unix socket`,
			`/etc/hull/config.toml:4:1: invalid value -1 for 'plugins."io.containerd.server.v1.grpc".max_recv_message_size': must be a positive number of bytes`,
		}},
		{"version = 4\n[plugins.\"io.containerd.server.v1.metrics\"]\naddress = \"1338\"\n", []string{
			`/etc/hull/config.toml:3:1: invalid value "1338" for 'plugins."io.containerd.server.v1.metrics".address': must be host:port, such as "127.0.0.1:1338"`,
		}},
		{"version = 3\n[grpc]\ntcp_address = \"127.0.0.1:0\"\ntcp_tls_cert = \"/c.pem\"\n", []string{
			`/etc/hull/config.toml:4:1: invalid value "/c.pem" for 'plugins."io.containerd.server.v1.grpc-tcp".tls_cert': tls_cert and tls_key go together: set both, or neither`,
		}},
		{"version = 3\n[proxy_plugins.s]\ntype = \"snapshots\"\naddress = \"/run/s.sock\"\n[proxy_plugins.t]\ntype = \"snapshot\"\n", []string{
			`/etc/hull/config.toml:3:1: invalid value "snapshots" for "proxy_plugins.s.type": use snapshot, content, sandbox or diff`,
			`/etc/hull/config.toml:5:16: invalid value "" for "proxy_plugins.t.address": must be the absolute path of the plugin's unix socket`,
		}},
		{"version = 3\nrequired_plugins = [\"io.containerd.nope.v1.x\", \"io.containerd.grpc.v1.containers\"]\ndisabled_plugins = [\"io.containerd.grpc.v1.containers\"]\n", []string{
			`/etc/hull/config.toml:2:1: invalid value "io.containerd.nope.v1.x" for "required_plugins": hull has no such plugin`,
			`/etc/hull/config.toml:2:1: invalid value "io.containerd.grpc.v1.containers" for "required_plugins": the plugin is also in disabled_plugins`,
		}},
		// A required proxy plugin is known.
		{"version = 3\nrequired_plugins = [\"io.containerd.snapshotter.v1.s\"]\n[proxy_plugins.s]\ntype = \"snapshot\"\naddress = \"/run/s.sock\"\n", nil},
		{"version = 3\n[plugins.\"io.containerd.test.v1.delays\"]\ndelay = \"soon\"\n[plugins.\"io.containerd.test.v1.delays\".runtimes]\n\"io.x.v2\" = \"bin/x\"\n", []string{
			`/etc/hull/config.toml:3:1: invalid value "soon" for 'plugins."io.containerd.test.v1.delays".delay': not a Go duration such as "100ms"`,
			`/etc/hull/config.toml:5:1: invalid value "bin/x" for 'plugins."io.containerd.test.v1.delays".runtimes."io.x.v2"': must be an absolute path`,
		}},
		// A version 2 file's section, migrated, still points at its line.
		{"version = 2\n[plugins.\"io.containerd.test.v1.delays\"]\n  delay = \"soon\"\n", []string{
			`/etc/hull/config.toml:3:3: invalid value "soon" for 'plugins."io.containerd.test.v1.delays".delay': not a Go duration such as "100ms"`,
		}},
		// Disabled plugins' values are never parsed.
		{"version = 3\ndisabled_plugins = [\"io.containerd.test.v1.delays\"]\n[plugins.\"io.containerd.test.v1.delays\"]\ndelay = \"soon\"\n", nil},
		{"version = 3\n[plugins.\"io.containerd.test.v1.plain\".cni]\nip_pref = \"ipv5\"\n", []string{
			`/etc/hull/config.toml:3:1: invalid value in 'plugins."io.containerd.test.v1.plain"': cni.ip_pref "ipv5": want ipv4 or ipv6`,
		}},
		{"version = 3\n[plugins.\"io.containerd.test.v1.plain\"]\nother = \"bad\"\n", []string{
			`/etc/hull/config.toml:2:10: invalid value in 'plugins."io.containerd.test.v1.plain"': something about other is wrong`,
		}},
	} {
		cfg, _ := mustParse(t, c.file)
		err := cfg.Check(checkPlugins())
		if len(c.want) == 0 {
			if err != nil {
				t.Errorf("%q: Check = %v", c.file, err)
			}
			continue
		}
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q: Check = %v, want InvalidArgument", c.file, err)
			continue
		}
		if got := err.Error(); got != strings.Join(c.want, "\n") {
			t.Errorf("%q:\n got %s\nwant %s", c.file, got, strings.Join(c.want, "\n"))
		}
		var ce *Error
		if !errors.As(err, &ce) || ce.Line == 0 || ce.Key == "" {
			t.Errorf("%q: no positioned *Error in %v", c.file, err)
		}
	}
}

func TestCheckDefaultsAndFlags(t *testing.T) {
	// The defaults pass; a relative --root (set after loading, so without
	// a position) fails naming the key.
	c := Default()
	if err := c.Check(checkPlugins()); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	c.Root = "rel"
	if err := c.Check(checkPlugins()); err == nil || err.Error() != `invalid value "rel" for "root": must be an absolute path` {
		t.Fatalf("relative root: %v", err)
	}
}
