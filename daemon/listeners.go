package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"expvar"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// serveDebug serves pprof and expvar on the debug socket, for profiling a
// live daemon (`go tool pprof unix:...`) and reading its memory statistics
// (/debug/vars: expvar's own cmdline and memstats, the set any Go program
// publishes); it returns a stop func.
func (d *Daemon) serveDebug() (func(), error) {
	c := d.cfg.Debug
	if c.Address == "" {
		return func() {}, nil
	}
	lis, err := listenUnix(c.Address, c.UID, c.GID)
	if err != nil {
		return nil, fmt.Errorf("debug socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/debug/vars", expvar.Handler())
	srv := &http.Server{Handler: mux}
	go srv.Serve(lis)
	d.log.Info("debug server listening", "address", c.Address)
	return func() { srv.Close(); removeSocket(lis) }, nil
}

// tcpListener opens grpc.tcp_address, with TLS when a certificate is
// configured and client verification when a CA is; nil when unset.
func (d *Daemon) tcpListener() (net.Listener, []grpc.ServerOption, error) {
	g := d.cfg.GRPC
	if g.TCPAddress == "" {
		return nil, nil, nil
	}
	var opts []grpc.ServerOption
	if g.TCPTLSCert != "" || g.TCPTLSKey != "" {
		cert, err := tls.LoadX509KeyPair(g.TCPTLSCert, g.TCPTLSKey)
		if err != nil {
			return nil, nil, fmt.Errorf("grpc.tcp_tls_cert %s / tcp_tls_key %s: %w", g.TCPTLSCert, g.TCPTLSKey, err)
		}
		tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if g.TCPTLSCA != "" {
			pem, err := os.ReadFile(g.TCPTLSCA)
			if err != nil {
				return nil, nil, fmt.Errorf("grpc.tcp_tls_ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, nil, fmt.Errorf("grpc.tcp_tls_ca %s holds no PEM certificate", g.TCPTLSCA)
			}
			tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	lis, err := net.Listen("tcp", g.TCPAddress)
	if err != nil {
		return nil, nil, fmt.Errorf("grpc.tcp_address %s: %w", g.TCPAddress, err)
	}
	return lis, opts, nil
}
