package streaming

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
)

// fakeRuntime answers exec with a line naming what it ran; attach waits
// for its context and reports that it ended.
type fakeRuntime struct {
	attachEnded chan struct{}
}

func (f *fakeRuntime) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	fmt.Fprintf(out, "ran %s in %s", strings.Join(cmd, " "), id)
	return nil
}

func (f *fakeRuntime) Attach(ctx context.Context, id string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	fmt.Fprintf(out, "attached\n")
	<-ctx.Done()
	close(f.attachEnded)
	return nil
}

func (f *fakeRuntime) PortForward(ctx context.Context, id string, port int32, stream io.ReadWriteCloser) error {
	return errors.New("not here")
}

func newServer(t *testing.T, cfg Config) (*Server, *fakeRuntime) {
	t.Helper()
	rt := &fakeRuntime{attachEnded: make(chan struct{})}
	s, err := New(cfg, rt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, rt
}

// spdyConnect upgrades a request for u to SPDY as kubectl's and crictl's
// client does, with the v4 remote command protocol.
func spdyConnect(t *testing.T, u string, tlsConfig *tls.Config) (httpstream.Connection, error) {
	t.Helper()
	rt, err := spdy.NewRoundTripper(tlsConfig)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(httpstream.HeaderProtocolVersion, remotecommand.StreamProtocolV4Name)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	conn, err := rt.NewConnection(resp)
	if err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("status %d: %w", resp.StatusCode, err)
	}
	return conn, nil
}

// stdoutOf opens the error and stdout streams the server waits for and
// returns stdout's stream.
func stdoutOf(t *testing.T, conn httpstream.Connection) io.Reader {
	t.Helper()
	for _, typ := range []string{remotecommand.StreamTypeError, remotecommand.StreamTypeStdout} {
		h := http.Header{}
		h.Set(remotecommand.StreamType, typ)
		st, err := conn.CreateStream(h)
		if err != nil {
			t.Fatal(err)
		}
		if typ == remotecommand.StreamTypeStdout {
			return st
		}
	}
	return nil
}

// execOnce runs an exec URL and returns what came on stdout.
func execOnce(t *testing.T, u string, tlsConfig *tls.Config) (string, error) {
	t.Helper()
	conn, err := spdyConnect(t, u, tlsConfig)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	out, err := io.ReadAll(stdoutOf(t, conn))
	return string(out), err
}

func TestDefaultsAreLoopback(t *testing.T) {
	s, _ := newServer(t, Config{})
	host, port, err := net.SplitHostPort(s.URL().Host)
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() || port == "0" || s.URL().Scheme != "http" {
		t.Fatalf("default server URL %s", s.URL())
	}
}

