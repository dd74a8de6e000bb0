package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/remotes/hosts"
)

const (
	testRepo     = "library/busybox"
	manifestBody = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}`
)

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func wantKind(t *testing.T, err error, kind error, contains ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", kind)
	}
	if !errors.Is(err, kind) {
		t.Fatalf("error %q is not %v", err, kind)
	}
	for _, c := range contains {
		if !strings.Contains(err.Error(), c) {
			t.Fatalf("error %q does not contain %q", err, c)
		}
	}
}

func single(f *fakeRegistry, opts Options) Options {
	opts.Hosts = hostList(f.host(allCaps))
	return opts
}

func TestParseRef(t *testing.T) {
	for _, c := range []struct {
		in              string
		host, repo, tag string
		dgst            string
		bad             bool
	}{
		{in: "docker.io/library/busybox:latest", host: "docker.io", repo: "library/busybox", tag: "latest"},
		{in: "localhost:5000/a/b", host: "localhost:5000", repo: "a/b"},
		{in: "localhost:5000/a/b:v1@sha256:" + strings.Repeat("a", 64), host: "localhost:5000", repo: "a/b", tag: "v1", dgst: "sha256:" + strings.Repeat("a", 64)},
		{in: "r.example/x@sha256:" + strings.Repeat("b", 64), host: "r.example", repo: "x", dgst: "sha256:" + strings.Repeat("b", 64)},
		{in: "busybox", bad: true},
		{in: "r.example/x:", bad: true},
		{in: "r.example/x@sha256:zz", bad: true},
		{in: "/x", bad: true},
	} {
		r, err := parseRef(c.in)
		if c.bad {
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("%s: err %v, want invalid argument", c.in, err)
			}
			continue
		}
		if err != nil || r.host != c.host || r.repo != c.repo || r.tag != c.tag || string(r.dgst) != c.dgst {
			t.Errorf("%s: got %+v %v", c.in, r, err)
		}
	}
}

func TestParseChallenges(t *testing.T) {
	chs := parseChallenges([]string{
		`Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push" , Basic realm="x y"`,
		`basic realm=plain`,
	})
	if len(chs) != 3 {
		t.Fatalf("got %d challenges: %+v", len(chs), chs)
	}
	if chs[0].scheme != "bearer" || chs[0].params["realm"] != "https://auth.example/token" ||
		chs[0].params["service"] != "registry.example" || chs[0].params["scope"] != "repository:a/b:pull,push" {
		t.Errorf("bearer: %+v", chs[0])
	}
	if chs[1].scheme != "basic" || chs[1].params["realm"] != "x y" {
		t.Errorf("basic: %+v", chs[1])
	}
	if chs[2].scheme != "basic" || chs[2].params["realm"] != "plain" {
		t.Errorf("basic 2: %+v", chs[2])
	}
	if got := parseChallenges([]string{`Bearer realm="a\"b"`}); got[0].params["realm"] != `a"b` {
		t.Errorf("escape: %+v", got)
	}
}

func TestResolveHEAD(t *testing.T) {
	f := newFakeRegistry(t)
	want := f.addManifest(testRepo, "latest", ocispec.MediaTypeImageManifest, []byte(manifestBody))
	r := newTestResolver(t, single(f, Options{UserAgent: "hull-test"}))
	ref := f.addr() + "/" + testRepo + ":latest"
	name, desc, err := r.Resolve(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if name != ref || desc.Digest != want.Digest || desc.Size != want.Size || desc.MediaType != want.MediaType {
		t.Fatalf("got %s %+v, want %+v", name, desc, want)
	}
	if n := f.countRequests("GET"); n != 0 {
		t.Errorf("%d GETs; HEAD should have sufficed: %v", n, f.requests())
	}
	// By digest.
	_, desc, err = r.Resolve(context.Background(), f.addr()+"/"+testRepo+"@"+want.Digest.String())
	if err != nil || desc.Digest != want.Digest {
		t.Fatalf("by digest: %+v %v", desc, err)
	}
}

// ResolveManifest reads the manifest in the one request that resolves it,
// by tag or by digest, and still refuses bytes that are not the digest.
func TestResolveManifestOneGET(t *testing.T) {
	f := newFakeRegistry(t)
	want := f.addManifest(testRepo, "v1", ocispec.MediaTypeImageManifest, []byte(manifestBody))
	r := newTestResolver(t, single(f, Options{}))
	for _, ref := range []string{f.addr() + "/" + testRepo + ":v1", f.addr() + "/" + testRepo + "@" + want.Digest.String()} {
		before := len(f.requests())
		name, desc, body, err := r.ResolveManifest(context.Background(), ref)
		if err != nil {
			t.Fatal(err)
		}
		if name != ref || desc.Digest != want.Digest || desc.Size != want.Size || desc.MediaType != want.MediaType || string(body) != manifestBody {
			t.Fatalf("%s: got %s %+v %q, want %+v", ref, name, desc, body, want)
		}
		if reqs := f.requests()[before:]; len(reqs) != 1 || !strings.HasPrefix(reqs[0], "GET ") {
			t.Errorf("%s: requests %v, want one GET", ref, reqs)
		}
	}
	other := digest.FromString("another manifest")
	if _, _, _, err := r.ResolveManifest(context.Background(), f.addr()+"/"+testRepo+"@"+other.String()); err == nil {
		t.Fatal("a manifest that is not the digest asked for was taken")
	}
	if _, _, _, err := r.ResolveManifest(context.Background(), f.addr()+"/"+testRepo+":nosuch"); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), `"nosuch"`) {
		t.Fatalf("missing tag: %v, want NotFound naming it", err)
	}
}

