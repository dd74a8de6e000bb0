// Package registrytest runs real OCI registries for tests: Debian's
// docker-registry (distribution 2.8) on a free 127.0.0.1 port with its
// storage in a temporary directory, plain or over TLS (optionally requiring
// client certificates), open or behind basic or bearer token auth (with the
// fixture's own token server), or as a pull-through mirror of another
// fixture registry. Each is stopped when its test ends. It also pushes
// testimage images and indexes to them. It is the one registry fixture
// tests use.
package registrytest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/hullrt/hull/internal/hulltest"
)

// Binary is where Debian's docker-registry package installs the registry.
const Binary = "/usr/bin/docker-registry"

// Options say what kind of registry Start runs. The zero value is a plain
// HTTP registry without auth.
type Options struct {
	// TLS serves https with a server certificate for 127.0.0.1, ::1 and
	// localhost signed by a fresh CA (Registry.CAFile, Registry.CACertPEM).
	TLS bool
	// ClientCA (implies TLS) makes the registry require client certificates
	// signed by the same CA; Registry.ClientCertFile and ClientKeyFile are
	// one.
	ClientCA bool
	// Htpasswd (user → password) turns on basic auth. It needs at least one
	// user and excludes Token.
	Htpasswd map[string]string
	// Token turns on bearer token auth with the fixture's token server.
	Token *TokenOptions
	// ProxyRemoteURL makes the registry a pull-through cache (a mirror) of
	// the registry at that URL, typically another fixture's URL(). Pushing
	// to a mirror fails.
	ProxyRemoteURL string
	// ProxyRemoteCAFile is a PEM CA bundle the mirror trusts for the
	// upstream (given to it as SSL_CERT_FILE), typically the upstream
	// fixture's CAFile. Distribution cannot present client certificates
	// upstream, so the upstream must not use ClientCA.
	ProxyRemoteCAFile string
	// ProxyUsername and ProxyPassword are the credentials the mirror uses
	// upstream (basic, or for the upstream's token server).
	ProxyUsername, ProxyPassword string
	// StartTimeout bounds the wait for the registry to answer; zero means
	// 20 seconds.
	StartTimeout time.Duration
}

// Registry is a docker-registry started for one test.
type Registry struct {
	// Dir holds the registry's config, certificates and storage.
	Dir string
	// ConfigFile is the registry's config.
	ConfigFile string
	// CAFile is the PEM file of the CA that signed the server (and client)
	// certificates; empty without TLS.
	CAFile string
	// CACertPEM is the CA certificate in PEM; nil without TLS.
	CACertPEM []byte
	// ClientCertFile and ClientKeyFile are a client certificate and key the
	// registry accepts; empty without ClientCA.
	ClientCertFile, ClientKeyFile string
	// Username and Password are the credentials Push and Do use: the first
	// user by name of Htpasswd or Token.Users; empty without them.
	Username, Password string

	t         testing.TB
	opts      Options
	scheme    string
	host      string
	tlsConfig *tls.Config // for clients: trusts CAFile, presents the client cert
	client    *http.Client
	token     *tokenServer
	log       *hulltest.SyncBuffer

	mu     sync.Mutex
	proc   *process
	tokens map[string]string // repository → bearer token, for Do
}

