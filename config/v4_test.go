package config

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
)

// containerd2Default is what containerd 2.4.2's `containerd config default`
// writes, kept as it came.
func containerd2Default(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("testdata/containerd-2.4.2-default.toml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// containerd 2.4's default file loads: its listeners are hull's, and
// Validate names every section and key hull does not act on, with no
// suggestion that points at an unrelated plugin.
func TestContainerd2DefaultFile(t *testing.T) {
	c, ws := mustParse(t, containerd2Default(t))
	if len(ws) != 0 {
		t.Fatalf("load warnings:\n%s", warningStrings(ws))
	}
	if c.Root != "/var/lib/containerd" || c.State != "/run/containerd" || c.GRPC.Address != "/run/containerd/containerd.sock" ||
		c.TTRPCAddress() != "/run/containerd/containerd.sock.ttrpc" || c.GRPC.MaxRecvMsgSize != 16<<20 || c.Debug.Level != "info" ||
		c.Debug.Format != "text" || c.GRPC.TCPAddress != "" || c.Debug.Address != "" || c.Metrics.Address != "" {
		t.Fatalf("config: %+v", c)
	}
	got := warningStrings(c.Validate(testPlugins()))
	for _, want := range []string{
		`unknown plugin "io.containerd.nri.v1.nri": hull has no such plugin`,
		`unknown plugin "io.containerd.internal.v1.opt": hull has no such plugin`,
		`timeout "io.containerd.timeout.shim.cleanup" is not supported`,
		`stream processor "io.containerd.ocicrypt.decoder.v1.tar.gzip" is not supported`,
		`unknown key 'plugins."io.containerd.gc.v1.scheduler".mutation_threshold'`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings lack %q:\n%s", want, got)
		}
	}
	for _, bad := range []string{"io.containerd.server.v1", "grpc-prometheus", "did you mean \"io.containerd.grpc.v1.cri\"", "lease.v1.manager",
		"did you mean \"io.containerd.metadata.v1.bolt\"", "did you mean \"io.containerd.snapshotter.v1.native\""} {
		if strings.Contains(got, bad) {
			t.Errorf("warnings mention %q:\n%s", bad, got)
		}
	}
}

// The same file cut down to version 3, keeping its server sections, keeps
// its addresses; with version 3's tables the tables are read, and where a
// file has both the section wins.
func TestVersion3ServerSections(t *testing.T) {
	v3 := strings.Replace(containerd2Default(t), "version = 4", "version = 3", 1)
	v3 = strings.Replace(v3, "/run/containerd/containerd.sock'", "/srv/x.sock'", 1)
	v3 = strings.Replace(v3, "/run/containerd/containerd.sock.ttrpc'", "/srv/x.sock.ttrpc'", 1)
	c, ws := mustParse(t, v3)
	if len(ws) != 0 {
		t.Fatalf("load warnings:\n%s", warningStrings(ws))
	}
	if c.GRPC.Address != "/srv/x.sock" || c.TTRPCAddress() != "/srv/x.sock.ttrpc" {
		t.Fatalf("addresses not honoured: %+v %+v", c.GRPC, c.TTRPC)
	}
	if got := warningStrings(c.Validate(testPlugins())); strings.Contains(got, "server.v1") {
		t.Errorf("server sections reported:\n%s", got)
	}

	c, ws = mustParse(t, `version = 3
[grpc]
address = "/a.sock"
tcp_address = "127.0.0.1:1"
tcp_tls_common_name = "cn"
uid = 3
max_send_message_size = 99
[ttrpc]
uid = 4
[debug]
address = "/d.sock"
level = "debug"
[metrics]
address = ":9"
grpc_histogram = true
[plugins."io.containerd.server.v1.debug"]
address = "/wins.sock"
`)
	if len(ws) != 0 {
		t.Fatalf("load warnings:\n%s", warningStrings(ws))
	}
	if c.GRPC.Address != "/a.sock" || c.GRPC.UID != 3 || c.GRPC.MaxSendMsgSize != 99 || c.GRPC.TCPAddress != "127.0.0.1:1" ||
		c.TTRPC.UID != 4 || c.TTRPCAddress() != "/a.sock.ttrpc" || c.Debug.Address != "/wins.sock" || c.Debug.Level != "debug" ||
		c.Metrics.Address != ":9" || !c.Metrics.GRPCHistogram {
		t.Fatalf("version 3 tables: %+v %+v %+v %+v", c.GRPC, c.TTRPC, c.Debug, c.Metrics)
	}
	got := warningStrings(c.Validate(nil))
	for _, want := range []string{
		`config.toml:5:1: 'plugins."io.containerd.server.v1.grpc-tcp".tls_common_name' = "cn" is not supported`,
		`config.toml:9:1: 'plugins."io.containerd.server.v1.ttrpc".uid' = 4 is not supported`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings lack %q:\n%s", want, got)
		}
	}
	if strings.Count(got, "\n") != 1 {
		t.Errorf("want two warnings:\n%s", got)
	}
	// An unknown key in a version 3 table is named as written.
	_, ws = mustParse(t, "version = 3\n[grpc]\nadress = '/x'\n")
	if len(ws) != 1 || ws[0].Key != "grpc.adress" || ws[0].Suggestion != "grpc.address" {
		t.Fatalf("warnings:\n%s", warningStrings(ws))
	}
}

