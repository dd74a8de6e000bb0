// Package streaming serves the CRI's exec, attach and port-forward
// streams for kubectl and crictl.
//
// The CRI's Exec, Attach and PortForward calls do not stream themselves:
// they return a URL on this server, which the client (the kubelet's proxy,
// crictl) then opens with an upgrade to SPDY or WebSocket. The protocols
// and the URLs come from k8s.io/cri-streaming: each URL carries a random
// token for one request, usable once and only within a minute of its
// making (the library's request cache; at most 1000 may wait at a time),
// so that a URL that leaks is worth nothing. This package adds what the
// library leaves to its user: listening (at once, so that the URL's port
// is known and a taken port is an error of New), TLS with a self-signed
// certificate when none is given, shutting down connections that were
// upgraded, and the pod-side dial of a port-forward.
//
// The server listens on the loopback address unless told otherwise: it
// runs commands in containers for whoever reaches it with a token, and the
// kubelet, which proxies the API server's streams, runs on the same host.
package streaming

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"
)

// Defaults of Config.
const (
	DefaultAddress     = "127.0.0.1"
	DefaultPort        = "0"
	DefaultIdleTimeout = 4 * time.Hour // containerd's stream_idle_timeout
)

// Config configures the streaming server.
type Config struct {
	Address     string        // ["127.0.0.1": never all interfaces by default]
	Port        string        // ["0": a free port]
	IdleTimeout time.Duration // [4h, containerd's stream_idle_timeout]
	TLS         bool          // serve https
	// CertFile and KeyFile are the PEM certificate and key to serve with
	// TLS; both empty makes a self-signed certificate for the address at
	// start.
	CertFile, KeyFile string
}

// Server is a running streaming server.
type Server struct {
	lib  streaming.Server
	http *http.Server
	ln   *trackingListener

	// ctx ends the requests' contexts on Close: after the upgrade the
	// http.Server no longer knows of a connection.
	ctx      context.Context
	cancel   context.CancelFunc
	handlers sync.WaitGroup
	served   chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// New listens at once (so the URL is known and a taken port fails New with
// an error naming it) and serves rt.
func New(cfg Config, rt streaming.Runtime) (*Server, error) {
	if rt == nil {
		return nil, fmt.Errorf("streaming: no runtime: %w", errdefs.ErrInvalidArgument)
	}
	if cfg.Address == "" {
		cfg.Address = DefaultAddress
	}
	if cfg.Port == "" {
		cfg.Port = DefaultPort
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if p, err := strconv.ParseUint(cfg.Port, 10, 16); err != nil || strconv.FormatUint(p, 10) != cfg.Port {
		return nil, fmt.Errorf("streaming: port %q is not a number from 0 to 65535: %w", cfg.Port, errdefs.ErrInvalidArgument)
	}
	var tlsConfig *tls.Config
	if cfg.TLS {
		cert, err := certificate(cfg)
		if err != nil {
			return nil, err
		}
		tlsConfig = &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
			// SPDY and WebSocket upgrade HTTP/1.1 connections; HTTP/2
			// cannot carry them.
			NextProtos: []string{"http/1.1"},
		}
	} else if cfg.CertFile != "" || cfg.KeyFile != "" {
		return nil, fmt.Errorf("streaming: certificate %q and key %q given without TLS: %w", cfg.CertFile, cfg.KeyFile, errdefs.ErrInvalidArgument)
	}
	hostPort := net.JoinHostPort(cfg.Address, cfg.Port)
	l, err := net.Listen("tcp", hostPort)
	if err != nil {
		return nil, fmt.Errorf("streaming: listen on %s: %w: %w", hostPort, errdefs.ErrUnavailable, err)
	}
	ln := &trackingListener{Listener: l, conns: map[net.Conn]struct{}{}}
	// The URL names the address as listened on, with the port taken.
	base := &url.URL{Scheme: "http", Host: l.Addr().String()}
	if tlsConfig != nil {
		base.Scheme = "https"
	}
	libCfg := streaming.DefaultConfig
	libCfg.Addr = l.Addr().String()
	libCfg.BaseURL = base
	libCfg.StreamIdleTimeout = cfg.IdleTimeout
	libCfg.TLSConfig = tlsConfig
	lib, err := streaming.NewServer(libCfg, rt)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("streaming: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{lib: lib, ln: ln, ctx: ctx, cancel: cancel, served: make(chan struct{})}
	s.http = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 30 * time.Second,
		// No HTTP/2 (see NextProtos).
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	go func() {
		defer close(s.served)
		if tlsConfig != nil {
			s.http.ServeTLS(ln, "", "")
			return
		}
		s.http.Serve(ln)
	}()
	return s, nil
}

// serveHTTP hands a request to the library, with a context that Close
// ends, and counts it so that Close can wait for it.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.handlers.Add(1)
	defer s.handlers.Done()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	s.lib.ServeHTTP(w, r.WithContext(ctx))
}

// URL is the server's base URL, with the port it listens on.
func (s *Server) URL() *url.URL {
	scheme := "http"
	if s.http.TLSConfig != nil {
		scheme = "https"
	}
	return &url.URL{Scheme: scheme, Host: s.ln.Addr().String()}
}

// GetExec validates req and returns the single-use URL that runs it.
func (s *Server) GetExec(req *runtime.ExecRequest) (*runtime.ExecResponse, error) {
	return s.lib.GetExec(req)
}

// GetAttach validates req and returns the single-use URL that attaches.
func (s *Server) GetAttach(req *runtime.AttachRequest) (*runtime.AttachResponse, error) {
	return s.lib.GetAttach(req)
}

// GetPortForward validates req and returns the single-use URL that
// forwards its ports.
func (s *Server) GetPortForward(req *runtime.PortForwardRequest) (*runtime.PortForwardResponse, error) {
	return s.lib.GetPortForward(req)
}

// Close stops listening, ends every connection, upgraded ones too, and
// waits for the requests' handlers to return (the runtime's Exec and
// Attach see their context end).
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		err := s.http.Close()
		s.cancel()
		s.ln.closeAll()
		<-s.served
		s.handlers.Wait()
		if err != nil && !errors.Is(err, net.ErrClosed) {
			s.closeErr = fmt.Errorf("streaming: close: %w", err)
		}
	})
	return s.closeErr
}

