package hosts

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

const (
	// DefaultConfigDir is where hull looks for registry host directories
	// unless told otherwise. Configure does not use it by itself: callers
	// pass it in Options so that tests and other tools can point elsewhere.
	DefaultConfigDir = "/etc/hull/certs.d"
	// DefaultDialTimeout is the dial timeout of hosts that set none.
	DefaultDialTimeout = 30 * time.Second
	// defaultDir is containerd's catch-all host directory.
	defaultDir = "_default"
	// configName is the file in a host directory.
	configName = "hosts.toml"
	// dockerHub is the registry name whose API is served elsewhere.
	dockerHub       = "docker.io"
	dockerHubServer = "registry-1.docker.io"
)

// Options say where to find host configuration and what to assume without
// one.
type Options struct {
	// ConfigDir holds one directory per registry ("docker.io",
	// "127.0.0.1:5000", "_default"). Empty means no configuration at all,
	// only defaults.
	ConfigDir string
	// PlainHTTP lets a loopback registry (localhost, 127.0.0.1, ::1) whose
	// server is not configured be reached over http instead of https.
	PlainHTTP bool
	// DefaultDialTimeout is the dial timeout of hosts that set none; 0
	// means DefaultDialTimeout.
	DefaultDialTimeout time.Duration
}

// Configure returns the hosts to try for registry (host[:port] as in an
// image reference), in order: the mirrors of its hosts.toml in file order,
// then its server. The configuration is <ConfigDir>/<registry>/hosts.toml,
// or <ConfigDir>/_default/hosts.toml when the registry has none; without
// either, the registry itself is the only host. Certificate files lying in
// the registry's directory (*.crt CAs, *.cert/*.key client pairs, as docker
// lays them out) apply to all of its hosts.
//
// Unlike containerd, which logs a broken hosts.toml and carries on without
// it, every mistake in the configuration is an InvalidArgument error naming
// the file, line and key: pulling through an unintended host or with
// unintended trust is worse than not pulling.
func Configure(registry string, opts Options) ([]Host, error) {
	if err := validRegistry(registry); err != nil {
		return nil, err
	}
	timeout := opts.DefaultDialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}

	var (
		cfg      *fileConfig
		certsDir string
	)
	if opts.ConfigDir != "" {
		regDir := filepath.Join(opts.ConfigDir, registry)
		defDir := filepath.Join(opts.ConfigDir, defaultDir)
		regExists, err := isDir(regDir)
		if err != nil {
			return nil, err
		}
		for _, dir := range []string{regDir, defDir} {
			file := filepath.Join(dir, configName)
			data, err := os.ReadFile(file)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("reading registry host configuration: %w", err)
			}
			if cfg, err = parseFile(file, data); err != nil {
				return nil, err
			}
			break
		}
		// Loose certificates belong to the directory that stands for
		// the registry: its own, or _default when it has none.
		if regExists {
			certsDir = regDir
		} else if defExists, err := isDir(defDir); err != nil {
			return nil, err
		} else if defExists {
			certsDir = defDir
		}
	}
	if cfg == nil {
		cfg = &fileConfig{server: entry{capabilities: CapabilityPull | CapabilityResolve | CapabilityPush}}
	}

	var loose looseCerts
	if certsDir != "" {
		var err error
		if loose, err = readCertDir(certsDir); err != nil {
			return nil, err
		}
	}

	out := make([]Host, 0, len(cfg.mirrors)+1)
	for _, m := range cfg.mirrors {
		h, err := m.host(true, timeout, loose)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	server := cfg.server
	if server.url == nil {
		server.url = defaultServer(registry, opts.PlainHTTP)
	}
	h, err := server.host(false, timeout, loose)
	if err != nil {
		return nil, err
	}
	return append(out, h), nil
}

// defaultServer is where registry's API is when nothing says otherwise.
func defaultServer(registry string, plainHTTP bool) *url.URL {
	u := &url.URL{Scheme: "https", Host: registry, Path: "/v2"}
	if registry == dockerHub {
		u.Host = dockerHubServer
	}
	if plainHTTP && isLoopback(registry) {
		u.Scheme = "http"
	}
	return u
}

