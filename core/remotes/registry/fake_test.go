package registry

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/remotes/hosts"
)

// fakeRegistry implements just enough of the distribution API for these
// tests, with knobs for the misbehaviour under test. Knobs are set through
// set, under the lock, and read under it by the handler.
type fakeRegistry struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex
	manifests map[string]fakeManifest // repo + "@" + tag or digest
	blobs     map[string][]byte       // repo + "@" + digest
	uploads   map[string]string       // id → repo
	nextID    int
	reqs      []string // "METHOD /path"

	knobs fakeKnobs

	tokenReqs []url.Values // query or form of each token request
	tokenAuth []string     // the Authorization header of each token request
	tokens    map[string]bool
	nextToken int
}

type fakeKnobs struct {
	headNoDigest   bool   // HEAD manifests without Docker-Content-Digest
	headStatus     int    // HEAD manifests answers this status
	noContentType  bool   // manifests without Content-Type
	noRanges       bool   // blobs without Range support
	cutAfter       int64  // blob GET bodies break after this many bytes…
	cutTimes       int    // …this many times
	redirect       string // blob GETs redirect to this base URL
	user, pass     string // Basic auth required
	bearer         bool   // Bearer auth required
	tokenExpiresIn int
	tagsPage       int
	// hook sees each request first; it returns true if it answered.
	hook func(w http.ResponseWriter, r *http.Request) bool
}

type fakeManifest struct {
	mediaType string
	body      []byte
}

func newFakeRegistry(t *testing.T) *fakeRegistry {
	f := &fakeRegistry{
		t:         t,
		manifests: map[string]fakeManifest{},
		blobs:     map[string][]byte{},
		uploads:   map[string]string{},
		tokens:    map[string]bool{},
	}
	f.srv = httptest.NewServer(f)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeRegistry) set(fn func(k *fakeKnobs)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.knobs)
}

func (f *fakeRegistry) addr() string { return f.srv.Listener.Addr().String() }

func (f *fakeRegistry) host(caps hosts.Capabilities) hosts.Host {
	return hosts.Host{Scheme: "http", Host: f.addr(), Path: "/v2", Capabilities: caps, DialTimeout: 2 * time.Second}
}

func (f *fakeRegistry) addBlob(repo string, data []byte) ocispec.Descriptor {
	d := digest.FromBytes(data)
	f.mu.Lock()
	f.blobs[repo+"@"+d.String()] = data
	f.mu.Unlock()
	return ocispec.Descriptor{MediaType: "application/octet-stream", Digest: d, Size: int64(len(data))}
}

func (f *fakeRegistry) addManifest(repo, tag, mediaType string, body []byte) ocispec.Descriptor {
	d := digest.FromBytes(body)
	f.mu.Lock()
	f.manifests[repo+"@"+d.String()] = fakeManifest{mediaType, body}
	if tag != "" {
		f.manifests[repo+"@"+tag] = fakeManifest{mediaType, body}
	}
	f.mu.Unlock()
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(body))}
}

func (f *fakeRegistry) hasBlob(repo string, d digest.Digest) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.blobs[repo+"@"+d.String()]
	return ok
}

func (f *fakeRegistry) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

// sessionsStarted is how many upload sessions the registry has opened.
func (f *fakeRegistry) sessionsStarted() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nextID
}

// putsAfter counts the PUTs to repo's upload sessions numbered above
// session. A PUT the client aborted can reach the handler after the abort
// returned, so counting every PUT would race with earlier uploads.
func (f *fakeRegistry) putsAfter(repo string, session int) int {
	n := 0
	for _, r := range f.requests() {
		id, ok := strings.CutPrefix(r, "PUT /v2/"+repo+"/blobs/uploads/")
		if k, err := strconv.Atoi(id); ok && err == nil && k > session {
			n++
		}
	}
	return n
}

func (f *fakeRegistry) countRequests(prefix string) int {
	n := 0
	for _, r := range f.requests() {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

func (f *fakeRegistry) tokenRequests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.tokenReqs)
}