// A version 4 file keeps its listeners in the server sections; version
// 3's tables there are still read, with a warning naming each.
func TestVersion4(t *testing.T) {
	c, ws := mustParse(t, `version = 4
[debug]
level = "warn"
log_trace_id = true
[plugins."io.containerd.server.v1.grpc"]
address = "/g.sock"
gid = 5
[plugins."io.containerd.server.v1.grpc-tcp"]
address = "127.0.0.1:2"
tls_cert = "/c.pem"
tls_key = "/k.pem"
max_recv_message_size = 5
[plugins."io.containerd.server.v1.ttrpc"]
address = "/elsewhere.ttrpc"
[plugins."io.containerd.server.v1.metrics"]
address = ":3"
[plugins."io.containerd.metrics.v1.grpc-prometheus"]
grpc_histogram = true
`)
	if len(ws) != 0 {
		t.Fatalf("load warnings:\n%s", warningStrings(ws))
	}
	if c.GRPC.Address != "/g.sock" || c.GRPC.GID != 5 || c.GRPC.TCPAddress != "127.0.0.1:2" || c.GRPC.TCPTLSCert != "/c.pem" ||
		c.GRPC.TCPTLSKey != "/k.pem" || c.Metrics.Address != ":3" || !c.Metrics.GRPCHistogram || c.Debug.Level != "warn" {
		t.Fatalf("config: %+v %+v", c.GRPC, c.Metrics)
	}
	got := warningStrings(c.Validate(nil))
	for _, want := range []string{
		`config.toml:4:1: "debug.log_trace_id" is not supported`,
		`config.toml:12:1: 'plugins."io.containerd.server.v1.grpc-tcp".max_recv_message_size' = 5 is not supported`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings lack %q:\n%s", want, got)
		}
	}

	c, ws = mustParse(t, "version = 4\n[grpc]\naddress = '/old.sock'\n[metrics]\naddress = ':4'\n")
	if c.GRPC.Address != "/old.sock" || c.Metrics.Address != ":4" {
		t.Fatalf("version 3 tables in a version 4 file: %+v %+v", c.GRPC, c.Metrics)
	}
	got = warningStrings(ws)
	if len(ws) != 2 || !strings.Contains(got, `config.toml:2:2: table "grpc" is laid out as in version 3`) ||
		!strings.Contains(got, `config.toml:4:2: table "metrics" is laid out as in version 3`) {
		t.Fatalf("warnings:\n%s", got)
	}

	// Keys and values in the server sections are checked like a plugin's.
	c, _ = mustParse(t, "version = 4\n[plugins.'io.containerd.server.v1.grpc']\nadress = '/x'\n")
	vw := c.Validate(nil)
	if len(vw) != 1 || vw[0].Line != 3 || vw[0].Suggestion != `plugins."io.containerd.server.v1.grpc".address` {
		t.Fatalf("Validate:\n%s", warningStrings(vw))
	}
	_, _, err := Parse([]byte("version = 4\n[plugins.'io.containerd.server.v1.grpc']\nuid = 'root'\n"), cfgPath)
	if err == nil || !strings.HasPrefix(err.Error(), cfgPath+":3:") || !strings.Contains(err.Error(), "uid") {
		t.Fatalf("type error: %v", err)
	}
}