func TestExecURLServesOnce(t *testing.T) {
	s, _ := newServer(t, Config{})
	resp, err := s.GetExec(&runtime.ExecRequest{ContainerId: "c1", Cmd: []string{"echo", "hi"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(resp.Url)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "http" || u.Host != s.URL().Host || !strings.HasPrefix(u.Path, "/exec/") || strings.HasPrefix(u.Host, "127.0.0.1:0") {
		t.Fatalf("exec URL %s", resp.Url)
	}
	out, err := execOnce(t, resp.Url, nil)
	if err != nil || out != "ran echo hi in c1" {
		t.Fatalf("exec: %q %v", out, err)
	}
	if _, err := execOnce(t, resp.Url, nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("second use of the URL: %v", err)
	}
	// The library's checks stand: tty and stderr cannot go together.
	if _, err := s.GetExec(&runtime.ExecRequest{ContainerId: "c1", Tty: true, Stderr: true}); err == nil {
		t.Fatal("GetExec took tty with stderr")
	}
	for _, get := range []func() (string, error){
		func() (string, error) {
			r, err := s.GetAttach(&runtime.AttachRequest{ContainerId: "c1", Stdout: true})
			return r.GetUrl(), err
		},
		func() (string, error) {
			r, err := s.GetPortForward(&runtime.PortForwardRequest{PodSandboxId: "p1", Port: []int32{80}})
			return r.GetUrl(), err
		},
	} {
		if u, err := get(); err != nil || !strings.HasPrefix(u, s.URL().String()+"/") {
			t.Fatalf("URL %q %v", u, err)
		}
	}
}

func TestTLSSelfSigned(t *testing.T) {
	s, _ := newServer(t, Config{TLS: true})
	if s.URL().Scheme != "https" {
		t.Fatalf("URL %s", s.URL())
	}
	resp, err := s.GetExec(&runtime.ExecRequest{ContainerId: "c2", Cmd: []string{"id"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.Url, "https://127.0.0.1:") {
		t.Fatalf("exec URL %s", resp.Url)
	}
	// The client trusts the server's own certificate, and nothing else:
	// it must verify for the address.
	c, err := tls.Dial("tcp", s.URL().Host, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	cert := c.ConnectionState().PeerCertificates[0]
	c.Close()
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1"}); err != nil {
		t.Fatalf("self-signed certificate does not verify for 127.0.0.1: %v", err)
	}
	out, err := execOnce(t, resp.Url, &tls.Config{RootCAs: pool})
	if err != nil || out != "ran id in c2" {
		t.Fatalf("exec over TLS: %q %v", out, err)
	}
	// Without trusting it, the handshake fails.
	resp, _ = s.GetExec(&runtime.ExecRequest{ContainerId: "c2", Cmd: []string{"id"}, Stdout: true})
	if _, err := execOnce(t, resp.Url, &tls.Config{}); err == nil {
		t.Fatal("exec verified an untrusted certificate")
	}
}

func TestTLSCertFiles(t *testing.T) {
	cert, err := selfSigned("localhost", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	s, _ := newServer(t, Config{TLS: true, CertFile: certFile, KeyFile: keyFile})
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	c, err := tls.Dial("tcp", s.URL().Host, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("handshake with the configured certificate: %v", err)
	}
	if c.ConnectionState().NegotiatedProtocol == "h2" {
		t.Fatal("HTTP/2 offered: upgrades need HTTP/1.1")
	}
	c.Close()
}

func TestTakenPortFailsNew(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	_, err = New(Config{Port: port}, &fakeRuntime{})
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "127.0.0.1:"+port) {
		t.Fatalf("New on a taken port: %v", err)
	}
}

func TestBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Port: "http"},
		{Port: "70000"},
		{Port: "-1"},
		{Port: "08"},
		{TLS: true, CertFile: "/nonexistent/cert.pem"},
		{TLS: true, CertFile: "/nonexistent/cert.pem", KeyFile: "/nonexistent/key.pem"},
		{CertFile: "c", KeyFile: "k"},
	} {
		if _, err := New(cfg, &fakeRuntime{}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("New(%+v): %v", cfg, err)
		}
	}
	if _, err := New(Config{}, nil); !errdefs.IsInvalidArgument(err) {
		t.Errorf("New without a runtime: %v", err)
	}
}

// TestCloseEndsUpgradedStreams: an attach in progress ends with Close; its
// runtime call sees its context end.
func TestCloseEndsUpgradedStreams(t *testing.T) {
	s, rt := newServer(t, Config{})
	resp, err := s.GetAttach(&runtime.AttachRequest{ContainerId: "c3", Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := spdyConnect(t, resp.Url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	out := stdoutOf(t, conn)
	buf := make([]byte, len("attached\n"))
	if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "attached\n" {
		t.Fatalf("attach output %q %v", buf, err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return with an attach in progress")
	}
	select {
	case <-rt.attachEnded:
	default:
		t.Fatal("Close returned before the runtime's attach ended")
	}
	if _, err := net.Dial("tcp", s.URL().Host); err == nil {
		t.Fatal("still listening after Close")
	}
}