// trackingListener remembers its open connections, for Close to end the
// ones net/http forgot when they were hijacked for an upgrade.
type trackingListener struct {
	net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, l: l}
	l.conns[tc] = struct{}{}
	return tc, nil
}

func (l *trackingListener) closeAll() {
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = map[net.Conn]struct{}{}
	l.mu.Unlock()
	for c := range conns {
		c.(*trackedConn).Conn.Close()
	}
}

type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// certificate loads the configured key pair or makes a self-signed one.
func certificate(cfg Config) (tls.Certificate, error) {
	switch {
	case cfg.CertFile != "" && cfg.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("streaming: load certificate %q and key %q: %w: %w", cfg.CertFile, cfg.KeyFile, errdefs.ErrInvalidArgument, err)
		}
		return cert, nil
	case cfg.CertFile != "" || cfg.KeyFile != "":
		return tls.Certificate{}, fmt.Errorf("streaming: certificate %q and key %q: both or neither: %w", cfg.CertFile, cfg.KeyFile, errdefs.ErrInvalidArgument)
	}
	return selfSigned(cfg.Address, time.Now())
}

// selfSigned makes a certificate, valid for a year, for address: an IP or
// a host name; for an unspecified address (all interfaces), for every
// address of the host's and its host name.
func selfSigned(address string, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("streaming: certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("streaming: certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "hull streaming server", Organization: []string{"hull"}},
		NotBefore:             now.Add(-time.Hour), // some clock skew
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // its own root, for clients that pin it
	}
	ip := net.ParseIP(address)
	switch {
	case ip != nil && ip.IsUnspecified():
		if host, err := os.Hostname(); err == nil {
			tmpl.DNSNames = append(tmpl.DNSNames, host)
		}
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("streaming: host addresses for the certificate: %w", err)
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				tmpl.IPAddresses = append(tmpl.IPAddresses, n.IP)
			}
		}
	case ip != nil:
		tmpl.IPAddresses = []net.IP{ip}
	default:
		tmpl.DNSNames = []string{address}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("streaming: self-signed certificate for %q: %w", address, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("streaming: self-signed certificate for %q: %w", address, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
