package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/pelletier/go-toml/v2"
)

const cfgPath = "/etc/hull/config.toml"

func mustParse(t *testing.T, data string) (*Config, []Warning) {
	t.Helper()
	c, ws, err := Parse([]byte(data), cfgPath)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c, ws
}

func TestDefault(t *testing.T) {
	c := Default()
	if c.Version != 4 || c.Root != "/var/lib/hull" || c.State != "/run/hull" ||
		c.GRPC.Address != "/run/hull/hull.sock" || c.GRPC.MaxRecvMsgSize != 16<<20 || c.GRPC.MaxSendMsgSize != 16<<20 ||
		c.Debug.Level != "info" || c.Debug.Format != "text" {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	if c.Timeouts == nil || c.Plugins == nil || c.StreamProcessors == nil || c.ProxyPlugins == nil {
		t.Fatal("default maps must be allocated")
	}
	if got := c.TTRPCAddress(); got != "/run/hull/hull.sock.ttrpc" {
		t.Fatalf("TTRPCAddress = %q", got)
	}
	// An empty file, of either version, is the defaults.
	for _, data := range []string{"version = 4\n", "version = 3\n"} {
		e, ws := mustParse(t, data)
		if len(ws) != 0 {
			t.Fatalf("warnings: %v", ws)
		}
		e.src = nil
		if !reflect.DeepEqual(e, c) {
			t.Fatalf("%q:\n%+v\nwant\n%+v", data, e, c)
		}
	}
}

func TestV3File(t *testing.T) {
	c, ws := mustParse(t, `version = 3
root = "/srv/hull"
state = "/run/h"
temp = "/tmp/h"
plugin_dir = "/opt/plugins"
disabled_plugins = ["io.containerd.snapshotter.v1.overlayfs"]
required_plugins = ["io.containerd.grpc.v1.cri"]
oom_score = -999

[grpc]
address = "/run/h/h.sock"
tcp_address = "127.0.0.1:1234"
uid = 1
gid = 2
max_recv_message_size = 100

[ttrpc]
address = "/run/h/t.sock"

[debug]
level = "debug"
format = "json"

[metrics]
address = "127.0.0.1:1338"
grpc_histogram = true

[cgroup]
path = "/hull"

[timeouts]
"io.containerd.timeout.shim.cleanup" = "5s"

[stream_processors."io.containerd.ocicrypt.decoder.v1.tar"]
accepts = ["application/vnd.oci.image.layer.v1.tar+encrypted"]
returns = "application/vnd.oci.image.layer.v1.tar"
path = "ctd-decoder"
args = ["--decryption-keys-path", "/keys"]
env = ["A=B"]

[proxy_plugins.stargz]
type = "snapshot"
address = "/run/stargz.sock"
exports = { root = "/var/lib/stargz" }
capabilities = ["remap-ids"]

[plugins."io.containerd.cri.v1.images"]
snapshotter = "native"
[plugins."io.containerd.cri.v1.images".registry]
config_path = "/etc/hull/certs.d"
`)
	if len(ws) != 0 {
		t.Fatalf("warnings:\n%s", warningStrings(ws))
	}
	if c.Root != "/srv/hull" || c.State != "/run/h" || c.Temp != "/tmp/h" || c.PluginDir != "/opt/plugins" || c.OOMScore != -999 ||
		c.GRPC.Address != "/run/h/h.sock" || c.GRPC.TCPAddress != "127.0.0.1:1234" || c.GRPC.UID != 1 || c.GRPC.GID != 2 ||
		c.GRPC.MaxRecvMsgSize != 100 || c.GRPC.MaxSendMsgSize != 16<<20 || c.TTRPCAddress() != "/run/h/t.sock" ||
		c.Debug.Level != "debug" || c.Debug.Format != "json" || c.Metrics.Address != "127.0.0.1:1338" || !c.Metrics.GRPCHistogram ||
		c.Cgroup.Path != "/hull" || c.Timeouts["io.containerd.timeout.shim.cleanup"] != "5s" {
		t.Fatalf("unexpected config: %+v", c)
	}
	if !reflect.DeepEqual(c.DisabledPlugins, []string{"io.containerd.snapshotter.v1.overlayfs"}) || !c.PluginDisabled("io.containerd.snapshotter.v1.overlayfs") ||
		!reflect.DeepEqual(c.RequiredPlugins, []string{criGRPC}) {
		t.Fatalf("plugin lists: %v %v", c.DisabledPlugins, c.RequiredPlugins)
	}
	sp := c.StreamProcessors["io.containerd.ocicrypt.decoder.v1.tar"]
	if sp.Path != "ctd-decoder" || len(sp.Accepts) != 1 || sp.Returns == "" || len(sp.Args) != 2 || sp.Env[0] != "A=B" {
		t.Fatalf("stream processor: %+v", sp)
	}
	pp := c.ProxyPlugins["stargz"]
	if pp.Type != "snapshot" || pp.Exports["root"] != "/var/lib/stargz" || pp.Capabilities[0] != "remap-ids" {
		t.Fatalf("proxy plugin: %+v", pp)
	}
	img := CopyConfig(testPlugins()[1].Config).(*testImages)
	ws, err := c.DecodePlugin(criImages, img)
	if err != nil || len(ws) != 0 {
		t.Fatalf("DecodePlugin: %v %v", ws, err)
	}
	if img.Snapshotter != "native" || img.Registry.ConfigPath != "/etc/hull/certs.d" || img.MaxConcurrentDownloads != 3 ||
		img.PinnedImages["sandbox"] != "registry.k8s.io/pause:3.10" {
		t.Fatalf("images config: %+v", img)
	}
	// What hull reads but does not do is reported by key; a ttrpc address
	// of its own is served.
	if c.TTRPCAddress() != "/run/h/t.sock" {
		t.Errorf("ttrpc address %q, want the file's /run/h/t.sock", c.TTRPCAddress())
	}
	got := warningStrings(c.Validate(testPlugins()))
	for _, want := range []string{
		`config.toml:4:1: "temp" = "/tmp/h" is not supported`,
		`config.toml:5:1: "plugin_dir" = "/opt/plugins" is not supported`,
		`config.toml:32:1: timeout "io.containerd.timeout.shim.cleanup" is not supported`,
		`config.toml:34:20: stream processor "io.containerd.ocicrypt.decoder.v1.tar" is not supported`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Validate lacks %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "\n") + 1; n != 4 {
		t.Errorf("Validate gave %d warnings, want 4:\n%s", n, got)
	}
}

const v2File = `version = 2
root = "/var/lib/hull"

[plugins."io.containerd.grpc.v1.cri"]
sandbox_image = "registry.k8s.io/pause:3.9"
enable_selinux = true
disable_tcp_service = true
stream_server_port = "10010"
max_concurrent_downloads = 5

[plugins."io.containerd.grpc.v1.cri".containerd]
snapshotter = "native"
default_runtime_name = "crun"
discard_unpacked_layers = true

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun]
runtime_type = "io.containerd.runc.v2"
snapshotter = "overlayfs"

[plugins."io.containerd.grpc.v1.cri".cni]
bin_dir = "/usr/lib/cni"

[plugins."io.containerd.grpc.v1.cri".registry]
config_pathh = "/etc/containerd/certs.d"
`

func TestV2Migrated(t *testing.T) {
	c, ws := mustParse(t, v2File)
	if len(ws) != 1 || !strings.Contains(ws[0].Message, "version 2") || !strings.Contains(ws[0].Message, `hulld config migrate /etc/hull/config.toml`) || ws[0].Line != 1 {
		t.Fatalf("want one migration warning, got:\n%s", warningStrings(ws))
	}
	plugins := testPlugins()
	rt := CopyConfig(plugins[2].Config).(*testRuntime)
	if w, err := c.DecodePlugin(criRuntime, rt); err != nil || len(w) != 0 {
		t.Fatalf("runtime: %v %v", w, err)
	}
	if !rt.EnableSelinux || rt.Containerd.DefaultRuntimeName != "crun" || rt.CNI.BinDir != "/usr/lib/cni" || rt.CNI.ConfDir != "/etc/cni/net.d" ||
		rt.Containerd.Runtimes["crun"].RuntimeType != "io.containerd.runc.v2" || rt.Containerd.Runtimes["crun"].Snapshotter != "overlayfs" ||
		rt.Containerd.Runtimes["runc"].RuntimeType != "io.containerd.runc.v2" {
		t.Fatalf("runtime config: %+v", rt)
	}
	img := CopyConfig(plugins[1].Config).(*testImages)
	w, err := c.DecodePlugin(criImages, img)
	if err != nil {
		t.Fatal(err)
	}
	if img.Snapshotter != "native" || !img.DiscardUnpackedLayers || img.MaxConcurrentDownloads != 5 || img.PinnedImages["sandbox"] != "registry.k8s.io/pause:3.9" {
		t.Fatalf("images config: %+v", img)
	}
	// The misspelt key moved with its section and still points at the
	// line the user wrote.
	if len(w) != 1 || w[0].Line != 24 || w[0].Column != 1 || w[0].Key != `plugins."io.containerd.cri.v1.images".registry.config_pathh` ||
		w[0].Suggestion != `plugins."io.containerd.cri.v1.images".registry.config_path` {
		t.Fatalf("images warnings:\n%s", warningStrings(w))
	}
	srv := CopyConfig(plugins[0].Config).(*testCRIServer)
	if w, err := c.DecodePlugin(criGRPC, srv); err != nil || len(w) != 0 {
		t.Fatalf("cri: %v %v", w, err)
	}
	if !srv.DisableTCPService || srv.StreamServerPort != "10010" || srv.StreamServerAddress != "127.0.0.1" {
		t.Fatalf("cri server config: %+v", srv)
	}
	cri := c.Plugins[criGRPC].(map[string]any)
	if len(cri) != 2 {
		t.Fatalf("only serving keys should stay in the CRI section: %v", cri)
	}
	if vw := c.Validate(plugins); len(vw) != 1 {
		t.Fatalf("Validate:\n%s", warningStrings(vw))
	}
}

func TestVersion1Refused(t *testing.T) {
	for name, data := range map[string]string{
		"explicit":         "version = 1\n",
		"short section":    "[plugins.cri]\nsystemd_cgroup = true\n",
		"short overlayfs":  "root = \"/x\"\n[plugins.overlayfs]\nroot_path = \"/y\"\n",
		"short disabled":   "disabled_plugins = [\"cri\"]\n",
		"explicit plugins": "version = 1\n[plugins.linux]\nshim = \"x\"\n",
	} {
		_, _, err := Parse([]byte(data), cfgPath)
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want ErrInvalidArgument", name, err)
			continue
		}
		want := `config file /etc/hull/config.toml is version 1, which hull does not read: run "hulld config migrate /etc/hull/config.toml"`
		if err.Error() != want {
			t.Errorf("%s: err = %q\nwant %q", name, err, want)
		}
	}
	for _, data := range []string{"version = 5\n", "version = 0\n", "version = -1\n", "version = \"3\"\n", "version = 99999999999\n"} {
		_, _, err := Parse([]byte(data), cfgPath)
		var ce *Error
		if !errors.As(err, &ce) || !errors.Is(err, errdefs.ErrInvalidArgument) || ce.Line != 1 || ce.Key != "version" {
			t.Errorf("%q: err = %v", data, err)
		}
	}
}

