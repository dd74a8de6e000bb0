package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/hullrt/hull/internal/hulltest"
)

// containerd2Config is containerd 2.4.2's `containerd config default` with
// version set to version and its paths (root, state, sockets, imports)
// under dir, so that it can be given to hulld unchanged otherwise.
func containerd2Config(t *testing.T, dir string, version int) string {
	t.Helper()
	out, err := exec.Command(hulltest.Containerd2Bin(t, "containerd"), "config", "default").Output()
	if err != nil {
		t.Fatalf("containerd config default: %v", err)
	}
	s := string(out)
	for _, r := range []struct{ from, to string }{
		{"version = 4\n", fmt.Sprintf("version = %d\n", version)},
		{"root = '/var/lib/containerd'", "root = '" + filepath.Join(dir, "root") + "'"},
		{"state = '/run/containerd'", "state = '" + filepath.Join(dir, "state") + "'"},
		{"'/run/containerd/containerd.sock.ttrpc'", "'" + filepath.Join(dir, "api.sock.ttrpc") + "'"},
		{"'/run/containerd/containerd.sock'", "'" + filepath.Join(dir, "api.sock") + "'"},
		{"'/etc/containerd/conf.d/*.toml'", "'" + filepath.Join(dir, "conf.d", "*.toml") + "'"},
	} {
		if !strings.Contains(s, r.from) {
			t.Fatalf("containerd's default config lacks %q:\n%s", r.from, s)
		}
		s = strings.Replace(s, r.from, r.to, 1)
	}
	return s
}

// startHulldWith runs hulld with only --config, so that the file alone
// says where it serves, and waits for the socket at address. hulld is
// stopped when the test ends; its output is returned by the func.
func startHulldWith(t *testing.T, cfgPath, address string) func() string {
	t.Helper()
	log := &hulltest.SyncBuffer{}
	cmd := exec.Command(hulltest.Binary(t), "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("hulld log:\n%s", log.String())
		}
	})
	hulltest.Eventually(t, 20*time.Second, "hulld to listen on "+address, func() error {
		select {
		case <-done:
			t.Fatalf("hulld exited during start-up: %v\n%s", cmd.ProcessState, log.String())
		default:
		}
		c, err := net.Dial("unix", address)
		if err == nil {
			c.Close()
		}
		return err
	})
	return log.String
}

// leaves flattens a TOML tree into dotted keys (formatted as hull's
// warnings write them) and values.
func leaves(prefix []string, v any, out map[string]any) {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 && len(prefix) > 0 {
		out[tomlKey(prefix)] = v
		return
	}
	for k, e := range m {
		leaves(append(append([]string(nil), prefix...), k), e, out)
	}
}

// tomlKey writes a key path as hull's warnings do: parts that are not
// bare keys are double-quoted.
func tomlKey(parts []string) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('.')
		}
		bare := p != ""
		for _, c := range p {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				bare = false
			}
		}
		if bare {
			b.WriteString(p)
		} else {
			b.WriteString(strconv.Quote(p))
		}
	}
	return b.String()
}

// zero reports whether a value of containerd's file means "the default".
func zero(v any) bool {
	switch x := v.(type) {
	case string:
		return x == ""
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	case int64:
		return x == 0
	case bool:
		return !x
	}
	return false
}