func TestResolveGETFallback(t *testing.T) {
	for name, knobs := range map[string]fakeKnobs{
		"no digest header": {headNoDigest: true},
		"405":              {headStatus: http.StatusMethodNotAllowed},
		"no content type":  {noContentType: true},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeRegistry(t)
			f.set(func(k *fakeKnobs) { *k = knobs })
			want := f.addManifest(testRepo, "v1", ocispec.MediaTypeImageManifest, []byte(manifestBody))
			r := newTestResolver(t, single(f, Options{}))
			_, desc, err := r.Resolve(context.Background(), f.addr()+"/"+testRepo+":v1")
			if err != nil {
				t.Fatal(err)
			}
			if desc.Digest != want.Digest || desc.Size != want.Size || desc.MediaType != ocispec.MediaTypeImageManifest {
				t.Fatalf("got %+v, want %+v", desc, want)
			}
			if f.countRequests("GET /v2/"+testRepo+"/manifests/v1") != 1 {
				t.Errorf("no GET fallback: %v", f.requests())
			}
		})
	}
}

func TestResolveSchema1(t *testing.T) {
	f := newFakeRegistry(t)
	f.addManifest(testRepo, "old", mediaTypeDockerSchema1JWS, []byte(`{"schemaVersion":1,"fsLayers":[]}`))
	r := newTestResolver(t, single(f, Options{}))
	_, _, err := r.Resolve(context.Background(), f.addr()+"/"+testRepo+":old")
	wantKind(t, err, errdefs.ErrNotImplemented, "schema 1 manifests are not supported; push the image again with a current client")

	// Detected from the body when the registry says nothing.
	f.set(func(k *fakeKnobs) { k.noContentType = true })
	_, _, err = r.Resolve(context.Background(), f.addr()+"/"+testRepo+":old")
	wantKind(t, err, errdefs.ErrNotImplemented, "schema 1")
}

func TestResolveNotFound(t *testing.T) {
	f := newFakeRegistry(t)
	r := newTestResolver(t, single(f, Options{}))
	ref := f.addr() + "/" + testRepo + ":nope"
	_, _, err := r.Resolve(context.Background(), ref)
	// Told as what was asked for, not as the API path that answered 404.
	wantKind(t, err, errdefs.ErrNotFound, ref, `repository "`+testRepo+`" has no tag "nope"`, "http://"+f.addr()+": ")
	// The registry's port may hold "404" (34047 did).
	if msg := strings.ReplaceAll(err.Error(), f.addr(), "ADDR"); strings.Contains(msg, "/v2") || strings.Contains(msg, "404") {
		t.Errorf("error %q speaks HTTP", err)
	}
}