func TestNoVersion(t *testing.T) {
	c, ws := mustParse(t, "root = \"/x\"\n[plugins.\"io.containerd.cri.v1.images\"]\nsnapshotter = \"native\"\n")
	if len(ws) != 1 || !strings.Contains(ws[0].String(), "no version key: read as version 4") || ws[0].File != cfgPath {
		t.Fatalf("warnings:\n%s", warningStrings(ws))
	}
	if c.Root != "/x" || c.Version != 4 {
		t.Fatalf("config: %+v", c)
	}
	// Version 2's CRI layout without a version key is read as version 2.
	c, ws = mustParse(t, strings.Replace(v2File, "version = 2\n", "", 1))
	if len(ws) != 1 || !strings.Contains(ws[0].Message, "no version key") || !strings.Contains(ws[0].Message, "version 2") {
		t.Fatalf("warnings:\n%s", warningStrings(ws))
	}
	if _, ok := c.Plugins[criRuntime]; !ok {
		t.Fatalf("not migrated: %v", c.Plugins)
	}
}

func TestSyntaxError(t *testing.T) {
	_, _, err := Parse([]byte("version = 3\nroot = \"/x\"\nstate = = 1\n"), "/x/config.toml")
	var ce *Error
	if !errors.As(err, &ce) || !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("err = %v", err)
	}
	if ce.Line != 3 || ce.Column != 9 || !strings.HasPrefix(err.Error(), "/x/config.toml:3:9: syntax error: ") {
		t.Fatalf("err = %q (%d:%d)", err, ce.Line, ce.Column)
	}
	_, _, err = Parse([]byte("version = 3\n[grpc\n"), "/x/config.toml")
	if !strings.HasPrefix(err.Error(), "/x/config.toml:2:") || !strings.Contains(err.Error(), "syntax error") {
		t.Fatalf("err = %q", err)
	}
	_, _, err = Parse([]byte("version = 3\nroot = 'a'\nroot = 'b'\n"), "/x/config.toml")
	if !strings.HasPrefix(err.Error(), "/x/config.toml:3:1: syntax error: ") {
		t.Fatalf("duplicate key: %q", err)
	}
}

