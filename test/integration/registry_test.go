package integration

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/registrytest"
	"github.com/hullrt/hull/internal/testimage"
)

// hullctl runs the hullctl built from this tree against d.
type hullctlRunner struct {
	bin string
	d   *hulltest.Daemon
}

func newHullctl(t *testing.T, d *hulltest.Daemon) hullctlRunner {
	return hullctlRunner{bin: hulltest.Build(t, "hullctl", "github.com/hullrt/hull/cmd/hullctl"), d: d}
}

func (h hullctlRunner) run(args ...string) (string, error) {
	cmd := exec.Command(h.bin, append([]string{"--address", h.d.Address}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (h hullctlRunner) ok(t *testing.T, args ...string) string {
	t.Helper()
	out, err := h.run(args...)
	if err != nil {
		t.Fatalf("hullctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (h hullctlRunner) fails(t *testing.T, wants []string, args ...string) string {
	t.Helper()
	out, err := h.run(args...)
	if err == nil {
		t.Fatalf("hullctl %s succeeded:\n%s", strings.Join(args, " "), out)
	}
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("hullctl %s: output does not mention %q:\n%s", strings.Join(args, " "), w, out)
		}
	}
	return out
}

// hostsDir writes hosts.toml for registry host into a fresh directory.
func hostsDir(t *testing.T, host, toml string) string {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, host), 0o755)
	if err := os.WriteFile(filepath.Join(dir, host, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func smallImage(tag string) *testimage.Image {
	return testimage.New([]string{"/bin/sh"}, []testimage.File{{Name: "tag.txt", Data: []byte(tag)}}, []testimage.File{{Name: "second", Data: []byte("layer 2 of " + tag)}})
}

func TestPullPlainHTTPAndPush(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	img := smallImage("plain")
	reg.Push(t, "test/app", "1", img)
	d := hulltest.Start(t, hulltest.Options{})
	h := newHullctl(t, d)
	ref := reg.Host() + "/test/app:1"
	out := h.ok(t, "images", "pull", "--plain", "--plain-http", ref)
	if !strings.Contains(out, "pulled "+img.Manifest.Desc.Digest.String()) || !strings.Contains(out, "done") {
		t.Fatalf("pull output:\n%s", out)
	}
	if ls := h.ok(t, "images", "ls", "-q"); !strings.Contains(ls, ref) {
		t.Fatalf("pulled image not listed:\n%s", ls)
	}
	// The same content as ctr would label it: the key names the host
	// without its port.
	host, _, _ := strings.Cut(reg.Host(), ":")
	if cl := h.ok(t, "content", "ls"); !strings.Contains(cl, "containerd.io/distribution.source."+host+"=test/app") {
		t.Fatalf("no distribution source labels:\n%s", cl)
	}
	// A second pull downloads nothing.
	out = h.ok(t, "images", "pull", "--plain", "--plain-http", ref)
	if strings.Contains(out, "downloading") || !strings.Contains(out, "exists") {
		t.Fatalf("second pull downloaded again:\n%s", out)
	}
	// Push to another repository: the registry mounts or takes the blobs,
	// and serves the same manifest.
	h.ok(t, "images", "push", "--plain", "--plain-http", reg.Host()+"/copy/app:2", ref)
	mt, data := reg.Manifest(t, "copy/app", "2")
	if mt == "" || string(data) != string(img.Manifest.Data) {
		t.Fatalf("pushed manifest %s differs", mt)
	}
	// Debian's ctr fetches what hull pushed.
	d.Ctr(t, nil, "-n", "ctrfetch", "content", "fetch", "--plain-http", reg.Host()+"/copy/app:2")
}

func TestPullMultiPlatform(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	idx, host, other := twoPlatforms()
	reg.PushIndex(t, "test/multi", "1", idx)
	d := hulltest.Start(t, hulltest.Options{})
	h := newHullctl(t, d)
	ref := reg.Host() + "/test/multi:1"
	h.ok(t, "-n", "one", "images", "pull", "--plain", "--plain-http", ref)
	cl := h.ok(t, "-n", "one", "content", "ls", "-q")
	if !strings.Contains(cl, host.Layers[0].Desc.Digest.String()) || strings.Contains(cl, other.Layers[0].Desc.Digest.String()) {
		t.Fatalf("default pull took the wrong platforms:\n%s", cl)
	}
	h.ok(t, "-n", "all", "images", "pull", "--plain", "--plain-http", "--all-platforms", ref)
	cl = h.ok(t, "-n", "all", "content", "ls", "-q")
	if !strings.Contains(cl, other.Layers[0].Desc.Digest.String()) {
		t.Fatalf("--all-platforms missed the other platform:\n%s", cl)
	}
}

func TestPullTLSClientCertAndCA(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{ClientCA: true})
	reg.Push(t, "secure/app", "1", smallImage("tls"))
	d := hulltest.Start(t, hulltest.Options{})
	h := newHullctl(t, d)
	ref := reg.Host() + "/secure/app:1"
	// Without the CA: the error names the host and says it is about TLS.
	empty := t.TempDir()
	h.fails(t, []string{reg.Host(), "certificate"}, "images", "pull", "--plain", "--hosts-dir", empty, ref)
	// A wrong CA: the error names the CA file that was trusted.
	other := registrytest.Start(t, registrytest.Options{TLS: true})
	dir := hostsDir(t, reg.Host(), fmt.Sprintf("server = %q\nca = %q\n", reg.URL(), other.CAFile))
	h.fails(t, []string{reg.Host(), other.CAFile}, "images", "pull", "--plain", "--hosts-dir", dir, ref)
	// CA but no client certificate: refused.
	dir = hostsDir(t, reg.Host(), fmt.Sprintf("server = %q\nca = %q\n", reg.URL(), reg.CAFile))
	h.fails(t, []string{reg.Host()}, "images", "pull", "--plain", "--hosts-dir", dir, ref)
	// Both: pulls.
	dir = hostsDir(t, reg.Host(), fmt.Sprintf("server = %q\nca = %q\nclient = [[%q, %q]]\n", reg.URL(), reg.CAFile, reg.ClientCertFile, reg.ClientKeyFile))
	h.ok(t, "images", "pull", "--plain", "--hosts-dir", dir, ref)
	// hosts check shows the files and a successful resolve.
	out := h.ok(t, "hosts", "check", "--hosts-dir", dir, ref)
	for _, want := range []string{reg.URL() + "/v2", reg.CAFile, reg.ClientCertFile, "[ok  ] resolve"} {
		if !strings.Contains(out, want) {
			t.Errorf("hosts check lacks %q:\n%s", want, out)
		}
	}
}

func TestPullBasicAuth(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{Htpasswd: map[string]string{"alice": "s3cret"}})
	reg.Push(t, "private/app", "1", smallImage("basic"))
	d := hulltest.Start(t, hulltest.Options{})
	h := newHullctl(t, d)
	ref := reg.Host() + "/private/app:1"
	out := h.fails(t, []string{reg.Host()}, "images", "pull", "--plain", "--plain-http", ref)
	if !strings.Contains(strings.ToLower(out), "credentials") && !strings.Contains(out, "--user") {
		t.Errorf("401 error does not say how to give credentials:\n%s", out)
	}
	out = h.fails(t, []string{reg.Host()}, "images", "pull", "--plain", "--plain-http", "--user", "alice:wrong", ref)
	if strings.Contains(out, "wrong") {
		t.Errorf("the password appears in the output:\n%s", out)
	}
	h.ok(t, "images", "pull", "--plain", "--plain-http", "--user", "alice:s3cret", ref)
}

func TestPullTokenAuth(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{Token: &registrytest.TokenOptions{Users: map[string]string{"bob": "pw"}}})
	reg.Push(t, "tok/app", "1", testimage.New(nil, testimage.ManyLayers(6)...))
	d := hulltest.Start(t, hulltest.Options{})
	h := newHullctl(t, d)
	reg.ResetTokenRequests()
	h.ok(t, "images", "pull", "--plain", "--plain-http", "--user", "bob:pw", reg.Host()+"/tok/app:1")
	reqs := reg.TokenRequests()
	if len(reqs) == 0 || len(reqs) > 2 {
		t.Fatalf("%d token requests for one pull of 8 blobs, want 1 or 2 (cached per scope): %+v", len(reqs), reqs)
	}
}

func TestPullThroughMirrorWithFallback(t *testing.T) {
	upstream := registrytest.Start(t, registrytest.Options{})
	mirror := registrytest.Start(t, registrytest.Options{ProxyRemoteURL: upstream.URL()})
	upstream.Push(t, "library/app", "1", smallImage("m1"))
	upstream.Push(t, "library/app", "2", smallImage("m2"))
	d := hulltest.Start(t, hulltest.Options{})
	h := newHullctl(t, d)
	// "registry.test" stands for docker.io: its hosts.toml sends pulls to
	// the mirror first, then to the upstream.
	dir := hostsDir(t, "registry.test", fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", upstream.URL(), mirror.URL()))
	h.ok(t, "images", "pull", "--plain", "--hosts-dir", dir, "registry.test/library/app:1")
	// The mirror served (and so cached) the image.
	if _, data := mirror.Manifest(t, "library/app", "1"); len(data) == 0 {
		t.Fatal("mirror did not cache the image")
	}
	if !strings.Contains(mirror.Log(), "/v2/library/app/manifests/1") {
		t.Fatalf("the pull did not go through the mirror:\n%.3000s", mirror.Log())
	}
	// With the mirror gone the pull falls back to the upstream, quickly.
	mirror.Stop()
	start := time.Now()
	h.ok(t, "images", "pull", "--plain", "--hosts-dir", dir, "registry.test/library/app:2")
	if el := time.Since(start); el > 20*time.Second {
		t.Fatalf("fallback took %s", el)
	}
}

func TestPullBadInput(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	reg.Push(t, "test/app", "1", smallImage("bad"))
	d := hulltest.Start(t, hulltest.Options{})
	h := newHullctl(t, d)
	h.fails(t, []string{"Bad/Ref"}, "images", "pull", "--plain-http", "Bad/Ref:1")
	h.fails(t, []string{"not found", reg.Host()}, "images", "pull", "--plain", "--plain-http", reg.Host()+"/test/missing:1")
	// A hosts.toml with an unknown key: the file, line and key.
	dir := hostsDir(t, reg.Host(), "server = \"http://"+reg.Host()+"\"\n[host.\"http://"+reg.Host()+"\"]\n  capabilites = [\"pull\"]\n")
	h.fails(t, []string{filepath.Join(dir, reg.Host(), "hosts.toml") + ":3", "capabilites"}, "images", "pull", "--plain", "--hosts-dir", dir, reg.Host()+"/test/app:1")
	// A mirror that accepts connections and never answers: the pull falls
	// through to the server after the first-byte timeout.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	dir = hostsDir(t, reg.Host(), fmt.Sprintf("server = %q\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", "http://"+reg.Host(), hang.Addr()))
	start := time.Now()
	h.ok(t, "images", "pull", "--plain", "--hosts-dir", dir, reg.Host()+"/test/app:1")
	if el := time.Since(start); el > 30*time.Second {
		t.Fatalf("a hanging mirror cost %s", el)
	}
	if ls := h.ok(t, "images", "ls", "-q"); strings.Count(ls, "\n") != 1 {
		t.Fatalf("images after the bad pulls:\n%s", ls)
	}
}

func TestCtrPullAndPushThroughHull(t *testing.T) {
	hulltest.RequireCtr(t)
	reg := registrytest.Start(t, registrytest.Options{})
	img := smallImage("ctr")
	reg.Push(t, "test/app", "1", img)
	d := hulltest.Start(t, hulltest.Options{})
	ref := reg.Host() + "/test/app:1"
	// ctr pulls client-side through hull's content, images and leases
	// services: content fetch is the pull without unpack.
	d.Ctr(t, nil, "content", "fetch", "--plain-http", ref)
	if ls := d.Ctr(t, nil, "images", "ls", "-q"); !strings.Contains(ls, ref) {
		t.Fatalf("ctr's pull did not record the image:\n%s", ls)
	}
	// images pull also unpacks, through hull's snapshots and diff
	// services; it must succeed.
	out := d.Ctr(t, nil, "images", "pull", "--plain-http", ref)
	if !strings.Contains(out, "done") || !strings.Contains(out, "unpacking") {
		t.Fatalf("ctr images pull did not fetch and unpack:\n%s", out)
	}
	// ctr pushes hull's image to another repository.
	d.Ctr(t, nil, "images", "tag", ref, reg.Host()+"/pushed/by-ctr:1")
	d.Ctr(t, nil, "images", "push", "--plain-http", reg.Host()+"/pushed/by-ctr:1")
	if _, data := reg.Manifest(t, "pushed/by-ctr", "1"); string(data) != string(img.Manifest.Data) {
		t.Fatal("ctr's push of hull's image differs")
	}
	// skopeo reads what hull pushes.
	h := newHullctl(t, d)
	h.ok(t, "images", "push", "--plain", "--plain-http", reg.Host()+"/pushed/by-hull:1", ref)
	sk, err := exec.Command("skopeo", "inspect", "--tls-verify=false", "--raw", "docker://"+reg.Host()+"/pushed/by-hull:1").CombinedOutput()
	if err != nil || string(sk) != string(img.Manifest.Data) {
		t.Fatalf("skopeo inspect of hull's push: %v\n%s", err, sk)
	}
	if sk, err := exec.Command("skopeo", "inspect", "--tls-verify=false", "docker://"+reg.Host()+"/pushed/by-hull:1").CombinedOutput(); err != nil || !strings.Contains(string(sk), img.Manifest.Desc.Digest.String()) {
		t.Fatalf("skopeo inspect: %v\n%s", err, sk)
	}
}

// TestKilledPullResumes kills hullctl in the middle of a pull and checks
// that no image is recorded and that pulling again completes it without
// downloading the blobs that were finished.
func TestKilledPullResumes(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	var layers []testimage.BuiltLayer
	for i := 0; i < 4; i++ {
		data := make([]byte, 16<<20)
		rand.Read(data)
		layers = append(layers, testimage.MakeLayer([]testimage.File{{Name: fmt.Sprintf("blob%d", i), Data: data}}, testimage.Uncompressed))
	}
	img := testimage.NewLayers(testimage.HostPlatform(), []string{"/x"}, layers...)
	reg.Push(t, "big/app", "1", img)
	d := hulltest.Start(t, hulltest.Options{})
	h := newHullctl(t, d)
	ref := reg.Host() + "/big/app:1"

	cmd := exec.Command(h.bin, "--address", d.Address, "images", "pull", "--plain", "--plain-http", "--max-concurrent-downloads", "1", ref)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	killed := false
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "layer-") && strings.Contains(sc.Text(), " done") {
			cmd.Process.Kill()
			killed = true
			break
		}
	}
	werr := cmd.Wait()
	if !killed {
		t.Fatalf("the pull finished before it could be killed: %v", werr)
	}
	if ee, ok := werr.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the killed pull ended with %v, not SIGKILL", werr)
	}
	if ls := h.ok(t, "images", "ls", "-q"); strings.Contains(ls, ref) {
		t.Fatalf("a killed pull recorded the image:\n%s", ls)
	}
	out := h.ok(t, "images", "pull", "--plain", "--plain-http", ref)
	if !strings.Contains(out, " exists") {
		t.Fatalf("the second pull downloaded every blob again:\n%s", out)
	}
	if ls := h.ok(t, "images", "ls", "-q"); !strings.Contains(ls, ref) {
		t.Fatalf("image missing after the resumed pull:\n%s", ls)
	}
}