// config migrate turns version 3's tables into version 4's sections, and
// the result loads to the same listeners without warnings.
func TestMigrate3To4(t *testing.T) {
	in := "version = 3\nroot = '/r'\n[grpc]\naddress = '/m.sock'\ntcp_address = ':5'\nmax_recv_message_size = 7\nbogus = 1\n[debug]\nlevel = 'debug'\naddress = '/d.sock'\n[ttrpc]\nuid = 0\n"
	out, err := Migrate([]byte(in), "/m.toml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{"# Migrated from config version 3", "version = 4", "[plugins.'io.containerd.server.v1.grpc']", "address = '/m.sock'",
		"[plugins.'io.containerd.server.v1.grpc-tcp']", "address = ':5'", "[plugins.'io.containerd.server.v1.debug']", "bogus = 1"} {
		if !strings.Contains(s, want) {
			t.Errorf("migrated file lacks %q:\n%s", want, s)
		}
	}
	// The unknown key stays in [grpc], the only thing left there.
	if strings.Count(s, "[grpc]") != 1 || strings.Contains(s, "[ttrpc]") {
		t.Errorf("migrated tables:\n%s", s)
	}
	a, _ := mustParse(t, in)
	b, ws := mustParse(t, s)
	if len(ws) != 1 || ws[0].Key != "grpc.bogus" {
		t.Errorf("warnings on the migrated file:\n%s", warningStrings(ws))
	}
	if a.GRPC != b.GRPC || a.TTRPC != b.TTRPC || a.Debug != b.Debug || a.Metrics != b.Metrics || b.GRPC.TCPAddress != ":5" {
		t.Fatalf("migrated listeners differ:\n%+v\n%+v", a, b)
	}
}

// config default is version 4, loads back without a warning, and has no
// version 3 table.
func TestDefaultRendersVersion4(t *testing.T) {
	var buf bytes.Buffer
	if err := Render(&buf, Default(), testPlugins()); err != nil {
		t.Fatal(err)
	}
	c, ws, err := Parse(buf.Bytes(), "/d.toml")
	if err != nil || len(ws) != 0 {
		t.Fatalf("%v %v\n%s", err, ws, buf.String())
	}
	if vw := c.Validate(testPlugins()); len(vw) != 0 {
		t.Fatalf("Validate:\n%s", warningStrings(vw))
	}
	if !strings.Contains(buf.String(), "version = 4\n") || strings.Contains(buf.String(), "\n[grpc]") {
		t.Fatalf("default:\n%s", buf.String())
	}
}

func TestSuggestPlugin(t *testing.T) {
	uris := []string{"io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.overlayfs", "io.containerd.snapshotter.v1.native",
		"io.containerd.lease.v1.manager", "io.containerd.metadata.v1.bolt", "io.containerd.differ.v1.walking"}
	for in, want := range map[string]string{
		"io.containerd.snapshotter.v1.overlayf": "io.containerd.snapshotter.v1.overlayfs",
		"io.containerd.snapshoter.v1.native":    "io.containerd.snapshotter.v1.native",
		"overlayfs":                             "io.containerd.snapshotter.v1.overlayfs",
		"cri":                                   "io.containerd.grpc.v1.cri",
		"io.containerd.shim.v1.manager":         "",
		"io.containerd.internal.v1.opt":         "",
		"io.containerd.snapshotter.v1.erofs":    "",
		"io.containerd.snapshotter.v1.zfs":      "",
		"io.containerd.nri.v1.nri":              "",
		"io.containerd.differ.v1.erofs":         "",
		"":                                      "",
		".":                                     "",
	} {
		if got := suggestPlugin(in, uris); got != want {
			t.Errorf("suggestPlugin(%q) = %q, want %q", in, got, want)
		}
	}
}

// A version 2 file's restart monitor section, under the name containerd
// 1.x gave it, is the monitor plugin's after migration (as containerd 2.0
// renamed it), also when the file is read without migrating.
func TestMigrateRestartMonitor(t *testing.T) {
	in := "version = 2\n[plugins.\"io.containerd.internal.v1.restart\"]\n  interval = \"3s\"\n"
	out, err := Migrate([]byte(in), "/old.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "io.containerd.monitor.container.v1.restart") || strings.Contains(string(out), "io.containerd.internal.v1.restart") {
		t.Fatalf("migrated:\n%s", out)
	}
	c, _ := mustParse(t, in)
	p, ok := c.Plugins["io.containerd.monitor.container.v1.restart"]
	if !ok || !strings.Contains(fmt.Sprint(p), "3s") {
		t.Fatalf("read version 2 file: plugins %v", c.Plugins)
	}
}
