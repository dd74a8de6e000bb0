package config

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func fuzzSeeds(f *testing.F) {
	for _, s := range []string{
		"",
		"version = 3\n",
		"version = 2\n",
		"version = 1\n",
		"[plugins.cri]\n",
		v2File,
		"version = 3\nimports = [\"conf.d/*.toml\", \"other.toml\"]\n",
		"version = 3\n[grpc]\nadress = 1\n[plugins.\"io.containerd.snapshotter.v1.overlayfs\"]\nroot_pat = 'x'\nmount_options = [1]\n",
		"version = 3\n[[plugins.\"io.containerd.gc.v1.scheduler\".hooks]]\nname = 'a'\nx = { y = [1, {z = 2}] }\n",
		"disabled_plugins = [\"cri\", 1]\n[stream_processors.a]\naccepts = 'x'\n",
		"version = 3\n[debug]\nlevel = 'x'\n",
		"version = 3\ntimeouts = { a = '1s' }\n[plugins]\nx = 1\n",
		"version = 4\n[plugins.'io.containerd.server.v1.grpc']\naddress = '/a.sock'\nuid = 1\n[plugins.'io.containerd.server.v1.ttrpc']\naddress = '/t'\n",
		"version = 4\n[grpc]\naddress = '/a'\ntcp_address = ':1'\nmax_recv_message_size = 2\n[metrics]\ngrpc_histogram = true\n[plugins.'io.containerd.server.v1.grpc-tcp']\ntls_common_name = 'x'\n",
		"version = 3\n[debug]\naddress = '/d'\nlog_trace_id = true\n[ttrpc]\nuid = 'x'\n[plugins.'io.containerd.server.v1.debug']\nuid = 2\n",
		"version = 4\nplugins = 1\n[grpc]\naddress = '/a'\n",
		"version = 4\n[plugins.'io.containerd.server.v1.metrics']\naddress = 1\n",
	} {
		f.Add([]byte(s))
	}
	if b, err := os.ReadFile("testdata/containerd-2.4.2-default.toml"); err == nil {
		f.Add(b)
		f.Add(bytes.Replace(b, []byte("version = 4"), []byte("version = 3"), 1))
	}
}

func fuzzFS() memFS {
	return memFS{
		"/fuzz/conf.d/a.toml": "root = '/a'\n[plugins.\"io.containerd.cri.v1.images\"]\nsnapshotter = 'native'\n",
		"/fuzz/conf.d/b.toml": "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = 'x'\n",
		"/fuzz/other.toml":    "imports = ['config.toml']\n",
	}
}

// FuzzParse feeds arbitrary bytes to the loader: it may fail, but must not
// panic or hang, and whatever loads must render to a file that loads too.
func FuzzParse(f *testing.F) {
	fuzzSeeds(f)
	plugins := testPlugins()
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := fuzzFS()
		fs["/fuzz/config.toml"] = string(data)
		c, ws, err := load(fs, data, "/fuzz/config.toml")
		for _, w := range ws {
			_ = w.String()
		}
		if err != nil {
			_ = err.Error()
			return
		}
		for _, w := range c.Validate(plugins) {
			_ = w.String()
		}
		if err := c.Check(plugins); err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Fatalf("Check: %v is not InvalidArgument", err)
		}
		var buf bytes.Buffer
		if err := Render(&buf, c, plugins); err != nil {
			// Only a type error in a plugin section stops Render.
			if !strings.Contains(err.Error(), "invalid value") && !strings.Contains(err.Error(), "must be a table") {
				t.Fatalf("Render: %v", err)
			}
			return
		}
		if _, _, err := load(memFS{}, buf.Bytes(), "/fuzz/rendered.toml"); err != nil && !strings.Contains(err.Error(), "import") {
			t.Fatalf("rendered config does not load: %v\n%s", err, buf.String())
		}
	})
}

// FuzzMigrate feeds arbitrary bytes to Migrate: no panic or hang, and its
// output migrates again to itself.
func FuzzMigrate(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := Migrate(data, "/fuzz/config.toml")
		if err != nil {
			_ = err.Error()
			return
		}
		again, err := Migrate(out, "/fuzz/config.toml")
		if err != nil {
			t.Fatalf("migrated output does not migrate: %v\n%s", err, out)
		}
		body := out
		if bytes.HasPrefix(body, []byte("#")) {
			body = body[bytes.Index(body, []byte("\n\n"))+2:]
		}
		if !bytes.Equal(body, again) {
			t.Fatalf("migration is not a fixed point:\n%s\n---\n%s", out, again)
		}
	})
}

func TestMigrateOddPluginLists(t *testing.T) {
	for _, in := range []string{
		"disabled_plugins = [{}, {}, \"cri\", \"cri\", 1, 1, [2], [2]]\n",
		"version = 1\nrequired_plugins = [{a = 1}, {a = 1}]\n",
	} {
		if _, err := Migrate([]byte(in), "/x.toml"); err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		_, _, _ = Parse([]byte(in), "/x.toml")
	}
}