func TestPullLayerKinds(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	files := func(s string) []testimage.File { return []testimage.File{{Name: s, Data: []byte(s)}} }
	img := testimage.NewLayers(testimage.HostPlatform(), []string{"/x"},
		testimage.MakeLayer(files("gzip"), testimage.Gzip),
		testimage.MakeLayer(files("zstd"), testimage.Zstd),
		testimage.MakeLayer(files("plain"), testimage.Uncompressed))
	reg.Push(t, "kinds/app", "1", img)
	many := testimage.New(nil, testimage.ManyLayers(20)...)
	reg.Push(t, "kinds/many", "1", many)
	d := hulltest.Start(t, hulltest.Options{})
	h := newHullctl(t, d)
	h.ok(t, "images", "pull", "--plain", "--plain-http", reg.Host()+"/kinds/app:1")
	h.ok(t, "images", "pull", "--plain", "--plain-http", reg.Host()+"/kinds/many:1")
	cl := h.ok(t, "content", "ls", "-q")
	for _, b := range append(img.Blobs(), many.Blobs()...) {
		if !strings.Contains(cl, b.Desc.Digest.String()) {
			t.Fatalf("blob %s (%s) not pulled", b.Desc.Digest, b.Desc.MediaType)
		}
	}
}

func TestPullChunkedDownloads(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	data := make([]byte, 3<<20)
	rand.Read(data)
	img := testimage.NewLayers(testimage.HostPlatform(), []string{"/x"}, testimage.MakeLayer([]testimage.File{{Name: "big", Data: data}}, testimage.Uncompressed))
	reg.Push(t, "chunks/app", "1", img)
	d := hulltest.Start(t, hulltest.Options{})
	h := newHullctl(t, d)
	h.ok(t, "images", "pull", "--plain", "--plain-http", "--skip-unpack", "--chunk-size", "262144", "--parallel-chunks", "3", "--chunk-threshold", "1048576", reg.Host()+"/chunks/app:1")
	if n := strings.Count(reg.Log(), "/blobs/"+img.Layers[0].Desc.Digest.String()); n < 12 {
		t.Fatalf("the 3 MiB layer was fetched in %d requests, want at least 12 ranges of 256 KiB", n)
	}
	if cl := h.ok(t, "content", "ls", "-q"); !strings.Contains(cl, img.Layers[0].Desc.Digest.String()) {
		t.Fatal("chunked layer not stored")
	}
}