func TestUnknownTopLevelKeys(t *testing.T) {
	_, ws := mustParse(t, `version = 3
roott = "/x"

[grpc]
adress = "/run/x.sock"

[debug]
levle = "debug"

[stream_processors.x]
acepts = []

[metricz]
address = "x"

[grpc.sub]
zzzzzzzz = 1
`)
	want := []string{
		`/etc/hull/config.toml:2:1: unknown key "roott" (did you mean "root"?)`,
		`/etc/hull/config.toml:5:1: unknown key "grpc.adress" (did you mean "grpc.address"?)`,
		`/etc/hull/config.toml:8:1: unknown key "debug.levle" (did you mean "debug.level"?)`,
		`/etc/hull/config.toml:11:1: unknown key "stream_processors.x.acepts" (did you mean "stream_processors.x.accepts"?)`,
		`/etc/hull/config.toml:13:2: unknown table "metricz" (did you mean "metrics"?)`,
		`/etc/hull/config.toml:16:2: unknown table "grpc.sub"`,
	}
	if got := warningStrings(ws); got != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if ws[1].Key != "grpc.adress" || ws[1].Suggestion != "grpc.address" || ws[1].Line != 5 || ws[1].Column != 1 {
		t.Fatalf("warning fields: %+v", ws[1])
	}
}

func TestTypeErrors(t *testing.T) {
	for data, want := range map[string]string{
		"version = 3\noom_score = \"x\"\n":         `/etc/hull/config.toml:2:13: invalid value for "oom_score": cannot decode TOML string into int`,
		"version = 3\n[grpc]\nuid = true\n":        `/etc/hull/config.toml:3:7: invalid value for "grpc.uid"`,
		"version = 3\ndisabled_plugins = \"x\"\n":  `/etc/hull/config.toml:2:20: invalid value for "disabled_plugins"`,
		"version = 3\nplugins = 1\n":               `/etc/hull/config.toml:2:11: invalid value for "plugins"`,
		"version = 3\n[debug]\nlevel = \"loud\"\n": `/etc/hull/config.toml:3:1: invalid debug.level "loud"`,
		"version = 3\n[debug]\nformat = \"xml\"\n": `/etc/hull/config.toml:3:1: invalid debug.format "xml"`,
		"version = 3\n[timeouts]\n\"a\" = 5\n":     `/etc/hull/config.toml:3:7: invalid value for "timeouts.a"`,
	} {
		_, _, err := Parse([]byte(data), cfgPath)
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q:\n got %v\nwant %s", data, err, want)
		}
	}
	// In a plugin section, found through DecodePlugin.
	c, _ := mustParse(t, "version = 3\n\n[plugins.\"io.containerd.gc.v1.scheduler\"]\npause_threshold = 0.1\ndeletion_threshold = \"many\"\n")
	_, err := c.DecodePlugin("io.containerd.gc.v1.scheduler", &testGC{})
	want := `/etc/hull/config.toml:5:1: invalid value for 'plugins."io.containerd.gc.v1.scheduler".deletion_threshold': cannot decode TOML string into int`
	if !errors.Is(err, errdefs.ErrInvalidArgument) || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
	// Check refuses it, at its line; Validate leaves it to Check.
	if err := c.Check(testPlugins()); !errors.Is(err, errdefs.ErrInvalidArgument) || err.Error() != want {
		t.Fatalf("Check:\n got %v\nwant %s", err, want)
	}
	if ws := c.Validate(testPlugins()); len(ws) != 0 {
		t.Fatalf("Validate:\n%s", warningStrings(ws))
	}
	// In a disabled plugin's section the value stops nothing: a warning.
	c, _ = mustParse(t, "version = 3\ndisabled_plugins = [\"io.containerd.gc.v1.scheduler\"]\n[plugins.\"io.containerd.gc.v1.scheduler\"]\ndeletion_threshold = \"many\"\n")
	if err := c.Check(testPlugins()); err != nil {
		t.Fatalf("Check of a disabled plugin's section: %v", err)
	}
	if ws := c.Validate(testPlugins()); len(ws) != 1 || ws[0].Line != 4 || !strings.Contains(ws[0].Message, "deletion_threshold") {
		t.Fatalf("Validate:\n%s", warningStrings(ws))
	}
}

