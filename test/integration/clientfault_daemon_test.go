package integration

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/registrytest"
	"github.com/hullrt/hull/internal/testimage"
)

// hullctlProc is a hullctl run in the background whose stderr the test
// reads line by line as it comes.
type hullctlProc struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	lines  chan string // stderr, closed at its end
	mu     sync.Mutex
	stderr []string
	done   chan error
}

func startHullctl(t *testing.T, args ...string) *hullctlProc {
	t.Helper()
	bin := hulltest.Build(t, "hullctl", "github.com/hullrt/hull/cmd/hullctl")
	p := &hullctlProc{cmd: exec.Command(bin, args...), lines: make(chan string, 100), done: make(chan error, 1)}
	p.cmd.Stdout = &p.stdout
	errPipe, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr = append(p.stderr, sc.Text())
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		close(p.lines)
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.lines
	})
	return p
}

// waitLine waits for a line of stderr that starts with prefix.
func (p *hullctlProc) waitLine(t *testing.T, prefix string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("hullctl ended without printing %q; stderr:\n%s", prefix, p.errText())
			}
			if strings.HasPrefix(l, prefix) {
				return
			}
		case <-deadline:
			t.Fatalf("hullctl did not print %q within %s; stderr:\n%s", prefix, timeout, p.errText())
		}
	}
}

// wait waits for hullctl to exit and returns its error.
func (p *hullctlProc) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	go func() {
		for range p.lines {
		}
	}()
	select {
	case err := <-p.done:
		return err
	case <-time.After(timeout):
		t.Fatalf("hullctl did not end within %s; stderr:\n%s", timeout, p.errText())
		return nil
	}
}

func (p *hullctlProc) errText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.stderr, "\n")
}

// deadSocket is a socket file nobody listens on, as a hulld that was
// killed leaves behind.
func deadSocket(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "hull.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	return path
}

// TestClientFaultNoDaemonGivesUp runs hullctl against sockets nobody
// listens on: it says that it waits and why, gives up after
// --connect-timeout and names the socket in its error.
func TestClientFaultNoDaemonGivesUp(t *testing.T) {
	const limit = 2 * time.Second
	for _, tc := range []struct {
		name, sock, why string
		args            []string
	}{
		{"ls, no socket", filepath.Join(t.TempDir(), "hull.sock"), "no such file or directory", []string{"images", "ls"}},
		{"ls, refused", deadSocket(t), "connection refused", []string{"images", "ls"}},
		{"pull and unpack, refused", deadSocket(t), "connection refused", []string{"images", "pull", "--plain", "--plain-http", "127.0.0.1:1/app:1"}},
		{"pull, no socket", filepath.Join(t.TempDir(), "hull.sock"), "no such file or directory", []string{"images", "pull", "--plain", "--plain-http", "--skip-unpack", "127.0.0.1:1/app:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			p := startHullctl(t, append([]string{"--address", tc.sock, "--connect-timeout", limit.String()}, tc.args...)...)
			err := p.wait(t, limit+30*time.Second)
			took := time.Since(start)
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("hullctl ended with %v, want exit status 1", err)
			}
			want := []string{
				"waiting for hulld at " + tc.sock + " (" + tc.why + ")...",
				"hullctl: hulld is not answering on " + tc.sock + " (" + tc.why + "): is it running? see systemctl status hull",
			}
			if got := p.errText(); got != strings.Join(want, "\n") {
				t.Errorf("stderr:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
			}
			if took < limit || took > limit+10*time.Second {
				t.Errorf("gave up after %s, want about --connect-timeout %s", took, limit)
			}
		})
	}
}

// TestClientFaultPullWaitsForHulldToStart starts a pull while hulld is not
// running and hulld after the pull said it waits for it: the pull goes on
// and completes.
func TestClientFaultPullWaitsForHulldToStart(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	reg.Push(t, "late/app", "1", smallImage("late"))
	ref := reg.Host() + "/late/app:1"
	dir := t.TempDir()
	// Where hulltest.Start puts the socket of a hulld over dir.
	sock := filepath.Join(dir, "state", "hull.sock")

	p := startHullctl(t, "--address", sock, "--connect-timeout", "2m", "images", "pull", "--plain", "--plain-http", ref)
	p.waitLine(t, "waiting for hulld at "+sock+" (no such file or directory)...", 30*time.Second)
	d := hulltest.Start(t, hulltest.Options{Dir: dir})
	if err := p.wait(t, 2*time.Minute); err != nil {
		t.Fatalf("pull once hulld started: %v\nstdout:\n%s\nstderr:\n%s", err, p.stdout.String(), p.errText())
	}
	if out := p.stdout.String(); !strings.Contains(out, ref+": pulled ") {
		t.Errorf("pull printed:\n%s", out)
	}
	h := newHullctl(t, d)
	if ls := h.ok(t, "images", "ls", "-q"); !strings.Contains(ls, ref) {
		t.Fatalf("image missing after the pull:\n%s", ls)
	}
}