func TestMirrorFallthrough(t *testing.T) {
	down := closedAddr(t)
	broken := newFakeRegistry(t)
	broken.set(func(k *fakeKnobs) {
		k.hook = func(w http.ResponseWriter, r *http.Request) bool {
			writeError(w, http.StatusInternalServerError, "INTERNAL", "boom")
			return true
		}
	})
	good := newFakeRegistry(t)
	want := good.addManifest(testRepo, "latest", ocispec.MediaTypeImageIndex, []byte(`{"schemaVersion":2,"manifests":[]}`))
	blob := good.addBlob(testRepo, []byte("layer"))

	r := newTestResolver(t, Options{
		Retries: 1,
		Hosts:   hostList(httpHost(down, allCaps), httpHost(broken.addr(), allCaps), good.host(allCaps)),
	})
	ref := "docker.io/" + testRepo + ":latest"
	_, desc, err := r.Resolve(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != want.Digest {
		t.Fatalf("got %+v", desc)
	}
	if n := broken.countRequests("HEAD"); n != 2 {
		t.Errorf("500 host got %d HEADs, want 2 (one retry)", n)
	}
	rc, err := mustFetcher(t, r, ref).Fetch(context.Background(), blob)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(b) != "layer" {
		t.Fatalf("fetch: %q %v", b, err)
	}

	// When every host fails, every reason is in the error.
	_, _, err = r.Resolve(context.Background(), "docker.io/"+testRepo+":missing")
	wantKind(t, err, errdefs.ErrUnavailable,
		"docker.io/"+testRepo+":missing: ",
		"http://"+down+"/v2: connection refused: unavailable",
		"http://"+broken.addr()+"/v2: 500 Internal Server Error",
		good.srv.URL+"/v2: 404 Not Found")

	// Unreachable hosts and a 404: not found.
	r2 := newTestResolver(t, Options{Hosts: hostList(httpHost(down, allCaps), good.host(allCaps))})
	_, _, err = r2.Resolve(context.Background(), "docker.io/"+testRepo+":missing")
	wantKind(t, err, errdefs.ErrNotFound, "connection refused; ", `has no tag "missing"`)
}

func mustFetcher(t *testing.T, r *Resolver, ref string) RangeFetcher {
	t.Helper()
	f, err := r.Fetcher(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	return f.(RangeFetcher)
}

func fetchAll(t *testing.T, f RangeFetcher, desc ocispec.Descriptor) []byte {
	t.Helper()
	rc, err := f.Fetch(context.Background(), desc)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBasicAuth(t *testing.T) {
	f := newFakeRegistry(t)
	f.set(func(k *fakeKnobs) { k.user, k.pass = "alice", "s3cret-pass" })
	f.addManifest(testRepo, "latest", ocispec.MediaTypeImageManifest, []byte(manifestBody))
	blob := f.addBlob(testRepo, []byte("data"))
	var lookups atomic.Int32
	creds := func(ctx context.Context, host string) (string, string, error) {
		lookups.Add(1)
		if host != f.addr() {
			t.Errorf("credentials asked for %q", host)
		}
		return "alice", "s3cret-pass", nil
	}
	r := newTestResolver(t, single(f, Options{Credentials: creds}))
	ref := f.addr() + "/" + testRepo + ":latest"
	if _, _, err := r.Resolve(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if got := fetchAll(t, mustFetcher(t, r, ref), blob); string(got) != "data" {
			t.Fatalf("got %q", got)
		}
	}
	if n := lookups.Load(); n != 1 {
		t.Errorf("credentials looked up %d times, want once", n)
	}

	// Wrong credentials: Unauthenticated, naming the host, not the secret.
	bad := newTestResolver(t, single(f, Options{Credentials: func(context.Context, string) (string, string, error) {
		return "alice", "wrong-secret", nil
	}}))
	_, _, err := bad.Resolve(context.Background(), ref)
	wantKind(t, err, errdefs.ErrUnauthenticated, f.srv.URL+"/v2", "401")
	if strings.Contains(err.Error(), "wrong-secret") {
		t.Errorf("secret in error: %v", err)
	}
	// No credentials at all.
	anon := newTestResolver(t, single(f, Options{}))
	_, _, err = anon.Resolve(context.Background(), ref)
	wantKind(t, err, errdefs.ErrUnauthenticated)
}

func TestBearerTokenCaching(t *testing.T) {
	f := newFakeRegistry(t)
	f.set(func(k *fakeKnobs) { k.bearer, k.user, k.pass = true, "bob", "hunter2-secret" })
	f.addManifest(testRepo, "latest", ocispec.MediaTypeImageManifest, []byte(manifestBody))
	var blobs []ocispec.Descriptor
	for i := range 20 {
		blobs = append(blobs, f.addBlob(testRepo, fmt.Appendf(nil, "blob %d", i)))
	}
	var logs bytes.Buffer
	var logMu sync.Mutex
	r := newTestResolver(t, single(f, Options{
		Credentials: func(context.Context, string) (string, string, error) { return "bob", "hunter2-secret", nil },
		Logger:      newTestLogger(&logs, &logMu),
	}))
	ref := f.addr() + "/" + testRepo + ":latest"
	if _, _, err := r.Resolve(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	fetcher := mustFetcher(t, r, ref)
	var wg sync.WaitGroup
	for _, b := range blobs {
		wg.Go(func() {
			rc, err := fetcher.Fetch(context.Background(), b)
			if err != nil {
				t.Error(err)
				return
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil || digest.FromBytes(got) != b.Digest {
				t.Errorf("fetch %s: %v", b.Digest, err)
			}
		})
	}
	wg.Wait()
	if n := f.tokenRequests(); n != 1 {
		t.Errorf("%d token requests, want 1", n)
	}
	f.mu.Lock()
	q, auth := f.tokenReqs[0], f.tokenAuth[0]
	f.mu.Unlock()
	if q.Get("service") != "fake-registry" || q.Get("scope") != "repository:"+testRepo+":pull" || !strings.HasPrefix(auth, "Basic ") {
		t.Errorf("token request %v, auth %q", q, auth)
	}

	// A revoked token is replaced once, transparently.
	f.revokeTokens()
	if got := fetchAll(t, fetcher, blobs[0]); digest.FromBytes(got) != blobs[0].Digest {
		t.Fatal("bad content after refresh")
	}
	if n := f.tokenRequests(); n != 2 {
		t.Errorf("%d token requests after revocation, want 2", n)
	}
	logMu.Lock()
	if strings.Contains(logs.String(), "hunter2") || strings.Contains(logs.String(), "tok-") {
		t.Errorf("secret in logs: %s", logs.String())
	}
	logMu.Unlock()
}

func TestBearerIdentityToken(t *testing.T) {
	f := newFakeRegistry(t)
	f.set(func(k *fakeKnobs) { k.bearer, k.pass = true, "refresh-me" })
	blob := f.addBlob(testRepo, []byte("x"))
	r := newTestResolver(t, single(f, Options{
		Credentials: func(context.Context, string) (string, string, error) { return "", "refresh-me", nil },
	}))
	fetchAll(t, mustFetcher(t, r, f.addr()+"/"+testRepo), blob)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.tokenReqs) != 1 || f.tokenReqs[0].Get("grant_type") != "refresh_token" || f.tokenReqs[0].Get("scope") != "repository:"+testRepo+":pull" {
		t.Errorf("token requests: %v", f.tokenReqs)
	}
}

func TestRedirectDropsAuthorization(t *testing.T) {
	var (
		mu      sync.Mutex
		headers []http.Header
	)
	data := randomBytes(t, 1000)
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		headers = append(headers, r.Header.Clone())
		mu.Unlock()
		serveData(w, r, data, false, false, 0)
	}))
	defer storage.Close()
	f := newFakeRegistry(t)
	f.set(func(k *fakeKnobs) { k.bearer, k.redirect = true, storage.URL })
	blob := f.addBlob(testRepo, data)
	h := f.host(allCaps)
	h.Header = http.Header{"X-Registry-Key": {"mirror-secret"}, "X-Plain": {"p"}}
	r := newTestResolver(t, Options{Hosts: hostList(h)})
	fetcher := mustFetcher(t, r, f.addr()+"/"+testRepo)
	if got := fetchAll(t, fetcher, blob); !bytes.Equal(got, data) {
		t.Fatal("bad content")
	}
	// A range request keeps its Range across the redirect.
	rc, err := fetcher.FetchRange(context.Background(), blob, 100, 10)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data[100:110]) {
		t.Fatalf("range: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(headers) != 2 {
		t.Fatalf("storage saw %d requests", len(headers))
	}
	for _, h := range headers {
		if h.Get("Authorization") != "" || h.Get("X-Registry-Key") != "" || h.Get("X-Plain") != "" {
			t.Errorf("registry headers leaked to storage: %v", h)
		}
	}
	if headers[1].Get("Range") != "bytes=100-109" {
		t.Errorf("range not forwarded: %v", headers[1])
	}
}

func TestFetchResume(t *testing.T) {
	f := newFakeRegistry(t)
	data := randomBytes(t, 1<<20)
	blob := f.addBlob(testRepo, data)
	f.set(func(k *fakeKnobs) { k.cutAfter, k.cutTimes = 100<<10, 2 })
	r := newTestResolver(t, single(f, Options{}))
	fetcher := mustFetcher(t, r, f.addr()+"/"+testRepo)
	if got := fetchAll(t, fetcher, blob); !bytes.Equal(got, data) {
		t.Fatal("bad content after resume")
	}
	if n := f.countRequests("GET /v2/" + testRepo + "/blobs/"); n != 3 {
		t.Errorf("%d GETs, want 3 (two resumes)", n)
	}

	// More cuts than retries: an error, after the retries.
	f.set(func(k *fakeKnobs) { k.cutAfter, k.cutTimes = 10<<10, 10 })
	r2 := newTestResolver(t, single(f, Options{Retries: 2}))
	rc, err := mustFetcher(t, r2, f.addr()+"/"+testRepo).Fetch(context.Background(), blob)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	wantKind(t, err, errdefs.ErrUnavailable, "connection broken", f.srv.URL)

	// A descriptor whose size is wrong is an error.
	f.set(func(k *fakeKnobs) { k.cutTimes = 0; k.noRanges = true })
	short := blob
	short.Size--
	_, err = fetcher.Fetch(context.Background(), short)
	wantKind(t, err, errdefs.ErrDataLoss, "descriptor says")
}

// overlapWriter is an io.WriterAt into a byte slice.
type sliceWriterAt struct {
	mu  sync.Mutex
	buf []byte
}

func (s *sliceWriterAt) WriteAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	copy(s.buf[off:], p)
	return len(p), nil
}

