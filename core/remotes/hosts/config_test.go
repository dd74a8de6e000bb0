package hosts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

const allCaps = CapabilityPull | CapabilityResolve | CapabilityPush

// writeFile writes data to dir/name, creating directories.
func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// pki is a throwaway CA with helpers to issue server and client
// certificates, in PEM.
type pki struct {
	t       *testing.T
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM string
	serial  int64
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "hull test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki{t: t, cert: cert, key: key, certPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), serial: 1}
}

// issue returns a certificate and key in PEM for a server (at 127.0.0.1)
// or a client.
func (p *pki) issue(client bool) (certPEM, keyPEM string) {
	p.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		p.t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial),
		Subject:      pkix.Name{CommonName: "hull test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		tmpl.IPAddresses = nil
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		p.t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}

func configure(t *testing.T, registry string, opts Options) []Host {
	t.Helper()
	hosts, err := Configure(registry, opts)
	if err != nil {
		t.Fatalf("Configure(%q): %v", registry, err)
	}
	return hosts
}

func urls(hosts []Host) []string {
	var out []string
	for _, h := range hosts {
		out = append(out, h.URL())
	}
	return out
}

func TestNoConfig(t *testing.T) {
	for _, dir := range []string{"", t.TempDir()} {
		hosts := configure(t, "ghcr.io", Options{ConfigDir: dir})
		if len(hosts) != 1 {
			t.Fatalf("got %d hosts", len(hosts))
		}
		h := hosts[0]
		if h.URL() != "https://ghcr.io/v2" || h.Capabilities != allCaps || h.Mirror || h.ConfigFile != "" || h.DialTimeout != 30*time.Second || h.Header != nil || h.SkipVerify || h.Proxy != nil {
			t.Errorf("default host: %+v", h)
		}
		if h.TLS == nil || h.TLS.MinVersion != tls.VersionTLS12 || h.TLS.InsecureSkipVerify || h.TLS.RootCAs != nil || len(h.TLS.Certificates) != 0 {
			t.Errorf("default TLS: %+v", h.TLS)
		}
	}
	hosts := configure(t, "r.example:5000", Options{DefaultDialTimeout: time.Second})
	if hosts[0].URL() != "https://r.example:5000/v2" || hosts[0].DialTimeout != time.Second {
		t.Errorf("got %+v", hosts[0])
	}
}

func TestDockerHubDefault(t *testing.T) {
	hosts := configure(t, "docker.io", Options{ConfigDir: t.TempDir(), PlainHTTP: true})
	if got := urls(hosts); !reflect.DeepEqual(got, []string{"https://registry-1.docker.io/v2"}) {
		t.Errorf("got %v", got)
	}
}

func TestPlainHTTPLoopback(t *testing.T) {
	for _, tc := range []struct {
		registry string
		plain    bool
		want     string
	}{
		{"127.0.0.1:5000", true, "http://127.0.0.1:5000/v2"},
		{"localhost:5000", true, "http://localhost:5000/v2"},
		{"localhost", true, "http://localhost/v2"},
		{"[::1]:5000", true, "http://[::1]:5000/v2"},
		{"127.0.0.1:5000", false, "https://127.0.0.1:5000/v2"},
		{"10.0.0.1:5000", true, "https://10.0.0.1:5000/v2"},
		{"r.example", true, "https://r.example/v2"},
	} {
		h := configure(t, tc.registry, Options{PlainHTTP: tc.plain})[0]
		if h.URL() != tc.want {
			t.Errorf("%s plain=%v: got %s, want %s", tc.registry, tc.plain, h.URL(), tc.want)
		}
		if (h.Scheme == "http") != (h.TLS == nil) {
			t.Errorf("%s: scheme %s with TLS %v", tc.registry, h.Scheme, h.TLS)
		}
	}

	// A configured server wins over PlainHTTP.
	dir := t.TempDir()
	writeFile(t, dir, "127.0.0.1:5000/hosts.toml", `server = "https://127.0.0.1:5000"`)
	if h := configure(t, "127.0.0.1:5000", Options{ConfigDir: dir, PlainHTTP: true})[0]; h.URL() != "https://127.0.0.1:5000/v2" {
		t.Errorf("configured server: %s", h.URL())
	}
}