func (f *fakeRegistry) revokeTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.tokens)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`, code, msg)
}

func (f *fakeRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.reqs = append(f.reqs, r.Method+" "+r.URL.Path)
	k := f.knobs
	f.mu.Unlock()
	if k.hook != nil && k.hook(w, r) {
		return
	}
	if r.URL.Path == "/token" {
		f.serveToken(w, r, k)
		return
	}
	if !f.authorized(w, r, k) {
		return
	}
	p := r.URL.Path
	switch {
	case p == "/v2/":
		w.WriteHeader(http.StatusOK)
	case strings.Contains(p, "/manifests/"):
		repo, ref, _ := strings.Cut(strings.TrimPrefix(p, "/v2/"), "/manifests/")
		f.serveManifest(w, r, k, repo, ref)
	case strings.Contains(p, "/blobs/uploads/"):
		repo, id, _ := strings.Cut(strings.TrimPrefix(p, "/v2/"), "/blobs/uploads/")
		f.serveUpload(w, r, repo, id)
	case strings.Contains(p, "/blobs/"):
		repo, d, _ := strings.Cut(strings.TrimPrefix(p, "/v2/"), "/blobs/")
		f.serveBlob(w, r, k, repo, d)
	case strings.HasSuffix(p, "/tags/list"):
		f.serveTags(w, r, k, strings.TrimSuffix(strings.TrimPrefix(p, "/v2/"), "/tags/list"))
	default:
		writeError(w, http.StatusNotFound, "NOT_FOUND", "no route")
	}
}

func (f *fakeRegistry) authorized(w http.ResponseWriter, r *http.Request, k fakeKnobs) bool {
	switch {
	case k.bearer:
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		f.mu.Lock()
		ok := f.tokens[tok]
		f.mu.Unlock()
		if ok {
			return true
		}
		ch := fmt.Sprintf(`Bearer realm="%s/token",service="fake-registry"`, f.srv.URL)
		for _, sep := range []string{"/manifests/", "/blobs/", "/tags/"} {
			if repo, _, found := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v2/"), sep); found {
				ch += fmt.Sprintf(`,scope="repository:%s:pull"`, repo)
				break
			}
		}
		w.Header().Set("WWW-Authenticate", ch)
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return false
	case k.user != "":
		if u, p, ok := r.BasicAuth(); ok && u == k.user && p == k.pass {
			return true
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="fake"`)
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return false
	}
	return true
}

func (f *fakeRegistry) serveToken(w http.ResponseWriter, r *http.Request, k fakeKnobs) {
	vals := r.URL.Query()
	if r.Method == http.MethodPost {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		vals = r.PostForm
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenReqs = append(f.tokenReqs, vals)
	f.tokenAuth = append(f.tokenAuth, r.Header.Get("Authorization"))
	if k.user != "" || k.pass != "" {
		// Credentials are required for a token.
		if u, p, ok := r.BasicAuth(); !ok || u != k.user || p != k.pass {
			if vals.Get("refresh_token") != k.pass {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
		}
	}
	f.nextToken++
	tok := "tok-" + strconv.Itoa(f.nextToken)
	f.tokens[tok] = true
	resp := map[string]any{"token": tok}
	if k.tokenExpiresIn > 0 {
		resp["expires_in"] = k.tokenExpiresIn
	}
	json.NewEncoder(w).Encode(resp)
}

func (f *fakeRegistry) serveManifest(w http.ResponseWriter, r *http.Request, k fakeKnobs, repo, ref string) {
	if r.Method == http.MethodPut {
		body, _ := io.ReadAll(r.Body)
		d := digest.FromBytes(body)
		if dd, err := digest.Parse(ref); err == nil && dd != d {
			writeError(w, http.StatusBadRequest, "DIGEST_INVALID", "digest mismatch")
			return
		}
		f.addManifest(repo, strings.TrimPrefix(ref, d.String()), r.Header.Get("Content-Type"), body)
		w.Header().Set("Docker-Content-Digest", d.String())
		w.Header().Set("Location", "/v2/"+repo+"/manifests/"+d.String())
		w.WriteHeader(http.StatusCreated)
		return
	}
	if r.Method == http.MethodHead && k.headStatus != 0 {
		w.WriteHeader(k.headStatus)
		return
	}
	f.mu.Lock()
	m, ok := f.manifests[repo+"@"+ref]
	f.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
		return
	}
	if !k.noContentType {
		w.Header().Set("Content-Type", m.mediaType)
	}
	if r.Method == http.MethodGet || !k.headNoDigest {
		w.Header().Set("Docker-Content-Digest", digest.FromBytes(m.body).String())
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(m.body)))
	if r.Method == http.MethodGet {
		w.Write(m.body)
	}
}

// cutWriter breaks the connection after left bytes of body.
type cutWriter struct {
	http.ResponseWriter
	left int64
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > c.left {
		c.ResponseWriter.Write(p[:c.left])
		c.ResponseWriter.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	c.left -= int64(len(p))
	return c.ResponseWriter.Write(p)
}

func (f *fakeRegistry) serveBlob(w http.ResponseWriter, r *http.Request, k fakeKnobs, repo, d string) {
	f.mu.Lock()
	data, ok := f.blobs[repo+"@"+d]
	cut := r.Method == http.MethodGet && k.cutAfter > 0 && f.knobs.cutTimes > 0
	if cut {
		f.knobs.cutTimes--
	}
	f.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown")
		return
	}
	if k.redirect != "" && r.Method == http.MethodGet {
		http.Redirect(w, r, k.redirect+r.URL.Path, http.StatusTemporaryRedirect)
		return
	}
	serveData(w, r, data, k.noRanges, cut, k.cutAfter)
}