// gatedRegistry is a proxy in front of a registry that holds the first
// download of one blob halfway until the test opens the gate.
type gatedRegistry struct {
	srv      *httptest.Server
	blob     digest.Digest
	half     int64
	reached  chan struct{} // closed when the download is held
	gate     chan struct{} // closed by the test to let it go on
	once     sync.Once
	requests sync.Map // "GET path range" -> true
}

func newGatedRegistry(t *testing.T, reg *registrytest.Registry, blob digest.Digest, half int64) *gatedRegistry {
	u, err := url.Parse(reg.URL())
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedRegistry{blob: blob, half: half, reached: make(chan struct{}), gate: make(chan struct{})}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.FlushInterval = -1
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.requests.Store(r.Method+" "+r.URL.Path+" "+r.Header.Get("Range"), true)
		held := false
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+blob.String()) && r.Header.Get("Range") == "" {
			g.once.Do(func() { held = true })
		}
		if held {
			w = &gatedWriter{ResponseWriter: w, g: g}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		g.open()
		g.srv.Close()
	})
	return g
}

func (g *gatedRegistry) open() {
	select {
	case <-g.gate:
	default:
		close(g.gate)
	}
}

func (g *gatedRegistry) host() string { return strings.TrimPrefix(g.srv.URL, "http://") }

// gatedWriter passes a body on until half of it is out, then holds.
type gatedWriter struct {
	http.ResponseWriter
	g *gatedRegistry
	n int64
}

func (w *gatedWriter) Write(b []byte) (int, error) {
	if w.n < w.g.half && w.n+int64(len(b)) >= w.g.half {
		k := w.g.half - w.n
		n, err := w.ResponseWriter.Write(b[:k])
		w.n += int64(n)
		if err != nil {
			return n, err
		}
		w.Flush()
		close(w.g.reached)
		<-w.g.gate
		m, err := w.ResponseWriter.Write(b[k:])
		w.n += int64(m)
		return n + m, err
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

func (w *gatedWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// TestClientFaultPullSurvivesRestart kills hulld while a pull streams a
// layer into it, and starts it again once the pull has said it waits for
// it: the pull resumes the layer and completes.
func TestClientFaultPullSurvivesRestart(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	data := make([]byte, 8<<20)
	rand.Read(data)
	layer := testimage.MakeLayer([]testimage.File{{Name: "big", Data: data}}, testimage.Uncompressed)
	img := testimage.NewLayers(testimage.HostPlatform(), []string{"/x"}, layer)
	reg.Push(t, "restart/app", "1", img)
	blob := img.Layers[0].Desc
	g := newGatedRegistry(t, reg, blob.Digest, blob.Size/2)
	ref := g.host() + "/restart/app:1"

	dir := t.TempDir()
	d := hulltest.Start(t, hulltest.Options{Dir: dir, Config: noStartupGC})
	p := startHullctl(t, "--address", d.Address, "--connect-timeout", "2m", "images", "pull", "--plain", "--plain-http", "--skip-unpack", ref)
	select {
	case <-g.reached:
	case err := <-p.done:
		t.Fatalf("pull ended before the layer was half down: %v\n%s", err, p.errText())
	case <-time.After(time.Minute):
		t.Fatalf("the layer's download did not begin; stderr:\n%s", p.errText())
	}
	// The registry has sent half the layer; hulld must have stored some
	// of it before it dies, or there is nothing to resume.
	hulltest.Eventually(t, 30*time.Second, "part of the layer in an ingest of hulld", func() error {
		out, err := d.CtrErr(nil, "content", "active")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
			if f := strings.Fields(line); len(f) >= 2 && strings.TrimRight(f[1], "0.B") != "" {
				return nil
			}
		}
		return fmt.Errorf("no ingest holds data yet:\n%s", out)
	})
	// hulld dies with part of the layer in an ingest, and the rest of it
	// arrives at a pull that has no daemon.
	d.Kill()
	g.open()
	// The first notice's reason depends on where the kill caught hullctl
	// (a refused dial, or a connection reset before gRPC's preface); that
	// it waits is what counts.
	p.waitLine(t, "waiting for hulld at "+d.Address+" (", 30*time.Second)
	d = hulltest.Start(t, hulltest.Options{Dir: dir, Config: noStartupGC})
	if err := p.wait(t, 2*time.Minute); err != nil {
		t.Fatalf("pull across the restart: %v\nstdout:\n%s\nstderr:\n%s", err, p.stdout.String(), p.errText())
	}
	h := newHullctl(t, d)
	if ls := h.ok(t, "images", "ls", "-q"); !strings.Contains(ls, ref) {
		t.Fatalf("image missing after the pull:\n%s", ls)
	}
	got := h.ok(t, "content", "get", blob.Digest.String())
	if digest.FromString(got) != blob.Digest {
		t.Fatalf("the layer stored is not the layer pushed")
	}
	var ranged []string
	g.requests.Range(func(k, _ any) bool {
		if s := k.(string); strings.Contains(s, blob.Digest.String()) && strings.Contains(s, "bytes=") {
			ranged = append(ranged, s)
		}
		return true
	})
	if len(ranged) == 0 {
		t.Errorf("the layer was fetched again from the start, not resumed")
	}
}