func TestMirrorsInFileOrder(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "docker.io/hosts.toml", `
# Mirrors in deliberately non-alphabetical order.
server = "https://registry-1.docker.io"

[host."https://zz-mirror.example"]
  capabilities = ["pull"]

[host."http://mm-mirror.example:8080/prefix/"]

[host."https://aa-mirror.example"]
  capabilities = ["pull", "resolve", "push"]
  skip_verify = true
  dial_timeout = "2s"
`)
	hosts := configure(t, "docker.io", Options{ConfigDir: dir})
	want := []string{"https://zz-mirror.example/v2", "http://mm-mirror.example:8080/prefix/v2", "https://aa-mirror.example/v2", "https://registry-1.docker.io/v2"}
	if got := urls(hosts); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	wantCaps := []Capabilities{CapabilityPull, CapabilityPull | CapabilityResolve, allCaps, allCaps}
	for i, h := range hosts {
		if h.Capabilities != wantCaps[i] {
			t.Errorf("%s: capabilities %b, want %b", h.URL(), h.Capabilities, wantCaps[i])
		}
		if h.Mirror != (i < 3) || h.ConfigFile != file {
			t.Errorf("%s: mirror %v config %q", h.URL(), h.Mirror, h.ConfigFile)
		}
	}
	if hosts[1].TLS != nil {
		t.Errorf("http mirror has TLS")
	}
	if !hosts[2].SkipVerify || !hosts[2].TLS.InsecureSkipVerify || hosts[2].DialTimeout != 2*time.Second {
		t.Errorf("aa-mirror: %+v", hosts[2])
	}
	if hosts[0].DialTimeout != 30*time.Second || hosts[0].TLS.InsecureSkipVerify {
		t.Errorf("zz-mirror: %+v", hosts[0])
	}
}

func TestTopLevelSettingsApplyToServer(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "r.example/hosts.toml", `
capabilities = ["pull", "resolve"]
skip_verify = true
dial_timeout = "1500ms"
proxy = "http://proxy.example:3128"

[header]
  x-custom = "a"

[host."https://m.example"]
`)
	hosts := configure(t, "r.example", Options{ConfigDir: dir})
	if got := urls(hosts); !reflect.DeepEqual(got, []string{"https://m.example/v2", "https://r.example/v2"}) {
		t.Fatalf("got %v", got)
	}
	s := hosts[1]
	if s.Capabilities != CapabilityPull|CapabilityResolve || !s.SkipVerify || s.DialTimeout != 1500*time.Millisecond || s.Header.Get("X-Custom") != "a" || s.Proxy == nil || s.Proxy.Host != "proxy.example:3128" {
		t.Errorf("server: %+v", s)
	}
	m := hosts[0]
	if m.SkipVerify || m.Header != nil || m.Proxy != nil || m.DialTimeout != 30*time.Second {
		t.Errorf("mirror picked up top-level settings: %+v", m)
	}
}

func TestHeaderAndOverridePath(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "r.example/hosts.toml", `
server = "https://r.example/api/"

[host."https://m.example/v2/upstream"]
  override_path = true
  [host."https://m.example/v2/upstream".header]
    x-custom-2 = ["value1", "value2"]
    authorization-extra = "x"

[host."https://n.example/v2"]

[host."https://o.example"]
  override_path = true
`)
	hosts := configure(t, "r.example", Options{ConfigDir: dir})
	want := []string{"https://m.example/v2/upstream", "https://n.example/v2", "https://o.example", "https://r.example/api/v2"}
	if got := urls(hosts); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	wantHeader := http.Header{"X-Custom-2": {"value1", "value2"}, "Authorization-Extra": {"x"}}
	if !reflect.DeepEqual(hosts[0].Header, wantHeader) {
		t.Errorf("header %v, want %v", hosts[0].Header, wantHeader)
	}
}