func TestDecodePluginUnknownKeys(t *testing.T) {
	c, _ := mustParse(t, `version = 3
[plugins."io.containerd.snapshotter.v1.overlayfs"]
root_path = "/data"
upperdir_lable = true
mount_options = ["volatile"]

[plugins."io.containerd.cri.v1.images".registry.mirrors."docker.io"]
endpoint = ["https://mirror"]

[plugins."io.containerd.gc.v1.scheduler"]
pause_threshold = 0.5
hooks = [{ name = "a", nmae = "b" }]
`)
	o := &testOverlay{RootPath: "/default"}
	ws, err := c.DecodePlugin("io.containerd.snapshotter.v1.overlayfs", o)
	if err != nil {
		t.Fatal(err)
	}
	if o.RootPath != "/data" || o.MountOptions[0] != "volatile" {
		t.Fatalf("decoded: %+v", o)
	}
	want := `/etc/hull/config.toml:4:1: unknown key 'plugins."io.containerd.snapshotter.v1.overlayfs".upperdir_lable' (did you mean 'plugins."io.containerd.snapshotter.v1.overlayfs".upperdir_label'?)`
	if len(ws) != 1 || ws[0].String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", warningStrings(ws), want)
	}
	img := &testImages{}
	ws, _ = c.DecodePlugin(criImages, img)
	if len(ws) != 1 || ws[0].Line != 8 || ws[0].Key != `plugins."io.containerd.cri.v1.images".registry.mirrors."docker.io".endpoint` ||
		ws[0].Suggestion != `plugins."io.containerd.cri.v1.images".registry.mirrors."docker.io".endpoints` {
		t.Fatalf("map entry key:\n%s", warningStrings(ws))
	}
	ws, _ = c.DecodePlugin("io.containerd.gc.v1.scheduler", &testGC{})
	if len(ws) != 1 || ws[0].Line != 12 || ws[0].Column != 24 || !strings.HasSuffix(ws[0].Suggestion, "hooks.name") {
		t.Fatalf("inline table in array:\n%s %+v", warningStrings(ws), ws)
	}
	// No section: nothing changes.
	o2 := &testOverlay{RootPath: "/default"}
	if ws, err := c.DecodePlugin("io.containerd.snapshotter.v1.native", o2); err != nil || ws != nil || o2.RootPath != "/default" {
		t.Fatalf("absent section: %v %v %+v", ws, err, o2)
	}
	if _, err := c.DecodePlugin(criImages, testImages{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("non-pointer: %v", err)
	}
}

func TestValidate(t *testing.T) {
	c, ws := mustParse(t, `version = 3
disabled_plugins = ["io.containerd.snapshotter.v1.overlayfss", "io.containerd.grpc.v1.containers"]

[plugins."io.containerd.grpc.v1.crii"]
x = 1

[plugins.overlayfs]
root_path = "/x"

[plugins."io.containerd.grpc.v1.containers"]
foo = 1

[plugins."io.containerd.totally.v1.different"]

[plugins."io.containerd.snapshotter.v1.overlayfs"]
root_pat = "/y"
`)
	if len(ws) != 0 {
		t.Fatalf("load warnings: %v", ws)
	}
	want := []string{
		`/etc/hull/config.toml:2:1: disabled_plugins names unknown plugin "io.containerd.snapshotter.v1.overlayfss" (did you mean "io.containerd.snapshotter.v1.overlayfs"?)`,
		`/etc/hull/config.toml:4:10: unknown plugin "io.containerd.grpc.v1.crii": hull has no such plugin, so its settings are not used (did you mean "io.containerd.grpc.v1.cri"?)`,
		`/etc/hull/config.toml:7:10: unknown plugin "overlayfs": hull has no such plugin, so its settings are not used (did you mean "io.containerd.snapshotter.v1.overlayfs"?)`,
		`/etc/hull/config.toml:11:1: unknown key 'plugins."io.containerd.grpc.v1.containers".foo': plugin "io.containerd.grpc.v1.containers" takes no configuration`,
		`/etc/hull/config.toml:13:10: unknown plugin "io.containerd.totally.v1.different": hull has no such plugin, so its settings are not used`,
		`/etc/hull/config.toml:16:1: unknown key 'plugins."io.containerd.snapshotter.v1.overlayfs".root_pat' (did you mean 'plugins."io.containerd.snapshotter.v1.overlayfs".root_path'?)`,
	}
	got := c.Validate(testPlugins())
	if warningStrings(got) != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant:\n%s", warningStrings(got), strings.Join(want, "\n"))
	}
	if got[1].Key != `plugins."io.containerd.grpc.v1.crii"` || got[1].Suggestion != criGRPC {
		t.Fatalf("fields: %+v", got[1])
	}
	// Validate must not touch the registered defaults.
	p := testPlugins()
	c2, _ := mustParse(t, "version = 3\n[plugins.\"io.containerd.cri.v1.images\".pinned_images]\nsandbox = \"x\"\n")
	c2.Validate(p)
	if p[1].Config.(*testImages).PinnedImages["sandbox"] != "registry.k8s.io/pause:3.10" {
		t.Fatal("Validate modified a default config")
	}
}