// containerd 2.4.2's default config, pointed at a temporary directory,
// starts hulld as it is (version 4, and cut down to version 3 with its
// server sections kept): hulld serves the gRPC and ttrpc sockets the file
// names and keeps its data under the file's root, and every setting of the
// file is either in effect (hulld's effective config has it with the
// file's value) or named by a warning in hulld's log.
func TestConfig4ContainerdDefault(t *testing.T) {
	for _, version := range []int{4, 3} {
		t.Run(fmt.Sprintf("version %d", version), func(t *testing.T) {
			dir := t.TempDir()
			text := containerd2Config(t, dir, version)
			cfgPath := filepath.Join(dir, "config.toml")
			if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			// A drop-in where the file's imports glob looks, which sets
			// one thing more.
			dropIn := filepath.Join(dir, "conf.d", "10-gc.toml")
			os.MkdirAll(filepath.Dir(dropIn), 0o700)
			if err := os.WriteFile(dropIn, []byte("[plugins.'io.containerd.gc.v1.scheduler']\nstartup_delay = '7ms'\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			address := filepath.Join(dir, "api.sock")
			log := startHulldWith(t, cfgPath, address)

			if fi, err := os.Stat(address + ".ttrpc"); err != nil || fi.Mode()&os.ModeSocket == 0 {
				t.Errorf("no ttrpc socket at the file's address: %v", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "root", "io.containerd.metadata.v1.bolt")); err != nil {
				t.Errorf("the file's root is not used: %v", err)
			}
			out, err := exec.Command(hulltest.Containerd2Bin(t, "ctr"), "--address", address, "version").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Server:") {
				t.Fatalf("containerd 2.4.2's ctr at the file's address: %v\n%s", err, out)
			}

			effective, err := os.ReadFile(filepath.Join(dir, "state", "hulld.effective.toml"))
			if err != nil {
				t.Fatal(err)
			}
			var file, eff map[string]any
			if err := toml.Unmarshal([]byte(text), &file); err != nil {
				t.Fatal(err)
			}
			if err := toml.Unmarshal(effective, &eff); err != nil {
				t.Fatal(err)
			}
			want, got := map[string]any{}, map[string]any{}
			leaves(nil, file, want)
			leaves(nil, eff, got)
			var warnings []string
			for _, l := range strings.Split(log(), "\n") {
				if strings.Contains(l, "config: ") {
					warnings = append(warnings, l)
				}
			}
			named := func(needles ...string) bool {
				for _, w := range warnings {
					for _, n := range needles {
						if strings.Contains(w, n) {
							return true
						}
					}
				}
				return false
			}
			honoured, reported := 0, 0
			if imp, _ := eff["imports"].([]any); len(imp) != 1 || imp[0] != dropIn {
				t.Errorf("imports in effect: %v, want the drop-in %s", eff["imports"], dropIn)
			}
			if v := got[`plugins."io.containerd.gc.v1.scheduler".startup_delay`]; v != "7ms" {
				t.Errorf("the drop-in's setting is not in effect: %v", v)
			}
			delete(want, `plugins."io.containerd.gc.v1.scheduler".startup_delay`)
			for key, v := range want {
				if key == "version" || key == "imports" {
					continue
				}
				// A warning first: the effective config keeps the
				// sections of plugins hull lacks as they were written.
				parts := splitKey(key)
				needles := []string{strings.ReplaceAll(key, `"`, `\"`)}
				if len(parts) >= 2 {
					switch parts[0] {
					case "plugins":
						needles = append(needles, `unknown plugin \"`+parts[1]+`\"`)
						for n := 3; n < len(parts); n++ {
							needles = append(needles, `unknown table '`+strings.ReplaceAll(tomlKey(parts[:n]), `"`, `\"`))
						}
					case "timeouts":
						needles = append(needles, `timeout \"`+parts[1]+`\"`)
					case "stream_processors":
						needles = append(needles, `stream processor \"`+parts[1]+`\"`)
					}
				}
				if named(needles...) {
					reported++
					continue
				}
				if g, ok := got[key]; ok && (reflect.DeepEqual(g, v) || zero(v)) {
					honoured++
					continue
				}
				t.Errorf("%s = %v is neither in effect (effective: %v) nor named by a warning", key, v, got[key])
			}
			t.Logf("%d settings in effect, %d reported as not supported", honoured, reported)
			if named("io.containerd.server.v1", `did you mean \"io.containerd`) {
				t.Errorf("warnings about the server sections or with suggestions:\n%s", strings.Join(warnings, "\n"))
			}
		})
	}
}

// splitKey splits a key written by tomlKey back into its parts.
func splitKey(key string) []string {
	var parts []string
	for key != "" {
		if key[0] == '"' {
			end := 1
			for end < len(key) && (key[end] != '"' || key[end-1] == '\\') {
				end++
			}
			p, _ := strconv.Unquote(key[:end+1])
			parts = append(parts, p)
			key = strings.TrimPrefix(key[end+1:], ".")
			continue
		}
		p, rest, _ := strings.Cut(key, ".")
		parts = append(parts, p)
		key = rest
	}
	return parts
}

// A version 3 file with version 3's [grpc] table and a ttrpc server
// section of another address gets both honoured (shims are given the
// ttrpc one); config default is version 4 and
// config migrate turns the version 3 file into it.
func TestConfig4Version3Addresses(t *testing.T) {
	dir := t.TempDir()
	address, ttrpcAddress := filepath.Join(dir, "v3.sock"), filepath.Join(dir, "events.ttrpc")
	v3 := fmt.Sprintf("version = 3\nroot = %q\nstate = %q\n[grpc]\naddress = %q\n[plugins.'io.containerd.server.v1.ttrpc']\naddress = %q\n",
		filepath.Join(dir, "root"), filepath.Join(dir, "state"), address, ttrpcAddress)
	cfgPath := filepath.Join(dir, "v3.toml")
	if err := os.WriteFile(cfgPath, []byte(v3), 0o600); err != nil {
		t.Fatal(err)
	}
	log := startHulldWith(t, cfgPath, address)
	if fi, err := os.Stat(ttrpcAddress); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("ttrpc socket at the file's address: %v", err)
	}
	if _, err := os.Stat(address + ".ttrpc"); !os.IsNotExist(err) {
		t.Errorf("a ttrpc socket at the default address too: %v", err)
	}
	if strings.Contains(log(), "msg=\"config: ") {
		t.Errorf("warnings for a plain version 3 file:\n%s", log())
	}

	def, err := hulld(t, "config", "default")
	if err != nil || !strings.Contains(def, "\nversion = 4\n") || !strings.Contains(def, "[plugins.'io.containerd.server.v1.grpc']\naddress = '/run/hull/hull.sock'") ||
		strings.Contains(def, "\n[grpc]") {
		t.Fatalf("config default: %v\n%s", err, def)
	}
	out, err := exec.Command(hulltest.Binary(t), "config", "migrate", cfgPath).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"version = 4\n", "[plugins.'io.containerd.server.v1.grpc']\naddress = '" + address + "'"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("migrated file lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "[grpc]") {
		t.Errorf("migrated file keeps [grpc]:\n%s", out)
	}
	migrated := filepath.Join(dir, "v4.toml")
	os.WriteFile(migrated, out, 0o600)
	if check, err := hulld(t, "--strict-config", "config", "check", migrated); err != nil {
		t.Fatalf("the migrated file does not check clean: %v\n%s", err, check)
	}
}