func TestDefaultFallback(t *testing.T) {
	dir := t.TempDir()
	def := writeFile(t, dir, "_default/hosts.toml", `
[host."https://mirror.example"]
  capabilities = ["pull"]
`)
	writeFile(t, dir, "own.example/hosts.toml", `server = "https://own.example"`)

	hosts := configure(t, "quay.io", Options{ConfigDir: dir})
	if got := urls(hosts); !reflect.DeepEqual(got, []string{"https://mirror.example/v2", "https://quay.io/v2"}) {
		t.Errorf("quay.io: %v", got)
	}
	if hosts[0].ConfigFile != def || hosts[1].ConfigFile != def {
		t.Errorf("config file: %q %q", hosts[0].ConfigFile, hosts[1].ConfigFile)
	}
	// docker.io still gets its real server when the file names none.
	if got := urls(configure(t, "docker.io", Options{ConfigDir: dir})); !reflect.DeepEqual(got, []string{"https://mirror.example/v2", "https://registry-1.docker.io/v2"}) {
		t.Errorf("docker.io: %v", got)
	}
	if got := urls(configure(t, "own.example", Options{ConfigDir: dir})); !reflect.DeepEqual(got, []string{"https://own.example/v2"}) {
		t.Errorf("own.example: %v", got)
	}
}

// serveTLS runs a TLS server with the given certificate, optionally
// demanding a client certificate from ca, and returns its address.
func serveTLS(t *testing.T, certPEM, keyPEM string, clientCA *pki) string {
	t.Helper()
	cert, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	if clientCA != nil {
		pool := x509.NewCertPool()
		pool.AddCert(clientCA.cert)
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.(*tls.Conn).Handshake()
				c.Write([]byte("ok"))
			}()
		}
	}()
	return ln.Addr().String()
}

// handshake connects to addr with h.TLS and reads the server's greeting,
// which only comes after both sides accepted each other.
func handshake(h Host, addr string) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, h.TLS)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 2)
	_, err = c.Read(buf)
	return err
}

func TestCAAndClientFromHostsToml(t *testing.T) {
	serverCA, clientCA := newPKI(t), newPKI(t)
	srvCert, srvKey := serverCA.issue(false)
	cliCert, cliKey := clientCA.issue(true)
	addr := serveTLS(t, srvCert, srvKey, clientCA)

	dir := t.TempDir()
	regDir := filepath.Join(dir, "127.0.0.1:5000")
	writeFile(t, regDir, "certs/ca.pem", serverCA.certPEM)
	writeFile(t, regDir, "certs/client.cert", cliCert)
	writeFile(t, regDir, "certs/client.key", cliKey)
	writeFile(t, regDir, "combined.pem", cliCert+cliKey)
	writeFile(t, regDir, "hosts.toml", `
[host."https://`+addr+`"]
  ca = "certs/ca.pem"
  client = [["certs/client.cert", "certs/client.key"]]

[host."https://combined.example"]
  ca = ["certs/ca.pem"]
  client = "combined.pem"

[host."https://pair-empty-key.example"]
  client = [["combined.pem", ""]]
`)
	hosts := configure(t, "127.0.0.1:5000", Options{ConfigDir: dir, PlainHTTP: true})
	if len(hosts) != 4 {
		t.Fatalf("got %v", urls(hosts))
	}
	h := hosts[0]
	if !reflect.DeepEqual(h.CAFiles, []string{filepath.Join(regDir, "certs/ca.pem")}) {
		t.Errorf("CAFiles %v", h.CAFiles)
	}
	if !reflect.DeepEqual(h.ClientCertFiles, [][2]string{{filepath.Join(regDir, "certs/client.cert"), filepath.Join(regDir, "certs/client.key")}}) {
		t.Errorf("ClientCertFiles %v", h.ClientCertFiles)
	}
	if err := handshake(h, addr); err != nil {
		t.Errorf("handshake with configured CA and client certificate: %v", err)
	}
	if len(hosts[1].TLS.Certificates) != 1 || hosts[1].ClientCertFiles[0][1] != "" || len(hosts[2].TLS.Certificates) != 1 {
		t.Errorf("combined PEM not loaded: %+v %+v", hosts[1], hosts[2])
	}
	// The server entry (defaults, PlainHTTP) has nothing to do with
	// the mirror's certificates.
	if s := hosts[3]; s.URL() != "http://127.0.0.1:5000/v2" || s.TLS != nil || s.CAFiles != nil {
		t.Errorf("server: %+v", s)
	}

	// Without the CA, the same server is not trusted.
	if err := handshake(configure(t, "x.example", Options{})[0], addr); err == nil {
		t.Errorf("handshake without the CA succeeded")
	}
}