func TestFetchParallel(t *testing.T) {
	f := newFakeRegistry(t)
	data := randomBytes(t, 5<<20+123)
	blob := f.addBlob(testRepo, data)
	var inflight, peak atomic.Int32
	f.set(func(k *fakeKnobs) {
		k.cutAfter, k.cutTimes = 1000, 1 // one chunk breaks and resumes
		k.hook = func(w http.ResponseWriter, r *http.Request) bool {
			n := inflight.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(20 * time.Millisecond)
			inflight.Add(-1)
			return false
		}
	})
	r := newTestResolver(t, single(f, Options{}))
	fetcher := mustFetcher(t, r, f.addr()+"/"+testRepo)
	w := &sliceWriterAt{buf: make([]byte, len(data))}
	if err := fetcher.FetchParallel(context.Background(), blob, w, 1<<20, 4); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w.buf, data) {
		t.Fatal("bad content")
	}
	if n := f.countRequests("GET /v2/" + testRepo + "/blobs/"); n != 7 {
		t.Errorf("%d GETs, want 6 chunks + 1 resume", n)
	}
	if peak.Load() < 2 {
		t.Errorf("peak concurrency %d", peak.Load())
	}

	// Without Range support: one sequential GET.
	f.set(func(k *fakeKnobs) { k.noRanges, k.hook, k.cutTimes = true, nil, 0 })
	before := f.countRequests("GET /v2/" + testRepo + "/blobs/")
	w = &sliceWriterAt{buf: make([]byte, len(data))}
	if err := fetcher.FetchParallel(context.Background(), blob, w, 1<<20, 4); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w.buf, data) {
		t.Fatal("bad content (sequential)")
	}
	// The 0-0 probe answered 200, then the whole blob.
	if n := f.countRequests("GET /v2/"+testRepo+"/blobs/") - before; n != 2 {
		t.Errorf("%d GETs without range support, want probe + 1", n)
	}
}