func serveData(w http.ResponseWriter, r *http.Request, data []byte, noRanges, cut bool, cutAfter int64) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Docker-Content-Digest", digest.FromBytes(data).String())
	var out http.ResponseWriter = w
	if cut {
		out = &cutWriter{ResponseWriter: w, left: cutAfter}
	}
	if noRanges {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			out.Write(data)
		}
		return
	}
	http.ServeContent(out, r, "", time.Time{}, bytes.NewReader(data))
}

func (f *fakeRegistry) serveUpload(w http.ResponseWriter, r *http.Request, repo, id string) {
	switch {
	case r.Method == http.MethodPost && id == "":
		q := r.URL.Query()
		if from, d := q.Get("from"), q.Get("mount"); from != "" && d != "" {
			f.mu.Lock()
			data, ok := f.blobs[from+"@"+d]
			if ok {
				f.blobs[repo+"@"+d] = data
			}
			f.mu.Unlock()
			if ok {
				w.Header().Set("Location", "/v2/"+repo+"/blobs/"+d)
				w.WriteHeader(http.StatusCreated)
				return
			}
		}
		f.mu.Lock()
		f.nextID++
		id := strconv.Itoa(f.nextID)
		f.uploads[id] = repo
		f.mu.Unlock()
		w.Header().Set("Location", "/v2/"+repo+"/blobs/uploads/"+id+"?_state=s"+id)
		w.WriteHeader(http.StatusAccepted)
	case r.Method == http.MethodPut:
		f.mu.Lock()
		urepo, ok := f.uploads[id]
		f.mu.Unlock()
		if !ok || urepo != repo || r.URL.Query().Get("_state") != "s"+id {
			writeError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "upload unknown")
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return // The client gave up.
		}
		d := digest.FromBytes(body)
		if r.URL.Query().Get("digest") != d.String() {
			writeError(w, http.StatusBadRequest, "DIGEST_INVALID", "digest mismatch")
			return
		}
		f.addBlob(repo, body)
		f.mu.Lock()
		delete(f.uploads, id)
		f.mu.Unlock()
		w.Header().Set("Docker-Content-Digest", d.String())
		w.WriteHeader(http.StatusCreated)
	default:
		writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "unsupported")
	}
}

func (f *fakeRegistry) serveTags(w http.ResponseWriter, r *http.Request, k fakeKnobs, repo string) {
	var tags []string
	f.mu.Lock()
	for key := range f.manifests {
		if rp, ref, _ := strings.Cut(key, "@"); rp == repo && !strings.Contains(ref, ":") {
			tags = append(tags, ref)
		}
	}
	f.mu.Unlock()
	sort.Strings(tags)
	if last := r.URL.Query().Get("last"); last != "" {
		i := sort.SearchStrings(tags, last)
		if i < len(tags) && tags[i] == last {
			i++
		}
		tags = tags[i:]
	}
	if n := k.tagsPage; n > 0 && len(tags) > n {
		tags = tags[:n]
		w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?last=%s&n=%d>; rel="next"`, repo, tags[n-1], n))
	}
	json.NewEncoder(w).Encode(map[string]any{"name": repo, "tags": tags})
}

// closedAddr returns an address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func httpHost(addr string, caps hosts.Capabilities) hosts.Host {
	return hosts.Host{Scheme: "http", Host: addr, Path: "/v2", Capabilities: caps, DialTimeout: 2 * time.Second, Mirror: true}
}

func hostList(hs ...hosts.Host) func(string) ([]hosts.Host, error) {
	return func(string) ([]hosts.Host, error) { return hs, nil }
}

const allCaps = hosts.CapabilityPull | hosts.CapabilityResolve | hosts.CapabilityPush

func newTestResolver(t *testing.T, opts Options) *Resolver {
	r := NewResolver(opts)
	t.Cleanup(r.CloseIdleConnections)
	return r
}

func tlsHost(srv *httptest.Server, trust bool) hosts.Host {
	h := hosts.Host{Scheme: "https", Host: srv.Listener.Addr().String(), Path: "/v2", Capabilities: allCaps, DialTimeout: 2 * time.Second}
	pool := x509.NewCertPool()
	if trust {
		pool.AddCert(srv.Certificate())
	}
	h.TLS = &tls.Config{RootCAs: pool}
	return h
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func newTestLogger(w io.Writer, mu *sync.Mutex) *slog.Logger {
	return slog.New(slog.NewTextHandler(lockedWriter{w, mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