func TestLooseCertFiles(t *testing.T) {
	serverCA, clientCA := newPKI(t), newPKI(t)
	srvCert, srvKey := serverCA.issue(false)
	cliCert, cliKey := clientCA.issue(true)
	addr := serveTLS(t, srvCert, srvKey, clientCA)

	dir := t.TempDir()
	regDir := filepath.Join(dir, addr)
	writeFile(t, regDir, "ca.crt", serverCA.certPEM)
	writeFile(t, regDir, "client.cert", cliCert)
	writeFile(t, regDir, "client.key", cliKey)
	writeFile(t, regDir, "README", "not a certificate")

	hosts := configure(t, addr, Options{ConfigDir: dir})
	if len(hosts) != 1 || hosts[0].ConfigFile != "" {
		t.Fatalf("got %+v", hosts)
	}
	h := hosts[0]
	if !reflect.DeepEqual(h.CAFiles, []string{filepath.Join(regDir, "ca.crt")}) ||
		!reflect.DeepEqual(h.ClientCertFiles, [][2]string{{filepath.Join(regDir, "client.cert"), filepath.Join(regDir, "client.key")}}) {
		t.Errorf("files: %v %v", h.CAFiles, h.ClientCertFiles)
	}
	if err := handshake(h, addr); err != nil {
		t.Errorf("handshake with loose certificates: %v", err)
	}

	// With a hosts.toml, the loose files apply to every host of the
	// directory, and a CA named both ways is listed once.
	writeFile(t, regDir, "hosts.toml", `
[host."https://m.example"]
  ca = "ca.crt"
`)
	hosts = configure(t, addr, Options{ConfigDir: dir})
	for _, h := range hosts {
		if len(h.CAFiles) != 1 || len(h.ClientCertFiles) != 1 || len(h.TLS.Certificates) != 1 {
			t.Errorf("%s: CAs %v clients %v", h.URL(), h.CAFiles, h.ClientCertFiles)
		}
	}
}

// lineCol matches "file:line:column:" so that expectations can name lines.
var lineCol = regexp.MustCompile(`(\.toml:\d+):\d+:`)

