package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hullrt/hull/internal/hulltest"
)

func hulld(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(hulltest.Binary(t), args...).CombinedOutput()
	return string(out), err
}

func TestConfigCommands(t *testing.T) {
	dir := t.TempDir()
	def, err := hulld(t, "config", "default")
	if err != nil {
		t.Fatalf("config default: %v\n%s", err, def)
	}
	for _, want := range []string{"version = 4", "root = '/var/lib/hull'", "[plugins.'io.containerd.server.v1.grpc']", "io.containerd.gc.v1.scheduler"} {
		if !strings.Contains(def, want) {
			t.Errorf("config default lacks %q", want)
		}
	}
	// The default config checks clean.
	path := filepath.Join(dir, "default.toml")
	os.WriteFile(path, []byte(def), 0o600)
	if out, err := hulld(t, "config", "check", path); err != nil || !strings.Contains(out, "ok") || strings.Contains(out, "warning") {
		t.Fatalf("config check of the default: %v\n%s", err, out)
	}
	// An unknown key is a warning naming file, line and the nearest key.
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("version = 3\n[grpc]\n  adress = '/x.sock'\n"), 0o600)
	out, err := hulld(t, "config", "check", bad)
	if err != nil || !strings.Contains(out, bad+":3") || !strings.Contains(out, `"grpc.address"`) {
		t.Fatalf("config check of an unknown key: %v\n%s", err, out)
	}
	if out, err := hulld(t, "--strict-config", "config", "check", bad); err == nil {
		t.Fatalf("--strict-config accepted an unknown key:\n%s", out)
	}
	// Syntax errors give line and column; version 1 is refused.
	os.WriteFile(bad, []byte("version = 3\nroot = \n"), 0o600)
	if out, err := hulld(t, "config", "check", bad); err == nil || !strings.Contains(out, bad+":2:") {
		t.Fatalf("syntax error: %v\n%s", err, out)
	}
	os.WriteFile(bad, []byte("version = 1\n[plugins.cri]\n  sandbox_image = 'pause:3'\n"), 0o600)
	if out, err := hulld(t, "config", "check", bad); err == nil || !strings.Contains(out, "migrate") {
		t.Fatalf("version 1: %v\n%s", err, out)
	}
	// migrate rewrites it as version 3.
	out, err = hulld(t, "config", "migrate", bad)
	if err != nil || !strings.Contains(out, "version = 4") || !strings.Contains(out, "io.containerd.cri.v1.images") {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	// dump shows flags applied over the file.
	out, err = hulld(t, "--config", path, "--root", "/tmp/elsewhere", "config", "dump")
	if err != nil || !strings.Contains(out, "root = '/tmp/elsewhere'") {
		t.Fatalf("dump with --root: %v\n%s", err, out)
	}
}

// TestHulldCommandLine covers hulld's own command line: flags after the
// subcommand, help, version and unknown commands and flags.
func TestHulldCommandLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.toml")
	os.WriteFile(path, []byte("version = 3\nroot = '/tmp/from-file'\n"), 0o600)
	out, err := hulld(t, "config", "dump", "-c", path, "--state", "/tmp/from-flag")
	if err != nil || !strings.Contains(out, "root = '/tmp/from-file'") || !strings.Contains(out, "state = '/tmp/from-flag'") {
		t.Errorf("config dump with flags after it: %v\n%s", err, out)
	}
	if out, err := hulld(t, "--help"); err != nil || !strings.Contains(out, "--strict-config") || !strings.Contains(out, "config") {
		t.Errorf("--help: %v\n%s", err, out)
	}
	if out, err := hulld(t, "--version"); err != nil || !strings.HasPrefix(out, "hulld version ") {
		t.Errorf("--version: %v\n%s", err, out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"strat"}, `hulld: unknown command "strat": see hulld --help`},
		{[]string{"config", "dupm"}, `hulld: unknown command "dupm": see hulld config --help`},
		{[]string{"config", "default", "x"}, `hulld: unknown command "x": see hulld config default --help`},
		{[]string{"config", "check", "a", "b"}, `hulld: accepts at most 1 arg(s), received 2`},
		{[]string{"--no-such-flag"}, `hulld: unknown flag: --no-such-flag`},
	} {
		out, err := hulld(t, c.args...)
		if err == nil || strings.TrimSpace(out) != c.want {
			t.Errorf("hulld %v = %v, %q; want an error %q", c.args, err, out, c.want)
		}
	}
}

func TestConfigAtStartup(t *testing.T) {
	// A version 2 containerd file starts hulld with a migration notice, and
	// its plugin settings take effect.
	d := hulltest.Start(t, hulltest.Options{Config: `version = 2
[plugins."io.containerd.gc.v1.scheduler"]
  schedule_delay = "0s"
  bogus_key = 1
`})
	log := d.Log()
	if !strings.Contains(log, "version 2") {
		t.Errorf("no migration notice in the log:\n%s", log)
	}
	if !strings.Contains(log, "bogus_key") {
		t.Errorf("unknown plugin key not reported:\n%s", log)
	}
	// --strict-config refuses to start on the same file.
	out, err := hulld(t, "--strict-config", "--config", d.Config, "--root", t.TempDir(), "--state", t.TempDir(), "--address", filepath.Join(t.TempDir(), "x.sock"))
	if err == nil || !strings.Contains(out, "bogus_key") {
		t.Fatalf("--strict-config started with an unknown key: %v\n%s", err, out)
	}
	// A bad plugin value stops hulld before it starts anything, naming
	// the place, the key's value and why (it used to fail only that
	// plugin while hulld said it was serving).
	bad := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(bad, []byte(`version = 3
[plugins."io.containerd.gc.v1.scheduler"]
  schedule_delay = "soon"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "root")
	out, err = hulld(t, "--config", bad, "--root", root, "--state", t.TempDir(), "--address", filepath.Join(t.TempDir(), "x.sock"))
	if err == nil || !strings.Contains(out, bad+`:3:3: invalid value "soon"`) {
		t.Fatalf("hulld with schedule_delay = \"soon\": %v, want an exit naming %s:3:3 and the value\n%s", err, bad, out)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("hulld refused its config but made its root %s first (%v)", root, err)
	}
}