func TestImports(t *testing.T) {
	fs := memFS{
		"/etc/hull/config.toml": `version = 3
root = "/main"
state = "/main-state"
oom_score = 1
disabled_plugins = ["a.b"]
imports = ["conf.d/*.toml", "extra/last.toml"]
[plugins."io.containerd.snapshotter.v1.overlayfs"]
root_path = "/main"
mount_options = ["a"]
[timeouts]
one = "1s"
two = "2s"
`,
		"/etc/hull/conf.d/10-first.toml": `version = 3
root = "/first"
disabled_plugins = ["c.d", "a.b"]
imports = ["../shared.toml"]
[plugins."io.containerd.snapshotter.v1.overlayfs"]
upperdir_label = true
[timeouts]
two = "20s"
`,
		"/etc/hull/conf.d/20-second.toml": `root = "/second"
[plugins."io.containerd.snapshotter.v1.overlayfs"]
mount_options = ["b"]
`,
		"/etc/hull/conf.d/README":   "not toml at all ===",
		"/etc/hull/shared.toml":     "oom_score = 5\n",
		"/etc/hull/extra/last.toml": "version = 2\nstate = \"/last\"\nimports = [\"/etc/hull/shared.toml\"]\n",
	}
	c, ws, err := load(fs, []byte(fs["/etc/hull/config.toml"]), "/etc/hull/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	// Only the version 2 import warns; unversioned imports take their
	// importer's version silently.
	if len(ws) != 1 || ws[0].File != "/etc/hull/extra/last.toml" {
		t.Fatalf("warnings:\n%s", warningStrings(ws))
	}
	wantImports := []string{"/etc/hull/conf.d/10-first.toml", "/etc/hull/shared.toml", "/etc/hull/conf.d/20-second.toml", "/etc/hull/extra/last.toml"}
	if !reflect.DeepEqual(c.Imports, wantImports) {
		t.Fatalf("imports = %v", c.Imports)
	}
	if c.Root != "/second" || c.State != "/last" || c.OOMScore != 5 {
		t.Fatalf("override order: root=%q state=%q oom=%d", c.Root, c.State, c.OOMScore)
	}
	if !reflect.DeepEqual(c.DisabledPlugins, []string{"a.b", "c.d"}) {
		t.Fatalf("disabled = %v", c.DisabledPlugins)
	}
	if !reflect.DeepEqual(c.Timeouts, map[string]string{"one": "1s", "two": "20s"}) {
		t.Fatalf("timeouts = %v", c.Timeouts)
	}
	o := &testOverlay{}
	if _, err := c.DecodePlugin("io.containerd.snapshotter.v1.overlayfs", o); err != nil {
		t.Fatal(err)
	}
	if o.RootPath != "/main" || !o.UpperdirLabel || !reflect.DeepEqual(o.MountOptions, []string{"b"}) {
		t.Fatalf("plugin section merge: %+v", o)
	}

	// Positions in imported files point at those files.
	fs["/etc/hull/conf.d/20-second.toml"] += "roott = 1\n[plugins.\"io.containerd.snapshotter.v1.overlayfs\"]\n"
	fs["/etc/hull/shared.toml"] += "[plugins.\"io.containerd.snapshotter.v1.overlayfs\"]\nrootpath = 1\n"
	c, ws, err = load(fs, []byte(fs["/etc/hull/config.toml"]), "/etc/hull/config.toml")
	if err == nil {
		t.Fatal("duplicate table in an import should fail")
	}
	fs["/etc/hull/conf.d/20-second.toml"] = "roott = 1\n"
	c, ws, err = load(fs, []byte(fs["/etc/hull/config.toml"]), "/etc/hull/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 2 || ws[0].String() != `/etc/hull/conf.d/20-second.toml:1:1: unknown key "roott" (did you mean "root"?)` {
		t.Fatalf("warnings:\n%s", warningStrings(ws))
	}
	var vw []Warning
	for _, w := range c.Validate(testPlugins()) {
		// The timeouts, which hull does not use, are named where the
		// file that set them says so.
		if strings.HasPrefix(w.Message, "timeout ") {
			if (w.Key == "timeouts.one") != (w.File == "/etc/hull/config.toml") || w.Line == 0 {
				t.Errorf("timeout warning at the wrong place: %s", w)
			}
			continue
		}
		vw = append(vw, w)
	}
	if len(vw) != 3 || vw[2].File != "/etc/hull/shared.toml" || vw[2].Line != 3 || !strings.Contains(vw[2].Key, "rootpath") ||
		vw[0].String() != `/etc/hull/conf.d/10-first.toml:3:1: disabled_plugins names unknown plugin "a.b"` {
		t.Fatalf("Validate:\n%s", warningStrings(vw))
	}

	// Cycles are errors; a file reached twice without a cycle is read once.
	cyc := memFS{
		"/c/a.toml": "version = 3\nimports = [\"b.toml\"]\n",
		"/c/b.toml": "version = 3\nimports = [\"a.toml\"]\n",
	}
	_, _, err = load(cyc, []byte(cyc["/c/a.toml"]), "/c/a.toml")
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "import cycle: /c/a.toml -> /c/b.toml -> /c/a.toml") {
		t.Fatalf("cycle: %v", err)
	}
	self := memFS{"/c/a.toml": "version = 3\nimports = [\"./a.toml\"]\n"}
	if _, _, err = load(self, []byte(self["/c/a.toml"]), "/c/a.toml"); err == nil || !strings.Contains(err.Error(), "import cycle") {
		t.Fatalf("self import: %v", err)
	}
	diamond := memFS{
		"/d/a.toml": "version = 3\nimports = [\"b.toml\", \"c.toml\"]\n",
		"/d/b.toml": "imports = [\"d.toml\"]\n",
		"/d/c.toml": "imports = [\"d.toml\"]\n",
		"/d/d.toml": "oom_score = 3\n",
	}
	c, _, err = load(diamond, []byte(diamond["/d/a.toml"]), "/d/a.toml")
	if err != nil || len(c.Imports) != 3 {
		t.Fatalf("diamond: %v %v", c, err)
	}

	// Missing files, bad globs and newer versions.
	for name, fs := range map[string]memFS{
		"missing": {"/e/a.toml": "version = 3\nimports = [\"nope.toml\"]\n"},
		"glob":    {"/e/a.toml": "version = 3\nimports = [\"[\"]\n"},
		"newer":   {"/e/a.toml": "version = 2\nimports = [\"b.toml\"]\n", "/e/b.toml": "version = 3\n"},
		"v1":      {"/e/a.toml": "version = 3\nimports = [\"b.toml\"]\n", "/e/b.toml": "[plugins.cri]\n"},
	} {
		if _, _, err := load(fs, []byte(fs["/e/a.toml"]), "/e/a.toml"); err == nil {
			t.Errorf("%s: no error", name)
		} else if !strings.Contains(err.Error(), "/e/") {
			t.Errorf("%s: error does not name the file: %v", name, err)
		}
	}
	// A glob matching nothing is fine.
	empty := memFS{"/f/a.toml": "version = 3\nimports = [\"conf.d/*.toml\"]\n"}
	if _, _, err := load(empty, []byte(empty["/f/a.toml"]), "/f/a.toml"); err != nil {
		t.Fatal(err)
	}
}