func TestErrors(t *testing.T) {
	ca := newPKI(t)
	cliCert, cliKey := ca.issue(true)
	for _, tc := range []struct {
		name  string
		files map[string]string // relative to the registry dir "r.example"
		want  string            // %f is replaced with the hosts.toml path
	}{
		{"syntax", map[string]string{"hosts.toml": "server = \"https://x\"\n[host.\n"}, "%f:2: invalid TOML"},
		{"duplicate key", map[string]string{"hosts.toml": "server = \"a.example\"\nserver = \"b.example\"\n"}, "%f:2: invalid TOML"},
		{"unknown top-level key", map[string]string{"hosts.toml": "\nservr = \"https://x\"\n"}, `%f:2: key "servr": unknown key`},
		{"unknown host key", map[string]string{"hosts.toml": "[host.\"https://m.example\"]\n  capabilities = [\"pull\"]\n  skip-verify = true\n"}, `%f:3: host "https://m.example" key "skip-verify": unknown key`},
		{"unknown capability", map[string]string{"hosts.toml": "server = \"https://r.example\"\n\n[host.\"https://m.example\"]\n  capabilities = [\"pul\"]\n"},
			`%f:4: host "https://m.example" key "capabilities": unknown capability "pul" (use pull, resolve, push)`},
		{"capabilities not array", map[string]string{"hosts.toml": "capabilities = \"pull\"\n"}, `%f:1: key "capabilities": want an array of strings`},
		{"capability not string", map[string]string{"hosts.toml": "capabilities = [1]\n"}, `%f:1: key "capabilities": want an array of strings`},
		{"skip_verify type", map[string]string{"hosts.toml": "[host.\"https://m.example\"]\nskip_verify = \"yes\"\n"}, `%f:2: host "https://m.example" key "skip_verify": want true or false, got a string`},
		{"override_path type", map[string]string{"hosts.toml": "override_path = 1\n"}, `%f:1: key "override_path": want true or false, got an integer`},
		{"server type", map[string]string{"hosts.toml": "server = 5\n"}, `%f:1: key "server": want a URL string, got an integer`},
		{"ca type", map[string]string{"hosts.toml": "ca = 5\n"}, `%f:1: key "ca": want a path or an array of paths`},
		{"client type", map[string]string{"hosts.toml": "client = [[\"a\"]]\n"}, `%f:1: key "client": want a path, an array of paths, or an array of ["cert", "key"] pairs, got a pair of 1 elements`},
		{"header type", map[string]string{"hosts.toml": "header = \"x\"\n"}, `%f:1: key "header": want a table`},
		{"header value type", map[string]string{"hosts.toml": "[header]\nx = 1\n"}, `%f:1: key "header": header "x": want a string or an array of strings`},
		{"header newline", map[string]string{"hosts.toml": "[header]\nx = \"a\\r\\nEvil: 1\"\n"}, `line break`},
		{"header name", map[string]string{"hosts.toml": "[header]\n\"x y\" = \"a\"\n"}, `invalid header name "x y"`},
		{"dial_timeout", map[string]string{"hosts.toml": "[host.\"https://m.example\"]\ndial_timeout = \"soon\"\n"}, `%f:2: host "https://m.example" key "dial_timeout": invalid duration "soon"`},
		{"dial_timeout type", map[string]string{"hosts.toml": "dial_timeout = 5\n"}, `%f:1: key "dial_timeout": want a duration string`},
		{"host not a table", map[string]string{"hosts.toml": "host = \"https://m.example\"\n"}, `%f:1: key "host": want tables`},
		{"host entry not a table", map[string]string{"hosts.toml": "host.\"https://m.example\" = 1\n"}, `%f:1: host "https://m.example": want a table`},
		{"nested host", map[string]string{"hosts.toml": "[host.\"https://m.example\"]\n[host.\"https://m.example\".host.\"https://n.example\"]\n"}, `%f:2: host "https://m.example" key "host": unknown key`},
		{"ftp host", map[string]string{"hosts.toml": "[host.\"ftp://m.example\"]\n"}, `%f:1: host "ftp://m.example": URL "ftp://m.example": scheme must be http or https`},
		{"ftp server", map[string]string{"hosts.toml": "\nserver = \"ftp://r.example\"\n"}, `%f:2: key "server": URL "ftp://r.example": scheme must be http or https`},
		{"query", map[string]string{"hosts.toml": "[host.\"https://m.example/?a=b\"]\n"}, `must not have a query`},
		{"userinfo", map[string]string{"hosts.toml": "[host.\"https://u:secretpw@m.example\"]\n"}, `must not contain credentials`},
		{"bad port", map[string]string{"hosts.toml": "server = \"https://r.example:99999\"\n"}, `invalid port "99999"`},
		{"proxy scheme", map[string]string{"hosts.toml": "proxy = \"ftp://p\"\n"}, `%f:1: key "proxy": proxy URL "ftp://p": scheme must be`},
		{"proxy path", map[string]string{"hosts.toml": "proxy = \"http://p/x\"\n"}, `must not have a path`},
		{"ca missing", map[string]string{"hosts.toml": "[host.\"https://m.example\"]\nca = \"missing.pem\"\n"}, `%f:2: host "https://m.example" key "ca": CA file "%d/missing.pem"`},
		{"ca not pem", map[string]string{"hosts.toml": "ca = [\"junk.pem\"]\n", "junk.pem": "junk"}, `%f:1: key "ca": CA file "%d/junk.pem" for https://r.example/v2 has no PEM certificate`},
		{"client missing", map[string]string{"hosts.toml": "client = [[\"c.cert\", \"c.key\"]]\n"}, `%f:1: key "client": client certificate for https://r.example/v2: open %d/c.cert`},
		{"client key mismatch", map[string]string{"hosts.toml": "client = [[\"c.cert\", \"c.key\"]]\n", "c.cert": cliCert, "c.key": ca.certPEM},
			`certificate "%d/c.cert" with key "%d/c.key"`},
		{"loose crt not pem", map[string]string{"x.crt": "junk"}, `%d: CA file "%d/x.crt"`},
		{"loose cert without key", map[string]string{"c.cert": cliCert}, `client certificate "%d/c.cert" has no key file "%d/c.key"`},
		{"loose key without cert", map[string]string{"c.key": cliKey}, `client key "%d/c.key" has no certificate file "%d/c.cert"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			regDir := filepath.Join(dir, "r.example")
			if err := os.MkdirAll(regDir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, data := range tc.files {
				writeFile(t, regDir, name, data)
			}
			_, err := Configure("r.example", Options{ConfigDir: dir})
			if err == nil {
				t.Fatal("no error")
			}
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("%v is not InvalidArgument", err)
			}
			want := strings.NewReplacer("%f", filepath.Join(regDir, "hosts.toml"), "%d", regDir).Replace(tc.want)
			// Every position names a column too; the table gives lines.
			if strings.Contains(want, ".toml:") && !lineCol.MatchString(err.Error()) {
				t.Errorf("error %q names no line:column", err)
			}
			if !strings.Contains(lineCol.ReplaceAllString(err.Error(), "$1:"), want) {
				t.Errorf("error %q\ndoes not contain %q", err, want)
			}
			if strings.Contains(err.Error(), "secretpw") {
				t.Errorf("error shows a password: %v", err)
			}
		})
	}
}

func TestInvalidRegistry(t *testing.T) {
	for _, r := range []string{"", "..", ".", "a/b", "../etc", "_default", "a b", "r.example:99999", "u@r.example", "r.example/"} {
		if _, err := Configure(r, Options{ConfigDir: t.TempDir()}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Configure(%q) = %v, want InvalidArgument", r, err)
		}
	}
}

func TestCapabilitiesHas(t *testing.T) {
	c := CapabilityPull | CapabilityResolve
	if !c.Has(CapabilityPull) || !c.Has(CapabilityPull|CapabilityResolve) || c.Has(CapabilityPush) {
		t.Errorf("Has is wrong for %b", c)
	}
}

// TLSID names a TLS configuration by its content: two readings of the same
// files give the same ID, other files or a file changed in place another,
// skip_verify counts, and plain http has none.
func TestTLSID(t *testing.T) {
	ca1, ca2 := newPKI(t), newPKI(t)
	cliCert, cliKey := ca1.issue(true)
	dir := t.TempDir()
	regDir := filepath.Join(dir, "r.example")
	caFile := writeFile(t, regDir, "ca.pem", ca1.certPEM)
	// Not loose in regDir, where it would be every host's.
	writeFile(t, regDir, "certs/client.cert", cliCert)
	writeFile(t, regDir, "certs/client.key", cliKey)
	writeFile(t, regDir, "hosts.toml", `
[host."https://a.example"]
  ca = "ca.pem"
[host."https://b.example"]
  ca = "ca.pem"
[host."https://c.example"]
  ca = "ca.pem"
  client = [["certs/client.cert", "certs/client.key"]]
[host."https://d.example"]
  ca = "ca.pem"
  skip_verify = true
[host."http://e.example"]
`)
	first := configure(t, "r.example", Options{ConfigDir: dir})
	again := configure(t, "r.example", Options{ConfigDir: dir})
	if len(first) != 6 {
		t.Fatalf("got %v", urls(first))
	}
	for i := range first {
		if first[i].TLSID != again[i].TLSID {
			t.Errorf("%s: a second reading of the same files has TLSID %q, the first %q", first[i].URL(), again[i].TLSID, first[i].TLSID)
		}
	}
	a, b, c, d, e := first[0], first[1], first[2], first[3], first[4]
	if a.TLSID == "" || a.TLSID != b.TLSID {
		t.Errorf("hosts with the same CA: TLSIDs %q and %q", a.TLSID, b.TLSID)
	}
	if c.TLSID == a.TLSID || d.TLSID == a.TLSID || c.TLSID == d.TLSID {
		t.Errorf("a client certificate or skip_verify does not change the TLSID: %q %q %q", a.TLSID, c.TLSID, d.TLSID)
	}
	if e.TLS != nil || e.TLSID != "" {
		t.Errorf("plain http host has TLS %v, TLSID %q", e.TLS, e.TLSID)
	}
	// The CA file replaced in place (same name, other certificate).
	writeFile(t, regDir, "ca.pem", ca2.certPEM)
	if got := configure(t, "r.example", Options{ConfigDir: dir})[0].TLSID; got == a.TLSID {
		t.Errorf("TLSID unchanged after %s was replaced", caFile)
	}
}