// host builds the Host for an entry, reading its certificates.
func (e *entry) host(mirror bool, timeout time.Duration, loose looseCerts) (Host, error) {
	h := Host{
		Scheme:       e.url.Scheme,
		Host:         e.url.Host,
		Path:         e.url.Path,
		Capabilities: e.capabilities,
		Header:       e.header.Clone(),
		DialTimeout:  timeout,
		Mirror:       mirror,
		Proxy:        e.proxy,
		ConfigFile:   e.file,
		SkipVerify:   e.skipVerify,
	}
	if e.dialTimeout > 0 {
		h.DialTimeout = e.dialTimeout
	}
	type ca struct{ file, where string }
	var cas []ca
	for _, f := range e.caFiles {
		cas = append(cas, ca{f, e.where(e.caLine, "ca")})
	}
	for _, f := range loose.cas {
		if !slices.Contains(e.caFiles, f) {
			cas = append(cas, ca{f, filepath.Dir(f)})
		}
	}
	type pair struct {
		files [2]string
		where string
	}
	var pairs []pair
	for _, p := range e.clientPairs {
		pairs = append(pairs, pair{p, e.where(e.clientLine, "client")})
	}
	for _, p := range loose.pairs {
		if !slices.Contains(e.clientPairs, p) {
			pairs = append(pairs, pair{p, filepath.Dir(p[0])})
		}
	}
	for _, c := range cas {
		h.CAFiles = append(h.CAFiles, c.file)
	}
	for _, p := range pairs {
		h.ClientCertFiles = append(h.ClientCertFiles, p.files)
	}
	if h.Scheme != "https" {
		return h, nil
	}

	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: e.skipVerify} //nolint:gosec // skip_verify is the operator's explicit choice
	// The identity covers what the configuration is made of, the files'
	// contents rather than their names: a certificate replaced in place
	// is another configuration.
	id := sha256.New()
	fmt.Fprintf(id, "skip_verify=%t\n", e.skipVerify)
	if len(cas) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			// Without system roots (no CA bundle installed) the
			// configured CAs are still worth trusting on their own.
			pool = x509.NewCertPool()
		}
		for _, c := range cas {
			data, err := os.ReadFile(c.file)
			if err != nil {
				return Host{}, fmt.Errorf("%s: CA file %q for %s: %v: %w", c.where, c.file, h.URL(), err, errdefs.ErrInvalidArgument)
			}
			if !pool.AppendCertsFromPEM(data) {
				return Host{}, fmt.Errorf("%s: CA file %q for %s has no PEM certificate: %w", c.where, c.file, h.URL(), errdefs.ErrInvalidArgument)
			}
			fmt.Fprintf(id, "ca %d\n", len(data))
			id.Write(data)
		}
		cfg.RootCAs = pool
	}
	for _, p := range pairs {
		cert, err := loadKeyPair(p.files)
		if err != nil {
			return Host{}, fmt.Errorf("%s: client certificate for %s: %v: %w", p.where, h.URL(), err, errdefs.ErrInvalidArgument)
		}
		cfg.Certificates = append(cfg.Certificates, cert)
		// The key is the certificate's (X509KeyPair checked it).
		for _, der := range cert.Certificate {
			fmt.Fprintf(id, "client %d\n", len(der))
			id.Write(der)
		}
	}
	h.TLS = cfg
	h.TLSID = hex.EncodeToString(id.Sum(nil))
	return h, nil
}

// where names the place in hosts.toml an entry's key is set, for errors
// found after parsing (a CA file that is missing, say).
func (e *entry) where(at string, key string) string {
	s := e.file
	if at != "" {
		s += ":" + at
	}
	if e.name != "" {
		return fmt.Sprintf("%s: %s key %q", s, e.name, key)
	}
	return fmt.Sprintf("%s: key %q", s, key)
}

// loadKeyPair loads a [cert, key] pair; an empty key means the key is in
// the certificate file, as containerd allows.
func loadKeyPair(files [2]string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(files[0])
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM := certPEM
	keyFile := files[0]
	if files[1] != "" {
		keyFile = files[1]
		if keyPEM, err = os.ReadFile(files[1]); err != nil {
			return tls.Certificate{}, err
		}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// X509KeyPair's errors do not say which file; they never
		// include key material.
		return tls.Certificate{}, fmt.Errorf("certificate %q with key %q: %v", files[0], keyFile, err)
	}
	return cert, nil
}

// looseCerts are the certificate files found directly in a host directory.
type looseCerts struct {
	cas   []string
	pairs [][2]string
}

// readCertDir finds docker's certificate layout in dir: every *.crt is a
// CA, every *.cert needs the *.key of the same name and vice versa.
func readCertDir(dir string) (looseCerts, error) {
	var lc looseCerts
	entries, err := os.ReadDir(dir)
	if err != nil {
		return lc, fmt.Errorf("reading registry host directory: %w", err)
	}
	names := map[string]bool{}
	for _, e := range entries {
		if e.Type().IsRegular() || e.Type()&fs.ModeSymlink != 0 {
			names[e.Name()] = true
		}
	}
	for _, e := range entries {
		name := e.Name()
		if !names[name] {
			continue
		}
		full := filepath.Join(dir, name)
		switch filepath.Ext(name) {
		case ".crt":
			lc.cas = append(lc.cas, full)
		case ".cert":
			key := strings.TrimSuffix(name, ".cert") + ".key"
			if !names[key] {
				return lc, fmt.Errorf("client certificate %q has no key file %q next to it: %w", full, filepath.Join(dir, key), errdefs.ErrInvalidArgument)
			}
			lc.pairs = append(lc.pairs, [2]string{full, filepath.Join(dir, key)})
		case ".key":
			cert := strings.TrimSuffix(name, ".key") + ".cert"
			if !names[cert] {
				return lc, fmt.Errorf("client key %q has no certificate file %q next to it: %w", full, filepath.Join(dir, cert), errdefs.ErrInvalidArgument)
			}
		}
	}
	return lc, nil
}

// validRegistry keeps the registry name from reaching outside ConfigDir
// (it becomes a directory name) and rejects what is not host[:port].
func validRegistry(registry string) error {
	if registry == "" {
		return fmt.Errorf("registry host must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	if registry == defaultDir || strings.ContainsAny(registry, "/\\@?#% \t\r\n\x00") {
		return fmt.Errorf("registry host %q is not host[:port]: %w", registry, errdefs.ErrInvalidArgument)
	}
	u, err := url.Parse("https://" + registry)
	if err != nil || u.Host != registry || u.Hostname() == "" || strings.Trim(u.Hostname(), ".") == "" {
		return fmt.Errorf("registry host %q is not host[:port]: %w", registry, errdefs.ErrInvalidArgument)
	}
	if p := u.Port(); p != "" && !validPort(p) {
		return fmt.Errorf("registry host %q has an invalid port: %w", registry, errdefs.ErrInvalidArgument)
	}
	return nil
}

// isLoopback reports whether registry is on this machine, where plain http
// exposes nothing on the network.
func isLoopback(registry string) bool {
	host := registry
	if h, _, err := net.SplitHostPort(registry); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func isDir(p string) (bool, error) {
	fi, err := os.Stat(p)
	switch {
	case err == nil:
		return fi.IsDir(), nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("reading registry host configuration: %w", err)
	}
}