func TestPushBlob(t *testing.T) {
	f := newFakeRegistry(t)
	f.set(func(k *fakeKnobs) { k.bearer = true })
	existing := f.addBlob(testRepo, []byte("already here"))
	r := newTestResolver(t, single(f, Options{}))
	ref := f.addr() + "/" + testRepo + ":v1"
	pusher, err := r.Pusher(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	_, err = pusher.Push(ctx, existing)
	wantKind(t, err, errdefs.ErrAlreadyExists)

	data := randomBytes(t, 300<<10)
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(data), Size: int64(len(data))}
	w, err := pusher.Push(ctx, desc)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(data); i += 7000 {
		if _, err := w.Write(data[i:min(i+7000, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := w.Status(); st.Offset != desc.Size || w.Digest() != desc.Digest {
		t.Fatalf("status %+v digest %s", st, w.Digest())
	}
	if err := w.Commit(ctx, desc.Size, desc.Digest); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if !f.hasBlob(testRepo, desc.Digest) {
		t.Fatal("blob not in registry")
	}

	// A mismatch at Commit aborts the upload.
	other := randomBytes(t, 1000)
	odesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(other), Size: 1000}
	w, err = pusher.Push(ctx, odesc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(other); err != nil {
		t.Fatal(err)
	}
	wantKind(t, w.Commit(ctx, 1000, digest.FromString("something else")), errdefs.ErrFailedPrecondition, "unexpected commit digest")
	w.Close()
	if f.hasBlob(testRepo, odesc.Digest) {
		t.Fatal("mismatched blob was committed")
	}
	// Writing past the size fails at once.
	w, err = pusher.Push(ctx, odesc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Write(append(other, 'x'))
	wantKind(t, err, errdefs.ErrFailedPrecondition)
	w.Close()

	// Mount from another repository, named by annotation or option.
	sessions := f.sessionsStarted()
	src := f.addBlob("library/source", []byte("mount me"))
	src.Annotations = map[string]string{AnnotationSourceRepository: f.addr() + "/library/source"}
	_, err = pusher.Push(ctx, src)
	wantKind(t, err, errdefs.ErrAlreadyExists, "mounted from library/source")
	if !f.hasBlob(testRepo, src.Digest) {
		t.Fatal("mount did not happen")
	}
	src2 := f.addBlob("library/source", []byte("mount me too"))
	p2, err := r.PusherWith(ctx, ref, WithMountFrom("library/source"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p2.Push(ctx, src2)
	wantKind(t, err, errdefs.ErrAlreadyExists)
	if n := f.sessionsStarted() - sessions; n != 0 {
		t.Errorf("%d upload sessions for mounted blobs", n)
	}
	if n := f.putsAfter(testRepo, sessions); n != 0 {
		t.Errorf("%d upload PUTs for mounted blobs", n)
	}

	// An empty blob.
	empty := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(nil), Size: 0}
	w, err = pusher.Push(ctx, empty)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx, 0, ""); err != nil {
		t.Fatal(err)
	}
	if !f.hasBlob(testRepo, empty.Digest) {
		t.Fatal("empty blob not pushed")
	}
}

func TestPushManifest(t *testing.T) {
	f := newFakeRegistry(t)
	r := newTestResolver(t, single(f, Options{}))
	ref := f.addr() + "/" + testRepo + ":v2"
	pusher, err := r.Pusher(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(manifestBody)
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(body), Size: int64(len(body))}
	w, err := pusher.Push(context.Background(), desc)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(body)
	wantKind(t, w.Commit(context.Background(), int64(len(body))+1, ""), errdefs.ErrFailedPrecondition)
	if err := w.Commit(context.Background(), int64(len(body)), desc.Digest); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	m, ok := f.manifests[testRepo+"@v2"]
	f.mu.Unlock()
	if !ok || m.mediaType != desc.MediaType || !bytes.Equal(m.body, body) {
		t.Fatalf("manifest in registry: %+v %v", m, ok)
	}
	_, got, err := r.Resolve(context.Background(), ref)
	if err != nil || got.Digest != desc.Digest {
		t.Fatalf("resolve after push: %+v %v", got, err)
	}
	// Pushing it again: already there.
	_, err = pusher.Push(context.Background(), desc)
	wantKind(t, err, errdefs.ErrAlreadyExists)
}

func TestTagsPagination(t *testing.T) {
	f := newFakeRegistry(t)
	f.set(func(k *fakeKnobs) { k.tagsPage = 3 })
	want := []string{"a", "b", "c", "d", "e", "f", "g"}
	for _, tag := range want {
		f.addManifest(testRepo, tag, ocispec.MediaTypeImageManifest, []byte(manifestBody))
	}
	r := newTestResolver(t, single(f, Options{}))
	tags, err := r.Tags(context.Background(), f.addr()+"/"+testRepo)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(tags, ",") != strings.Join(want, ",") {
		t.Fatalf("tags %v", tags)
	}
	if n := f.countRequests("GET /v2/" + testRepo + "/tags/list"); n != 3 {
		t.Errorf("%d pages", n)
	}
}

func TestRetries(t *testing.T) {
	f := newFakeRegistry(t)
	f.addManifest(testRepo, "latest", ocispec.MediaTypeImageManifest, []byte(manifestBody))
	var calls atomic.Int32
	f.set(func(k *fakeKnobs) {
		k.hook = func(w http.ResponseWriter, r *http.Request) bool {
			switch calls.Add(1) {
			case 1:
				w.Header().Set("Retry-After", "1")
				writeError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS", "slow down")
				return true
			case 2, 3:
				w.WriteHeader(http.StatusServiceUnavailable)
				return true
			}
			return false
		}
	})
	r := newTestResolver(t, single(f, Options{}))
	start := time.Now()
	if _, _, err := r.Resolve(context.Background(), f.addr()+"/"+testRepo+":latest"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("Retry-After not honoured: done in %v", d)
	}
	if calls.Load() != 4 {
		t.Errorf("%d calls, want 4", calls.Load())
	}

	// 501 is not retried.
	calls.Store(0)
	f.set(func(k *fakeKnobs) {
		k.hook = func(w http.ResponseWriter, r *http.Request) bool {
			calls.Add(1)
			w.WriteHeader(http.StatusNotImplemented)
			return true
		}
	})
	_, _, err := r.Resolve(context.Background(), f.addr()+"/"+testRepo+":latest")
	wantKind(t, err, errdefs.ErrNotImplemented, "501")
	if calls.Load() != 1 {
		t.Errorf("501 tried %d times", calls.Load())
	}
}

func TestFirstByteTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var conns []net.Conn
	var mu sync.Mutex
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	good := newFakeRegistry(t)
	want := good.addManifest(testRepo, "latest", ocispec.MediaTypeImageManifest, []byte(manifestBody))
	r := newTestResolver(t, Options{
		FirstByteTimeout: 500 * time.Millisecond,
		Hosts:            hostList(httpHost(l.Addr().String(), allCaps), good.host(allCaps)),
	})
	start := time.Now()
	_, desc, err := r.Resolve(context.Background(), "docker.io/"+testRepo+":latest")
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != want.Digest {
		t.Fatalf("got %+v", desc)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}

	r2 := newTestResolver(t, Options{
		FirstByteTimeout: 500 * time.Millisecond,
		Hosts:            hostList(httpHost(l.Addr().String(), allCaps)),
	})
	_, _, err = r2.Resolve(context.Background(), "docker.io/"+testRepo+":latest")
	wantKind(t, err, errdefs.ErrUnavailable, "timeout")
}

func TestCheck(t *testing.T) {
	f := newFakeRegistry(t)
	f.set(func(k *fakeKnobs) { k.bearer, k.user, k.pass = true, "carol", "very-secret" })
	f.addManifest(testRepo, "latest", ocispec.MediaTypeImageManifest, []byte(manifestBody))
	tlsSrv := httptest.NewUnstartedServer(f)
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted handshake is expected
	tlsSrv.StartTLS()
	defer tlsSrv.Close()

	up := f.host(allCaps)
	up.Header = http.Header{"Authorization": {"Basic c2VjcmV0"}, "X-Plain": {"visible"}}
	hs := []hosts.Host{
		httpHost(closedAddr(t), hosts.CapabilityPull),
		tlsHost(tlsSrv, false),
		tlsHost(tlsSrv, true),
		up,
	}
	r := newTestResolver(t, Options{
		Hosts:       hostList(hs...),
		Credentials: func(context.Context, string) (string, string, error) { return "carol", "very-secret", nil },
	})
	reports := r.Check(context.Background(), "docker.io/"+testRepo+":latest")
	if len(reports) != 4 {
		t.Fatalf("%d reports", len(reports))
	}
	steps := func(rep HostReport) string {
		var s []string
		for _, st := range rep.Steps {
			s = append(s, fmt.Sprintf("%s=%v", st.Name, st.OK))
		}
		return strings.Join(s, " ")
	}
	if got := steps(reports[0]); got != "connect=false" || !strings.Contains(reports[0].Steps[0].Detail, "connection refused") {
		t.Errorf("closed host: %s %+v", got, reports[0].Steps)
	}
	if got := steps(reports[1]); got != "connect=true tls=false" || !strings.Contains(reports[1].Steps[1].Detail, "certificate") {
		t.Errorf("untrusted TLS host: %s %+v", got, reports[1].Steps)
	}
	if got := steps(reports[2]); got != "connect=true tls=true auth=true resolve=true" {
		t.Errorf("TLS host: %s %+v", got, reports[2].Steps)
	}
	rep := reports[3]
	if got := steps(rep); got != "connect=true auth=true resolve=true" {
		t.Errorf("upstream: %s %+v", got, rep.Steps)
	}
	if len(rep.Challenges) != 1 || rep.Challenges[0].Scheme != "Bearer" || rep.Challenges[0].Realm != f.srv.URL+"/token" || rep.Challenges[0].Service != "fake-registry" {
		t.Errorf("challenges %+v", rep.Challenges)
	}
	if res := rep.Steps[len(rep.Steps)-1]; res.StatusCode != 200 || !strings.Contains(res.Detail, digest.FromString(manifestBody).String()) {
		t.Errorf("resolve step %+v", res)
	}
	if strings.Join(rep.Capabilities, ",") != "pull,resolve,push" || rep.URL != f.srv.URL+"/v2" {
		t.Errorf("report %+v", rep)
	}
	if rep.Headers["Authorization"][0] != "<redacted>" || rep.Headers["X-Plain"][0] != "visible" {
		t.Errorf("headers %v", rep.Headers)
	}
	all := fmt.Sprintf("%+v", reports)
	for _, secret := range []string{"very-secret", "c2VjcmV0", "tok-"} {
		if strings.Contains(all, secret) {
			t.Errorf("secret %q in report: %s", secret, all)
		}
	}
}

func TestConcurrencyLimit(t *testing.T) {
	f := newFakeRegistry(t)
	var inflight, peak atomic.Int32
	f.set(func(k *fakeKnobs) {
		k.hook = func(w http.ResponseWriter, r *http.Request) bool {
			n := inflight.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(30 * time.Millisecond)
			inflight.Add(-1)
			return false
		}
	})
	var blobs []ocispec.Descriptor
	for i := range 10 {
		blobs = append(blobs, f.addBlob(testRepo, fmt.Appendf(nil, "b%d", i)))
	}
	r := newTestResolver(t, single(f, Options{MaxConcurrentPerHost: 2}))
	fetcher := mustFetcher(t, r, f.addr()+"/"+testRepo)
	var wg sync.WaitGroup
	for _, b := range blobs {
		wg.Go(func() { fetchAll(t, fetcher, b) })
	}
	wg.Wait()
	if p := peak.Load(); p > 2 {
		t.Errorf("peak %d requests in flight, limit 2", p)
	}
}

func TestPushErrors(t *testing.T) {
	f := newFakeRegistry(t)
	r := newTestResolver(t, single(f, Options{}))
	ctx := context.Background()
	pusher, err := r.Pusher(ctx, f.addr()+"/"+testRepo+":v1")
	if err != nil {
		t.Fatal(err)
	}
	data := randomBytes(t, 200<<10)
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(data), Size: int64(len(data))}

	// Refused upload: PermissionDenied, naming the blob and the host.
	f.set(func(k *fakeKnobs) {
		k.hook = func(w http.ResponseWriter, r *http.Request) bool {
			if r.Method == http.MethodPost {
				writeError(w, http.StatusForbidden, "DENIED", "requested access to the resource is denied")
				return true
			}
			return false
		}
	})
	_, err = pusher.Push(ctx, desc)
	wantKind(t, err, errdefs.ErrPermissionDenied, desc.Digest.String(), f.srv.URL+"/v2: 403 Forbidden: DENIED")

	// The registry answers the PUT before reading the body: Write or
	// Commit reports its answer.
	f.set(func(k *fakeKnobs) {
		k.hook = func(w http.ResponseWriter, r *http.Request) bool {
			if r.Method == http.MethodPut {
				writeError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", "nope")
				return true
			}
			return false
		}
	})
	w, err := pusher.Push(ctx, desc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(w, bytes.NewReader(data))
	if err == nil {
		err = w.Commit(ctx, desc.Size, desc.Digest)
	}
	wantKind(t, err, errdefs.ErrInvalidArgument, "BLOB_UPLOAD_INVALID")
	w.Close()

	// Truncate(0) restarts the upload in a new session.
	f.set(func(k *fakeKnobs) { k.hook = nil })
	posts := f.countRequests("POST")
	w, err = pusher.Push(ctx, desc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data[:1000]); err != nil {
		t.Fatal(err)
	}
	if err := w.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if st, _ := w.Status(); st.Offset != 0 {
		t.Fatalf("offset %d after truncate", st.Offset)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx, 0, ""); err != nil {
		t.Fatal(err)
	}
	if !f.hasBlob(testRepo, desc.Digest) {
		t.Fatal("blob not pushed after truncate")
	}
	if n := f.countRequests("POST") - posts; n != 2 {
		t.Errorf("%d upload sessions, want 2", n)
	}

	// Cancelling the Push context aborts an upload in progress.
	cctx, cancel := context.WithCancel(ctx)
	other := randomBytes(t, 1000)
	odesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(other), Size: 1000}
	w, err = pusher.Push(cctx, odesc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(other[:500]); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err = w.Write(other[500:])
	wantKind(t, err, context.Canceled, odesc.Digest.String())
	w.Close()
	if f.hasBlob(testRepo, odesc.Digest) {
		t.Fatal("cancelled blob committed")
	}
}

func TestRetryAfterAndBackoff(t *testing.T) {
	if d, ok := retryAfter("3"); !ok || d != 3*time.Second {
		t.Errorf("seconds: %v %v", d, ok)
	}
	if d, ok := retryAfter(time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat)); !ok || d <= 0 || d > 2*time.Second {
		t.Errorf("date: %v %v", d, ok)
	}
	if _, ok := retryAfter("soon"); ok {
		t.Error("garbage accepted")
	}
	r := NewResolver(Options{})
	for a := range 20 {
		d := r.backoff(a)
		base := min(backoffBase<<min(a, 10), backoffMax)
		if d < base/2 || d >= base*3/2 {
			t.Errorf("attempt %d: %v outside [%v, %v)", a, d, base/2, base*3/2)
		}
	}
	if first, last, total, ok := parseContentRange("bytes 10-19/100"); !ok || first != 10 || last != 19 || total != 100 {
		t.Error("content range")
	}
	if _, _, total, ok := parseContentRange("bytes 0-0/*"); !ok || total != -1 {
		t.Error("content range *")
	}
	if got := nextLink([]string{`</v2/x/tags/list?last=b&n=2>; rel="next"`}); got != "/v2/x/tags/list?last=b&n=2" {
		t.Errorf("link %q", got)
	}
}

func TestRedirectLoop(t *testing.T) {
	var hits atomic.Int32
	var loop *httptest.Server
	loop = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, loop.URL+r.URL.Path+"x", http.StatusTemporaryRedirect)
	}))
	defer loop.Close()
	f := newFakeRegistry(t)
	f.set(func(k *fakeKnobs) { k.redirect = loop.URL })
	blob := f.addBlob(testRepo, []byte("data"))
	r := newTestResolver(t, Options{Hosts: hostList(f.host(allCaps))})
	fetcher := mustFetcher(t, r, f.addr()+"/"+testRepo)
	done := make(chan error, 1)
	go func() {
		rc, err := fetcher.Fetch(context.Background(), blob)
		if err == nil {
			rc.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "redirect") || !strings.Contains(err.Error(), blob.Digest.String()) {
			t.Fatalf("redirect loop: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a redirect loop hung the fetch")
	}
	if n := hits.Load(); n > 20 {
		t.Fatalf("followed %d redirects", n)
	}
}

