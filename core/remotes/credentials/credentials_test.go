package credentials

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

const secret = "s3cr3t-Pa55"

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// fakeHelpers puts docker-credential-<name> scripts on a fresh PATH. Each
// script logs the server it was asked about to <dir>/<name>.log and answers
// from a table: the server URL maps to the shell to run.
func fakeHelpers(t *testing.T, scripts map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range scripts {
		script := "#!/bin/sh\n[ \"$1\" = get ] || { echo \"bad verb $1\" >&2; exit 2; }\nIFS= read -r server || true\necho \"$server\" >> \"" + filepath.Join(dir, name+".log") + "\"\n" + body + "\n"
		if err := os.WriteFile(filepath.Join(dir, helperPrefix+name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir)
	return dir
}

func writeConfig(t *testing.T, json string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(p, []byte(json), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func get(t *testing.T, s Store, host string) Credentials {
	t.Helper()
	c, err := s.Get(context.Background(), host)
	if err != nil {
		t.Fatalf("Get(%q): %v", host, err)
	}
	return c
}

func TestStatic(t *testing.T) {
	all := Static("", "u", "p")
	for _, h := range []string{"docker.io", "ghcr.io", "127.0.0.1:5000"} {
		if c := get(t, all, h); c != (Credentials{Username: "u", Secret: "p"}) {
			t.Errorf("%s: %v", h, c)
		}
	}
	one := Static("https://GHCR.io/", "u", "p")
	if c := get(t, one, "ghcr.io"); c.Username != "u" {
		t.Errorf("ghcr.io: %v", c)
	}
	if c := get(t, one, "quay.io"); !c.IsAnonymous() {
		t.Errorf("quay.io: %v", c)
	}
	hub := Static("index.docker.io", "u", "p")
	if c := get(t, hub, "docker.io"); c.Username != "u" {
		t.Errorf("docker.io via index.docker.io: %v", c)
	}
}

func TestCredentialsNeverPrintSecrets(t *testing.T) {
	for _, c := range []Credentials{{Username: "u", Secret: secret}, {IdentityToken: secret}, {}} {
		for _, format := range []string{"%v", "%+v", "%s", "%#v"} {
			if s := fmt.Sprintf(format, c); strings.Contains(s, secret) {
				t.Errorf("%s shows the secret: %s", format, s)
			}
		}
	}
}

func TestChain(t *testing.T) {
	c := Chain(nil, Static("quay.io", "q", "1"), Static("", "any", "2"))
	if got := get(t, c, "quay.io"); got.Username != "q" {
		t.Errorf("quay.io: %v", got)
	}
	if got := get(t, c, "ghcr.io"); got.Username != "any" {
		t.Errorf("ghcr.io: %v", got)
	}
	if got := get(t, Chain(), "ghcr.io"); !got.IsAnonymous() {
		t.Errorf("empty chain: %v", got)
	}
	fakeHelpers(t, map[string]string{"broken": "echo 'keychain locked' ; exit 1"})
	broken, err := FromDockerConfig(writeConfig(t, `{"credsStore": "broken"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Chain(broken, Static("", "any", "2")).Get(context.Background(), "ghcr.io"); err == nil || !strings.Contains(err.Error(), "keychain locked") {
		t.Errorf("error from the first store: %v", err)
	}
}

func TestDockerConfigAuths(t *testing.T) {
	p := writeConfig(t, `{
		"auths": {
			"https://index.docker.io/v1/": {"auth": "`+b64("hubuser:"+secret)+`"},
			"ghcr.io": {"username": "gh", "password": "tok"},
			"https://quay.io": {"auth": "`+b64("q:pa:ss")+`"},
			"localhost:5000": {"identitytoken": "refresh"},
			"r.example": {},
			"bad.example": {"auth": "not base64!"},
			"nocolon.example": {"auth": "`+b64("justuser")+`"}
		},
		"HttpHeaders": {"User-Agent": "x"}
	}`)
	s, err := FromDockerConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]Credentials{
		"docker.io":            {Username: "hubuser", Secret: secret},
		"registry-1.docker.io": {Username: "hubuser", Secret: secret},
		"ghcr.io":              {Username: "gh", Secret: "tok"},
		"quay.io":              {Username: "q", Secret: "pa:ss"},
		"localhost:5000":       {IdentityToken: "refresh"},
		"r.example":            {},
		"other.example":        {},
	} {
		if got := get(t, s, host); got != want {
			t.Errorf("%s: got %#v, want user %q", host, got, want.Username)
		}
	}
	for _, host := range []string{"bad.example", "nocolon.example"} {
		_, err := s.Get(context.Background(), host)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), host) {
			t.Errorf("%s: %v", host, err)
		}
		if strings.Contains(err.Error(), "justuser") || strings.Contains(err.Error(), "not base64!") {
			t.Errorf("%s: error shows the value: %v", host, err)
		}
	}
}

func TestDockerConfigDuplicateKeys(t *testing.T) {
	s, err := FromDockerConfig(writeConfig(t, `{"auths": {
		"docker.io": {},
		"https://index.docker.io/v1/": {"auth": "`+b64("hub:pw")+`"},
		"index.docker.io": {"auth": "broken"}
	}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c := get(t, s, "docker.io"); c.Username != "hub" {
		t.Errorf("got %v", c)
	}
}

func TestDockerConfigMissingAndInvalid(t *testing.T) {
	s, err := FromDockerConfig(filepath.Join(t.TempDir(), "nope.json"))
	if err != nil {
		t.Fatal(err)
	}
	if c := get(t, s, "docker.io"); !c.IsAnonymous() {
		t.Errorf("missing file: %v", c)
	}
	p := writeConfig(t, `{"auths": {"x": {"auth": "`+secret+`"`)
	if _, err := FromDockerConfig(p); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), p) || strings.Contains(err.Error(), secret) {
		t.Errorf("truncated JSON: %v", err)
	}
	for _, cfg := range []string{`{"credsStore": "../../bin/evil"}`, `{"credHelpers": {"ghcr.io": "/bin/sh"}}`} {
		if _, err := FromDockerConfig(writeConfig(t, cfg)); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v", cfg, err)
		}
	}
	t.Setenv("DOCKER_CONFIG", "/some/dir")
	if p, err := DockerConfigPath(); err != nil || p != "/some/dir/config.json" {
		t.Errorf("DockerConfigPath = %q, %v", p, err)
	}
}

func TestDockerConfigHelpers(t *testing.T) {
	dir := fakeHelpers(t, map[string]string{
		"desktop": `case "$server" in
  https://index.docker.io/v1/) echo '{"ServerURL":"https://index.docker.io/v1/","Username":"hub","Secret":"` + secret + `"}' ;;
  quay.io) echo '{"ServerURL":"quay.io","Username":"<token>","Secret":"refresh-tok"}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac`,
		"ecr-login": `echo '{"ServerURL":"'"$server"'","Username":"AWS","Secret":"ecr-tok"}'`,
		"garbage":   `echo 'Username: ` + secret + `'`,
		"failing":   `echo "cannot reach keychain" >&2; exit 3`,
	})
	p := writeConfig(t, `{
		"credsStore": "desktop",
		"credHelpers": {
			"123.dkr.ecr.us-east-1.amazonaws.com": "ecr-login",
			"https://garbage.example": "garbage",
			"failing.example": "failing",
			"missing.example": "not-installed"
		},
		"auths": {
			"https://index.docker.io/v1/": {},
			"inline.example": {"auth": "`+b64("in:line")+`"}
		}
	}`)
	s, err := FromDockerConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if c := get(t, s, "docker.io"); c != (Credentials{Username: "hub", Secret: secret}) {
		t.Errorf("docker.io: %v", c)
	}
	if c := get(t, s, "quay.io"); c != (Credentials{IdentityToken: "refresh-tok"}) {
		t.Errorf("quay.io: %#v", c)
	}
	if c := get(t, s, "123.dkr.ecr.us-east-1.amazonaws.com"); c != (Credentials{Username: "AWS", Secret: "ecr-tok"}) {
		t.Errorf("ecr: %v", c)
	}
	if c := get(t, s, "ghcr.io"); !c.IsAnonymous() {
		t.Errorf("not found in the helper: %v", c)
	}
	if c := get(t, s, "inline.example"); c.Username != "in" || c.Secret != "line" {
		t.Errorf("helper has nothing, inline auth: %v", c)
	}

	log, err := os.ReadFile(filepath.Join(dir, "desktop.log"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(log)); strings.Join(got, " ") != "https://index.docker.io/v1/ quay.io ghcr.io inline.example" {
		t.Errorf("desktop was asked about %q", got)
	}

	for host, want := range map[string]string{
		"garbage.example": "docker-credential-garbage get: output is not the credential helper JSON",
		"failing.example": "cannot reach keychain",
		"missing.example": "docker-credential-not-installed is not installed",
	} {
		_, err := s.Get(context.Background(), host)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), host) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v, want it to say %q", host, err, want)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error shows the secret: %v", host, err)
		}
	}
	if _, err := s.Get(context.Background(), "missing.example"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("missing helper: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Get(ctx, "docker.io"); err == nil {
		t.Errorf("canceled context: no error")
	}
}