// process is one run of docker-registry.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs a docker-registry configured by opts and waits until GET /v2/
// answers (200, or 401 behind auth). It is stopped (SIGTERM, then SIGKILL)
// when the test ends, and its output is logged if the test failed.
func Start(t testing.TB, opts Options) *Registry {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Fatalf("registrytest: %v (install Debian's docker-registry package)", err)
	}
	if opts.ClientCA {
		opts.TLS = true
	}
	if opts.Htpasswd != nil && opts.Token != nil {
		t.Fatal("registrytest: Htpasswd and Token exclude each other")
	}
	if opts.Htpasswd != nil && len(opts.Htpasswd) == 0 {
		t.Fatal("registrytest: Htpasswd needs at least one user")
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 20 * time.Second
	}
	dir := t.TempDir()
	r := &Registry{
		Dir: dir, ConfigFile: filepath.Join(dir, "config.yml"),
		t: t, opts: opts, scheme: "http", log: &hulltest.SyncBuffer{}, tokens: map[string]string{},
	}
	if err := os.Mkdir(filepath.Join(dir, "storage"), 0o755); err != nil {
		t.Fatal(err)
	}
	var serverCert *certKey
	if opts.TLS {
		var err error
		serverCert, err = r.setUpTLS()
		if err != nil {
			t.Fatalf("registrytest: certificates: %v", err)
		}
		r.scheme = "https"
	}
	r.client = &http.Client{Transport: &http.Transport{
		TLSClientConfig:   r.tlsConfig,
		DisableKeepAlives: true, // leave no idle connections to a stopped registry
	}}
	var users map[string]string
	switch {
	case opts.Htpasswd != nil:
		users = opts.Htpasswd
		if err := r.writeHtpasswd(); err != nil {
			t.Fatalf("registrytest: htpasswd: %v", err)
		}
	case opts.Token != nil:
		users = opts.Token.Users
		ts, err := newTokenServer(*opts.Token, serverCert)
		if err != nil {
			t.Fatalf("registrytest: token server: %v", err)
		}
		r.token = ts
		t.Cleanup(ts.srv.Close)
		if err := os.WriteFile(filepath.Join(dir, "token-root.pem"), ts.root.certPEM(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if len(users) > 0 {
		names := make([]string, 0, len(users))
		for u := range users {
			names = append(names, u)
		}
		sort.Strings(names)
		r.Username, r.Password = names[0], users[names[0]]
	}
	t.Cleanup(func() {
		r.Stop()
		if t.Failed() {
			t.Logf("docker-registry output (%s):\n%s", r.host, r.Log())
		}
	})
	// The port is picked by binding and releasing it, so another process
	// may take it first: start again on a new one when the bind fails.
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		r.host = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err := r.writeConfig(); err != nil {
			t.Fatalf("registrytest: config: %v", err)
		}
		err = r.run()
		if err == nil {
			return r
		}
		if attempt < 5 && strings.Contains(r.Log(), "address already in use") {
			continue
		}
		t.Fatalf("registrytest: %v\n%s", err, r.Log())
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (r *Registry) setUpTLS() (*certKey, error) {
	ca, err := newCA("registrytest CA")
	if err != nil {
		return nil, err
	}
	server, err := newServerCert(ca)
	if err != nil {
		return nil, err
	}
	r.CAFile = filepath.Join(r.Dir, "ca.pem")
	r.CACertPEM = ca.certPEM()
	if err := os.WriteFile(r.CAFile, r.CACertPEM, 0o644); err != nil {
		return nil, err
	}
	if err := server.writeFiles(filepath.Join(r.Dir, "server.pem"), filepath.Join(r.Dir, "server-key.pem")); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	r.tlsConfig = &tls.Config{RootCAs: pool}
	if r.opts.ClientCA {
		client, err := newCert(certSpec{commonName: "registrytest client", extUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca)
		if err != nil {
			return nil, err
		}
		r.ClientCertFile, r.ClientKeyFile = filepath.Join(r.Dir, "client.pem"), filepath.Join(r.Dir, "client-key.pem")
		if err := client.writeFiles(r.ClientCertFile, r.ClientKeyFile); err != nil {
			return nil, err
		}
		r.tlsConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{client.der}, PrivateKey: client.key}}
	}
	return server, nil
}

func (r *Registry) writeHtpasswd() error {
	names := make([]string, 0, len(r.opts.Htpasswd))
	for u := range r.opts.Htpasswd {
		if u == "" || strings.ContainsAny(u, ":\n") {
			return fmt.Errorf("bad user name %q", u)
		}
		names = append(names, u)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, u := range names {
		h, err := bcrypt.GenerateFromPassword([]byte(r.opts.Htpasswd[u]), bcrypt.MinCost)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s:%s\n", u, h)
	}
	return os.WriteFile(filepath.Join(r.Dir, "htpasswd"), []byte(b.String()), 0o600)
}

// q quotes s for YAML: a JSON string is a YAML double-quoted scalar.
func q(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func (r *Registry) writeConfig() error {
	secret := make([]byte, 16)
	rand.Read(secret)
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("version: 0.1")
	w("log:")
	w("  level: info")
	w("  formatter: text")
	w("storage:")
	w("  filesystem:")
	w("    rootdirectory: %s", q(filepath.Join(r.Dir, "storage")))
	w("  delete:")
	w("    enabled: true")
	w("  maintenance:")
	w("    uploadpurging:")
	w("      enabled: false")
	w("http:")
	w("  addr: %s", q(r.host))
	w("  secret: %s", q(hex.EncodeToString(secret)))
	w("  headers:")
	w("    X-Content-Type-Options: [nosniff]")
	if r.opts.TLS {
		w("  tls:")
		w("    certificate: %s", q(filepath.Join(r.Dir, "server.pem")))
		w("    key: %s", q(filepath.Join(r.Dir, "server-key.pem")))
		if r.opts.ClientCA {
			w("    clientcas:")
			w("      - %s", q(r.CAFile))
		}
	}
	switch {
	case r.opts.Htpasswd != nil:
		w("auth:")
		w("  htpasswd:")
		w("    realm: registrytest")
		w("    path: %s", q(filepath.Join(r.Dir, "htpasswd")))
	case r.token != nil:
		w("auth:")
		w("  token:")
		w("    realm: %s", q(r.token.realm()))
		w("    service: %s", q(r.token.service))
		w("    issuer: %s", q(r.token.issuer))
		w("    rootcertbundle: %s", q(filepath.Join(r.Dir, "token-root.pem")))
	}
	if r.opts.ProxyRemoteURL != "" {
		w("proxy:")
		w("  remoteurl: %s", q(r.opts.ProxyRemoteURL))
		if r.opts.ProxyUsername != "" {
			w("  username: %s", q(r.opts.ProxyUsername))
			w("  password: %s", q(r.opts.ProxyPassword))
		}
	}
	w("health:")
	w("  storagedriver:")
	w("    enabled: false")
	return os.WriteFile(r.ConfigFile, []byte(b.String()), 0o600)
}

// env is this process's environment without variables that would change
// the registry's configuration or trust, plus SSL_CERT_FILE for a mirror.
func (r *Registry) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "REGISTRY_") || strings.HasPrefix(kv, "SSL_CERT_FILE=") || strings.HasPrefix(kv, "SSL_CERT_DIR=") {
			continue
		}
		env = append(env, kv)
	}
	if r.opts.ProxyRemoteCAFile != "" {
		env = append(env, "SSL_CERT_FILE="+r.opts.ProxyRemoteCAFile)
	}
	return env
}

// run starts docker-registry with the written config and waits for it to
// answer; on failure the process is gone.
func (r *Registry) run() error {
	cmd := exec.Command(Binary, "serve", r.ConfigFile)
	cmd.Dir = r.Dir
	cmd.Env = r.env()
	cmd.Stdout, cmd.Stderr = r.log, r.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	r.mu.Lock()
	r.proc = p
	r.mu.Unlock()
	deadline := time.Now().Add(r.opts.StartTimeout)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("docker-registry exited during start-up: %v", cmd.ProcessState)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.URL()+"/v2/", nil)
		resp, err := r.client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		cancel()
		if err == nil && (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized) {
			return nil
		}
		if time.Now().After(deadline) {
			r.stopProcess(p)
			if err == nil {
				err = fmt.Errorf("GET /v2/: %s", resp.Status)
			}
			return fmt.Errorf("docker-registry did not answer on %s within %v: %v", r.host, r.opts.StartTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *Registry) stopProcess(p *process) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		r.t.Logf("registrytest: docker-registry (pid %d) did not stop within 10s of SIGTERM; killing it", p.cmd.Process.Pid)
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// Stop stops the registry: SIGTERM, then SIGKILL after 10 seconds. Its
// storage is kept for Restart.
func (r *Registry) Stop() {
	r.mu.Lock()
	p := r.proc
	r.mu.Unlock()
	if p != nil {
		r.stopProcess(p)
	}
}

// Restart stops the registry if it runs and starts it again on the same
// address with the same storage and configuration.
func (r *Registry) Restart() {
	r.t.Helper()
	r.Stop()
	if err := r.run(); err != nil {
		r.t.Fatalf("registrytest: restart: %v\n%s", err, r.Log())
	}
}

// PID is the process ID of the running docker-registry.
func (r *Registry) PID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proc.cmd.Process.Pid
}

// Log returns what docker-registry has written so far, across restarts.
func (r *Registry) Log() string { return r.log.String() }

// Host is the registry's address, "127.0.0.1:PORT", as it appears in image
// references.
func (r *Registry) Host() string { return r.host }

// URL is the registry's base URL, http:// or https:// then Host.
func (r *Registry) URL() string { return r.scheme + "://" + r.host }

// TLSConfig returns a client TLS configuration that trusts the registry's CA
// and presents the client certificate when ClientCA is on; nil without TLS.
func (r *Registry) TLSConfig() *tls.Config {
	if r.tlsConfig == nil {
		return nil
	}
	return r.tlsConfig.Clone()
}

// Client returns an HTTP client that reaches the registry (and its token
// server) over TLS as TLSConfig says, without credentials.
func (r *Registry) Client() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: r.TLSConfig(), DisableKeepAlives: true}}
}

// TokenRealm is the token server's URL (the realm the registry names in its
// Bearer challenges); empty without Token.
func (r *Registry) TokenRealm() string {
	if r.token == nil {
		return ""
	}
	return r.token.realm()
}

// TokenService is the service the registry names in its Bearer challenges
// and expects as the tokens' audience; empty without Token.
func (r *Registry) TokenService() string {
	if r.token == nil {
		return ""
	}
	return r.token.service
}

// TokenRequests returns the requests the token server answered, in order,
// except those the fixture made itself (Push, PushIndex, Do, Manifest,
// Blob), so tests can count what the code under test asked for.
func (r *Registry) TokenRequests() []TokenRequest {
	if r.token == nil {
		return nil
	}
	return r.token.recorded()
}

// ResetTokenRequests forgets the recorded token requests.
func (r *Registry) ResetTokenRequests() {
	if r.token != nil {
		r.token.reset()
	}
}