// TestFetchStall: a registry that stops sending in the middle of a blob,
// with the connection open, costs StallTimeout, then the download resumes
// where it stopped; one that keeps stalling fails the read, saying so,
// instead of holding the pull for ever.
func TestFetchStall(t *testing.T) {
	f := newFakeRegistry(t)
	data := randomBytes(t, 256<<10)
	blob := f.addBlob(testRepo, data)
	var stalls atomic.Int32
	stall := func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") || stalls.Add(-1) < 0 {
			return false
		}
		from := 0
		if rg := r.Header.Get("Range"); rg != "" {
			first, _, _ := strings.Cut(strings.TrimPrefix(rg, "bytes="), "-")
			from, _ = strconv.Atoi(first)
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, len(data)-1, len(data)))
			w.Header().Set("Content-Length", strconv.Itoa(len(data)-from))
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.WriteHeader(http.StatusOK)
		}
		w.Write(data[from : from+(len(data)-from)/2])
		w.(http.Flusher).Flush()
		<-r.Context().Done() // silent until the client gives up
		return true
	}
	f.set(func(k *fakeKnobs) { k.hook = stall })

	stalls.Store(1)
	r := newTestResolver(t, single(f, Options{StallTimeout: 200 * time.Millisecond}))
	if got := fetchAll(t, mustFetcher(t, r, f.addr()+"/"+testRepo), blob); !bytes.Equal(got, data) {
		t.Fatal("bad content after a stall")
	}

	stalls.Store(100)
	r2 := newTestResolver(t, single(f, Options{StallTimeout: 200 * time.Millisecond, Retries: 1}))
	rc, err := mustFetcher(t, r2, f.addr()+"/"+testRepo).Fetch(context.Background(), blob)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	wantKind(t, err, errdefs.ErrUnavailable, "sent nothing for 200ms", f.srv.URL)
}
