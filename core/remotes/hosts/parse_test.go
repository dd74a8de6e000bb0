package hosts

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParseDottedAndInlineForms(t *testing.T) {
	// The same settings written as dotted keys and inline tables must keep
	// file order and line numbers.
	cfg, err := parseFile("/c/r/hosts.toml", []byte(`
[host."https://y.example"]
capabilities = ["pull"]
[host."https://x.example"]
[host."https://z.example"]
capabilities = ["pull"]
[host]
"https://b.example" = { capabilities = ["pull", "push"], header = { x-a = "1" } }
"https://a.example".skip_verify = true
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range cfg.mirrors {
		got = append(got, m.url.String())
	}
	if strings.Join(got, " ") != "https://y.example/v2 https://x.example/v2 https://z.example/v2 https://b.example/v2 https://a.example/v2" {
		t.Errorf("order: %v", got)
	}
	if cfg.mirrors[3].capabilities != CapabilityPull|CapabilityPush || cfg.mirrors[3].header.Get("X-A") != "1" || !cfg.mirrors[4].skipVerify || cfg.mirrors[0].capabilities != CapabilityPull {
		t.Errorf("settings: %+v", cfg.mirrors)
	}

	cfg, err = parseFile("/c/r/hosts.toml", []byte("server = \"https://s.example\"\nhost.\"https://q.example\".capabilities = [\"push\"]\nhost.\"https://p.example\".capabilities = [\"pull\"]\n"))
	if err != nil || len(cfg.mirrors) != 2 || cfg.mirrors[0].url.Host != "q.example" || cfg.mirrors[0].capabilities != CapabilityPush || cfg.server.url.Host != "s.example" {
		t.Errorf("dotted keys: %+v %v", cfg, err)
	}

	_, err = parseFile("/c/r/hosts.toml", []byte("\n[host]\n\"https://b.example\" = { capabilities = [\"pul\"] }\n"))
	if !errdefs.IsInvalidArgument(err) || !strings.HasPrefix(err.Error(), `/c/r/hosts.toml:3:25: host "https://b.example" key "capabilities": unknown capability "pul"`) {
		t.Errorf("inline table error: %v", err)
	}
}

func TestParseRelativePaths(t *testing.T) {
	cfg, err := parseFile("/c/r/hosts.toml", []byte(`
ca = ["a.pem", "/abs/b.pem", "../c.pem"]
client = ["d.pem", ["e.cert", "/abs/e.key"]]
`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.server.caFiles, " ") != "/c/r/a.pem /abs/b.pem /c/c.pem" {
		t.Errorf("ca: %v", cfg.server.caFiles)
	}
	if len(cfg.server.clientPairs) != 2 || cfg.server.clientPairs[0] != [2]string{"/c/r/d.pem", ""} || cfg.server.clientPairs[1] != [2]string{"/c/r/e.cert", "/abs/e.key"} {
		t.Errorf("client: %v", cfg.server.clientPairs)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"server = \"https://registry-1.docker.io\"\n[host.\"https://m.example\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"m.crt\"\n",
		"[host.\"https://a\"]\nclient = [[\"a\", \"b\"], \"c\"]\n[host.\"https://a\".header]\nx = [\"1\", \"2\"]\n",
		"host.\"x\" = { override_path = true, dial_timeout = \"1s\" }\n",
		"[[host]]\na = 1\n",
		"proxy = \"socks5://p:1080\"\nskip_verify = true\n",
		"[host]\n[host.\"http://h\"]\n[header]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parseFile("/etc/hull/certs.d/r.example/hosts.toml", data)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("error %v is not InvalidArgument", err)
			}
			return
		}
		for _, m := range cfg.mirrors {
			if m.url == nil || (m.url.Scheme != "http" && m.url.Scheme != "https") || m.url.Host == "" {
				t.Fatalf("mirror with bad URL %v", m.url)
			}
		}
		if u := cfg.server.url; u != nil && (u.Scheme != "http" && u.Scheme != "https" || u.Host == "") {
			t.Fatalf("server with bad URL %v", u)
		}
	})
}