func TestLoadFromDisk(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("config.toml", "version = 3\nroot = \"/a\"\nimports = [\"conf.d/*.toml\"]\n")
	write("conf.d/x.toml", "root = \"/b\"\n")
	c, ws, err := Load(filepath.Join(dir, "config.toml"))
	if err != nil || len(ws) != 0 || c.Root != "/b" || len(c.Imports) != 1 {
		t.Fatalf("Load: %+v %v %v", c, ws, err)
	}
	if _, _, err := Load(filepath.Join(dir, "missing.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestRenderRoundTrip(t *testing.T) {
	plugins := testPlugins()
	for name, src := range map[string]string{
		"default": "version = 3\n",
		"v4":      "version = 4\n[plugins.'io.containerd.server.v1.grpc']\naddress = '/a.sock'\nuid = 7\n[plugins.'io.containerd.server.v1.metrics']\naddress = ':2'\n",
		"full": `version = 3
root = "/srv"
disabled_plugins = ["io.containerd.grpc.v1.containers"]
oom_score = -500
[grpc]
tcp_address = ":1"
[debug]
format = "json"
[timeouts]
"io.containerd.timeout.task.state" = "2s"
[stream_processors.dec]
accepts = ["a"]
returns = "b"
path = "/bin/dec"
[proxy_plugins.s]
type = "snapshot"
address = "/s.sock"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata]
runtime_type = "io.containerd.kata.v2"
options = { ConfigPath = "/etc/kata.toml", Debug = true }
[plugins."io.containerd.snapshotter.v1.overlayfs"]
mount_options = ["volatile"]
[[plugins."io.containerd.gc.v1.scheduler".hooks]]
name = "h"
[plugins."io.containerd.gc.v1.scheduler".tuning]
workers = 7
[plugins."io.containerd.snapshotter.v1.overlayfs".sync]
workers = 1
`,
		"migrated v2": v2File[:strings.Index(v2File, "[plugins.\"io.containerd.grpc.v1.cri\".registry]")],
	} {
		t.Run(name, func(t *testing.T) {
			c, _ := mustParse(t, src)
			var buf bytes.Buffer
			if err := Render(&buf, c, plugins); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			for _, key := range []string{"version = 4", "root = ", "state = ", "temp = ", "disabled_plugins = ",
				"required_plugins = ", "oom_score = ", "imports = ", "[debug]", "[cgroup]",
				"[timeouts]", "[stream_processors]", "[proxy_plugins]", "max_recv_message_size = 16777216",
				"[plugins.'io.containerd.server.v1.grpc']", "[plugins.'io.containerd.server.v1.grpc-tcp']",
				"[plugins.'io.containerd.server.v1.ttrpc']", "[plugins.'io.containerd.server.v1.debug']",
				"[plugins.'io.containerd.server.v1.metrics']", "[plugins.'io.containerd.metrics.v1.grpc-prometheus']",
				"[plugins.'io.containerd.cri.v1.images']", "[plugins.'io.containerd.gc.v1.scheduler']"} {
				if !strings.Contains(out, key) {
					t.Errorf("output lacks %q", key)
				}
			}
			// Version 4 has no listener tables at the top.
			for _, key := range []string{"\n[grpc]", "\n[ttrpc]", "\n[metrics]", "plugin_dir"} {
				if strings.Contains(out, key) {
					t.Errorf("output has %q", key)
				}
			}
			back, ws, err := Parse(buf.Bytes(), "/rendered.toml")
			if err != nil {
				t.Fatalf("reload: %v\n%s", err, out)
			}
			if len(ws) != 0 {
				t.Fatalf("reload warnings:\n%s\n%s", warningStrings(ws), out)
			}
			// Only what the source had to be told too.
			if vw, want := back.Validate(plugins), c.Validate(plugins); len(vw) != len(want) {
				t.Fatalf("reload Validate warnings:\n%s\nwant like:\n%s\n%s", warningStrings(vw), warningStrings(want), out)
			}
			a, b := *c, *back
			a.src, b.src, a.Plugins, b.Plugins = nil, nil, nil, nil
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("top level differs:\n%+v\n%+v", a, b)
			}
			for _, p := range plugins {
				if p.Config == nil {
					continue
				}
				x, y := CopyConfig(p.Config), CopyConfig(p.Config)
				if _, err := c.DecodePlugin(p.URI, x); err != nil {
					t.Fatal(err)
				}
				if _, err := back.DecodePlugin(p.URI, y); err != nil {
					t.Fatal(err)
				}
				if !sameTOML(t, x, y) {
					t.Fatalf("%s differs:\n%+v\n%+v", p.URI, x, y)
				}
			}
			// Rendering is a fixed point.
			var again bytes.Buffer
			if err := Render(&again, back, plugins); err != nil {
				t.Fatal(err)
			}
			if again.String() != out {
				t.Fatalf("second render differs:\n%s\n---\n%s", out, again.String())
			}
		})
	}
}

func TestMigrate(t *testing.T) {
	v1 := `# containerd 1.x
disabled_plugins = ["aufs"]
root = "/var/lib/hull"

[plugins.cri]
sandbox_image = "k8s.gcr.io/pause:3.2"
stream_server_port = "0"
[plugins.cri.containerd]
snapshotter = "overlayfs"
[plugins.cri.containerd.runtimes.runc]
runtime_type = "io.containerd.runc.v2"
[plugins.cri.cni]
conf_dir = "/etc/cni/net.d"
[plugins.cri.registry.mirrors."docker.io"]
endpoints = ["https://registry-1.docker.io"]

[plugins.overlayfs]
root_path = "/data/overlay"

[plugins.scheduler]
pause_threshold = 0.05
`
	plugins := append(testPlugins(), PluginSection{URI: "io.containerd.snapshotter.v1.aufs"})
	for name, in := range map[string]string{"v1": v1, "v1 explicit": "version = 1\n" + v1, "v2": v2File} {
		t.Run(name, func(t *testing.T) {
			out, err := Migrate([]byte(in), "/old.toml")
			if err != nil {
				t.Fatal(err)
			}
			again, err := Migrate([]byte(in), "/old.toml")
			if err != nil || !bytes.Equal(out, again) {
				t.Fatal("Migrate is not deterministic")
			}
			c, ws, err := Parse(out, "/new.toml")
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if len(ws) != 0 {
				t.Fatalf("warnings loading migrated file:\n%s\n%s", warningStrings(ws), out)
			}
			vw := c.Validate(plugins)
			for _, w := range vw {
				if !strings.Contains(w.Key, "config_pathh") {
					t.Errorf("Validate: %s\n%s", w, out)
				}
			}
			// Re-migrating a version 4 file changes nothing.
			if out2, err := Migrate(out, "/new.toml"); err != nil {
				t.Fatal(err)
			} else if c2, _, err := Parse(out2, "/new.toml"); err != nil || !reflect.DeepEqual(c2.Plugins, c.Plugins) {
				t.Fatalf("version 4 re-migration changed the config: %v", err)
			}
			img := CopyConfig(plugins[1].Config).(*testImages)
			c.DecodePlugin(criImages, img)
			rt := CopyConfig(plugins[2].Config).(*testRuntime)
			c.DecodePlugin(criRuntime, rt)
			if name == "v2" {
				if img.Snapshotter != "native" || img.PinnedImages["sandbox"] != "registry.k8s.io/pause:3.9" || rt.Containerd.DefaultRuntimeName != "crun" {
					t.Fatalf("v2 migration: %+v %+v", img, rt)
				}
				return
			}
			if img.Snapshotter != "overlayfs" || img.PinnedImages["sandbox"] != "k8s.gcr.io/pause:3.2" ||
				img.Registry.Mirrors["docker.io"].Endpoints[0] != "https://registry-1.docker.io" ||
				rt.CNI.ConfDir != "/etc/cni/net.d" || rt.Containerd.Runtimes["runc"].RuntimeType != "io.containerd.runc.v2" {
				t.Fatalf("v1 migration: %+v %+v\n%s", img, rt, out)
			}
			o := &testOverlay{}
			c.DecodePlugin("io.containerd.snapshotter.v1.overlayfs", o)
			if o.RootPath != "/data/overlay" || !reflect.DeepEqual(c.DisabledPlugins, []string{"io.containerd.snapshotter.v1.aufs"}) {
				t.Fatalf("v1 renames: %+v %v", o, c.DisabledPlugins)
			}
			srv := CopyConfig(plugins[0].Config).(*testCRIServer)
			c.DecodePlugin(criGRPC, srv)
			if srv.StreamServerPort != "0" {
				t.Fatalf("server keys: %+v", srv)
			}
		})
	}
	if _, err := Migrate([]byte("version = 5\n"), "/x.toml"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("version 5: %v", err)
	}
	if _, err := Migrate([]byte("version = \n"), "/x.toml"); err == nil || !strings.HasPrefix(err.Error(), "/x.toml:1:") {
		t.Fatalf("syntax: %v", err)
	}
}

func TestGenerateReference(t *testing.T) {
	var buf bytes.Buffer
	if err := GenerateReference(&buf, testPlugins()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, key := range []string{
		"`version`", "`root`", "`state`", "`temp`", "`plugin_dir`", "`disabled_plugins`", "`required_plugins`", "`oom_score`", "`imports`",
		"### `io.containerd.server.v1.grpc`", "### `io.containerd.server.v1.grpc-tcp`", "`tls_ca`", "`tls_cert`", "`tls_key`", "`tls_common_name`",
		"### `io.containerd.server.v1.ttrpc`", "### `io.containerd.server.v1.debug`", "### `io.containerd.server.v1.metrics`",
		"### `io.containerd.metrics.v1.grpc-prometheus`", "`grpc_histogram`",
		"`debug.level`", "`debug.format`", "`debug.log_trace_id`",
		"`cgroup.path`", "`timeouts`", "`stream_processors.<name>.accepts`", "`stream_processors.<name>.returns`", "`stream_processors.<name>.path`",
		"`stream_processors.<name>.args`", "`stream_processors.<name>.env`", "`proxy_plugins.<name>.type`", "`proxy_plugins.<name>.address`",
		"`proxy_plugins.<name>.platform`", "`proxy_plugins.<name>.exports`", "`proxy_plugins.<name>.capabilities`", "`plugins`",
		"### `io.containerd.cri.v1.images`", "`registry.config_path`", "`registry.mirrors.<name>.endpoints`", "`pinned_images`",
		"### `io.containerd.cri.v1.runtime`", "`containerd.runtimes.<name>.runtime_type`", "`cni.bin_dir`",
		"### `io.containerd.gc.v1.scheduler`", "`hooks[].name`", "| `tuning.workers` | integer | `2` |", "| `sync.workers` | integer |  |", "- `io.containerd.grpc.v1.containers`",
		"| `address` | string | `\"/run/hull/hull.sock\"` |", "| `max_recv_message_size` | integer | `16777216` |",
		"| `disabled_plugins` | array of string | `[]` |", "| `pause_threshold` | float | `0.02` |",
		"`{runc = {runtime_type = \"io.containerd.runc.v2\", snapshotter = \"\", options = {}}}`",
	} {
		if !strings.Contains(out, key) {
			t.Errorf("reference lacks %s", key)
		}
	}
	if strings.Contains(out, "undocumented") {
		t.Error("reference has undocumented keys")
	}
	// Plugins come sorted by URI.
	a := strings.Index(out, "### `io.containerd.cri.v1.images`")
	b := strings.Index(out, "### `io.containerd.cri.v1.runtime`")
	g := strings.Index(out, "### `io.containerd.gc.v1.scheduler`")
	if !(a < b && b < g) {
		t.Error("plugin sections not sorted")
	}
}

// TestEveryFieldDocumented fails listing any config field without a doc
// tag: the reference is generated from them.
func TestEveryFieldDocumented(t *testing.T) {
	if missing := MissingDocs(&Config{}); len(missing) != 0 {
		t.Fatalf("fields without a doc tag: %s", strings.Join(missing, ", "))
	}
	for _, p := range testPlugins() {
		if missing := MissingDocs(p.Config); len(missing) != 0 {
			t.Errorf("%s: fields without a doc tag: %s", p.URI, strings.Join(missing, ", "))
		}
	}
	type bad struct {
		A int `toml:"a" doc:"fine"`
		B struct {
			C string `toml:"c"`
		} `toml:"b" doc:"fine"`
		D map[string]struct {
			E int `toml:"e" doc:" "`
		} `toml:"d"`
	}
	if got := strings.Join(MissingDocs(&bad{}), ","); got != "b.c,d,d.<name>.e" {
		t.Fatalf("MissingDocs = %s", got)
	}
}

func TestSuggestions(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"roott", "root"}, {"adress", "address"}, {"stat", "state"}, {"oom_scroe", "oom_score"},
		{"xyz", ""}, {"r", ""}, {"root", ""},
	} {
		if got := nearest(tc.in, []string{"root", "state", "address", "oom_score", "temp"}); got != tc.want {
			t.Errorf("nearest(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if d := distance("ab", "ba"); d != 1 {
		t.Errorf("transposition distance = %d", d)
	}
	if d := distance("kitten", "sitting"); d != 3 {
		t.Errorf("distance = %d", d)
	}
}

// sameTOML compares two configs by their encoding, so that a nil and an
// empty list (which a file cannot tell apart) count as equal.
func sameTOML(t *testing.T, a, b any) bool {
	t.Helper()
	x, err := toml.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := toml.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}
