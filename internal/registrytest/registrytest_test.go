package registrytest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/internal/testimage"
)

func sampleImage() *testimage.Image {
	return testimage.New([]string{"/bin/sh"},
		[]testimage.File{{Name: "hello.txt", Data: []byte("hello\n")}},
		[]testimage.File{{Name: "second.txt", Data: []byte("second\n")}})
}

// get sends a GET with Accept for every manifest type through client,
// optionally with basic credentials or a bearer token.
func get(t *testing.T, client *http.Client, u string, auth func(*http.Request)) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", ManifestAccept)
	if auth != nil {
		auth(req)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func basic(user, pass string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(user, pass) }
}

func bearer(tok string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func wantManifest(t *testing.T, resp *http.Response, body []byte, m testimage.Blob) {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET manifest: %s: %s", resp.Status, body)
	}
	if !bytes.Equal(body, m.Data) || resp.Header.Get("Content-Type") != m.Desc.MediaType || resp.Header.Get("Docker-Content-Digest") != m.Desc.Digest.String() {
		t.Fatalf("GET manifest: got %s %s (%d bytes), want %s %s", resp.Header.Get("Content-Type"), resp.Header.Get("Docker-Content-Digest"), len(body), m.Desc.MediaType, m.Desc.Digest)
	}
}

// plainClient trusts nothing but the system roots.
func plainClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
}

func TestPlain(t *testing.T) {
	t.Parallel()
	r := Start(t, Options{})
	if !strings.HasPrefix(r.Host(), "127.0.0.1:") || r.URL() != "http://"+r.Host() {
		t.Fatalf("Host %q URL %q", r.Host(), r.URL())
	}
	img := sampleImage()
	r.Push(t, "test/plain", "v1", img)
	r.Push(t, "test/plain", "v1", img) // again: blobs already there
	resp, body := get(t, plainClient(), r.URL()+"/v2/test/plain/manifests/v1", nil)
	wantManifest(t, resp, body, img.Manifest)
	resp, body = get(t, plainClient(), r.URL()+"/v2/test/plain/manifests/"+img.Manifest.Desc.Digest.String(), nil)
	wantManifest(t, resp, body, img.Manifest)
	for _, l := range img.Layers {
		if b := r.Blob(t, "test/plain", l.Desc.Digest); !bytes.Equal(b, l.Data) {
			t.Fatalf("layer %s differs", l.Desc.Digest)
		}
	}
	if mt, b := r.Manifest(t, "test/plain", "v1"); mt != img.Manifest.Desc.MediaType || !bytes.Equal(b, img.Manifest.Data) {
		t.Fatalf("Manifest: %s", mt)
	}
}

func TestIndexAndRestart(t *testing.T) {
	t.Parallel()
	r := Start(t, Options{})
	shared := []testimage.File{{Name: "shared", Data: []byte("same in both\n")}}
	amd := testimage.NewFor(ocispec.Platform{OS: "linux", Architecture: "amd64"}, []string{"/x"}, shared)
	arm := testimage.NewFor(ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, []string{"/x"}, shared, []testimage.File{{Name: "arm"}})
	idx := testimage.NewIndex(amd, arm)
	r.PushIndex(t, "multi", "latest", idx)
	pid := r.PID()
	r.Restart()
	if r.PID() == pid {
		t.Fatal("Restart kept the process")
	}
	resp, body := get(t, plainClient(), r.URL()+"/v2/multi/manifests/latest", nil)
	wantManifest(t, resp, body, idx.Index)
	for _, img := range idx.Manifests {
		resp, body := get(t, plainClient(), r.URL()+"/v2/multi/manifests/"+img.Manifest.Desc.Digest.String(), nil)
		wantManifest(t, resp, body, img.Manifest)
	}
	// Stop leaves nothing listening.
	old := r.PID()
	r.Stop()
	if err := syscall.Kill(old, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("registry pid %d still there after Stop: %v", old, err)
	}
	if _, err := plainClient().Get(r.URL() + "/v2/"); err == nil {
		t.Fatal("registry still answers after Stop")
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	r := Start(t, Options{TLS: true})
	if !strings.HasPrefix(r.URL(), "https://127.0.0.1:") || r.CAFile == "" || r.ClientCertFile != "" {
		t.Fatalf("URL %q CAFile %q ClientCertFile %q", r.URL(), r.CAFile, r.ClientCertFile)
	}
	img := sampleImage()
	r.Push(t, "tls", "v1", img)
	if _, err := plainClient().Get(r.URL() + "/v2/"); err == nil {
		t.Fatal("a client without the CA trusted the registry")
	}
	pem, err := os.ReadFile(r.CAFile)
	if err != nil || !bytes.Equal(pem, r.CACertPEM) {
		t.Fatalf("CAFile: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("CAFile holds no certificate")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
	resp, body := get(t, client, r.URL()+"/v2/tls/manifests/v1", nil)
	wantManifest(t, resp, body, img.Manifest)
	// The certificate also names localhost.
	resp, body = get(t, client, "https://localhost:"+strings.TrimPrefix(r.Host(), "127.0.0.1:")+"/v2/tls/manifests/v1", nil)
	wantManifest(t, resp, body, img.Manifest)
}

func TestClientCA(t *testing.T) {
	t.Parallel()
	r := Start(t, Options{ClientCA: true})
	img := sampleImage()
	r.Push(t, "mtls", "v1", img)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(r.CACertPEM)
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
	if resp, err := noCert.Get(r.URL() + "/v2/"); err == nil {
		resp.Body.Close()
		t.Fatalf("a client without a certificate got %s", resp.Status)
	}
	cert, err := tls.LoadX509KeyPair(r.ClientCertFile, r.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}, DisableKeepAlives: true}}
	resp, body := get(t, client, r.URL()+"/v2/mtls/manifests/v1", nil)
	wantManifest(t, resp, body, img.Manifest)
}

func TestHtpasswd(t *testing.T) {
	t.Parallel()
	r := Start(t, Options{Htpasswd: map[string]string{"bob": "b0b-pass", "alice": "s3cret"}})
	if r.Username != "alice" || r.Password != "s3cret" {
		t.Fatalf("fixture credentials %q/%q", r.Username, r.Password)
	}
	img := sampleImage()
	r.Push(t, "private", "v1", img)
	u := r.URL() + "/v2/private/manifests/v1"
	resp, body := get(t, plainClient(), u, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
		t.Fatalf("anonymous: %s %q: %s", resp.Status, resp.Header.Get("WWW-Authenticate"), body)
	}
	for _, creds := range [][2]string{{"alice", "wrong"}, {"mallory", "s3cret"}} {
		if resp, _ := get(t, plainClient(), u, basic(creds[0], creds[1])); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s/%s: %s", creds[0], creds[1], resp.Status)
		}
	}
	resp, body = get(t, plainClient(), u, basic("bob", "b0b-pass"))
	wantManifest(t, resp, body, img.Manifest)
}

// tokenFor runs the token flow by hand: the registry's challenge for u,
// then a GET to its realm with auth.
func tokenFor(t *testing.T, client *http.Client, u string, auth func(*http.Request)) (status int, token string, ch Challenge) {
	t.Helper()
	resp, body := get(t, client, u, nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET without token: %s: %s", resp.Status, body)
	}
	chs := ParseChallenges(resp.Header.Values("WWW-Authenticate"))
	if len(chs) != 1 || chs[0].Scheme != "Bearer" {
		t.Fatalf("challenge %q", resp.Header.Values("WWW-Authenticate"))
	}
	ch = chs[0]
	tu, err := url.Parse(ch.Params["realm"])
	if err != nil {
		t.Fatal(err)
	}
	q := tu.Query()
	q.Set("service", ch.Params["service"])
	q.Set("scope", ch.Params["scope"])
	tu.RawQuery = q.Encode()
	req, _ := http.NewRequest(http.MethodGet, tu.String(), nil)
	if auth != nil {
		auth(req)
	}
	tresp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer tresp.Body.Close()
	var tr struct {
		Token string `json:"token"`
	}
	json.NewDecoder(tresp.Body).Decode(&tr)
	return tresp.StatusCode, tr.Token, ch
}

func TestToken(t *testing.T) {
	t.Parallel()
	r := Start(t, Options{Token: &TokenOptions{Users: map[string]string{"carol": "c4rol"}}})
	img := sampleImage()
	r.Push(t, "team/app", "v1", img)
	if n := len(r.TokenRequests()); n != 0 {
		t.Fatalf("the fixture's own token requests were recorded: %+v", r.TokenRequests())
	}
	u := r.URL() + "/v2/team/app/manifests/v1"
	client := plainClient()

	status, tok, ch := tokenFor(t, client, u, basic("carol", "c4rol"))
	if status != http.StatusOK || tok == "" {
		t.Fatalf("token: %d", status)
	}
	if ch.Params["realm"] != r.TokenRealm() || ch.Params["service"] != r.TokenService() || ch.Params["scope"] != "repository:team/app:pull" {
		t.Fatalf("challenge %+v", ch.Params)
	}
	resp, body := get(t, client, u, bearer(tok))
	wantManifest(t, resp, body, img.Manifest)

	// A forged or garbled token is refused.
	if resp, _ := get(t, client, u, bearer(tok[:len(tok)-4]+"AAAA")); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad signature: %s", resp.Status)
	}
	// Wrong credentials and anonymous requests get no token.
	if status, _, _ := tokenFor(t, client, u, basic("carol", "nope")); status != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", status)
	}
	if status, _, _ := tokenFor(t, client, u, nil); status != http.StatusUnauthorized {
		t.Fatalf("anonymous: %d", status)
	}
	// The OAuth2 password grant (containerd's first try) works too.
	form := url.Values{"grant_type": {"password"}, "username": {"carol"}, "password": {"c4rol"}, "service": {r.TokenService()}, "scope": {"repository:team/app:pull"}, "client_id": {"test"}}
	presp, err := client.PostForm(r.TokenRealm(), form)
	if err != nil {
		t.Fatal(err)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	json.NewDecoder(presp.Body).Decode(&tr)
	presp.Body.Close()
	if presp.StatusCode != http.StatusOK || tr.ExpiresIn != 300 {
		t.Fatalf("POST token: %s %+v", presp.Status, tr)
	}
	resp, body = get(t, client, u, bearer(tr.AccessToken))
	wantManifest(t, resp, body, img.Manifest)

	reqs := r.TokenRequests()
	var got []string
	for _, q := range reqs {
		got = append(got, q.Method+" "+q.User+" "+strings.Join(q.Scopes, " ")+" "+http.StatusText(q.Status))
	}
	want := []string{
		"GET carol repository:team/app:pull OK",
		"GET carol repository:team/app:pull Unauthorized",
		"GET  repository:team/app:pull Unauthorized",
		"POST carol repository:team/app:pull OK",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("token requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if g := reqs[0].Granted; len(g) != 1 || g[0].String() != "repository:team/app:pull" {
		t.Fatalf("granted %+v", g)
	}
	r.ResetTokenRequests()
	if len(r.TokenRequests()) != 0 {
		t.Fatal("ResetTokenRequests kept requests")
	}
}

func TestTokenAnonymousPull(t *testing.T) {
	t.Parallel()
	r := Start(t, Options{Token: &TokenOptions{AnonymousPull: true}})
	img := sampleImage()
	r.Push(t, "public", "v1", img) // the fixture may push without users
	client := plainClient()
	status, tok, _ := tokenFor(t, client, r.URL()+"/v2/public/manifests/v1", nil)
	if status != http.StatusOK {
		t.Fatalf("anonymous token: %d", status)
	}
	resp, body := get(t, client, r.URL()+"/v2/public/manifests/v1", bearer(tok))
	wantManifest(t, resp, body, img.Manifest)
	// A pull-only token cannot start an upload.
	req, _ := http.NewRequest(http.MethodPost, r.URL()+"/v2/public/blobs/uploads/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	presp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	presp.Body.Close()
	if presp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("push with a pull token: %s", presp.Status)
	}
	// Asking for push anonymously grants pull only.
	tu, _ := url.Parse(r.TokenRealm())
	tu.RawQuery = url.Values{"service": {r.TokenService()}, "scope": {"repository:public:pull,push"}}.Encode()
	tresp, err := client.Get(tu.String())
	if err != nil {
		t.Fatal(err)
	}
	tresp.Body.Close()
	reqs := r.TokenRequests()
	if len(reqs) != 2 || len(reqs[1].Granted) != 1 || !reflect.DeepEqual(reqs[1].Granted[0].Actions, []string{"pull"}) {
		t.Fatalf("token requests %+v", reqs)
	}
}

func TestMirror(t *testing.T) {
	t.Parallel()
	upstream := Start(t, Options{TLS: true, Token: &TokenOptions{Users: map[string]string{"up": "stream"}}})
	img := sampleImage()
	idx := testimage.NewIndex(
		testimage.NewFor(ocispec.Platform{OS: "linux", Architecture: "amd64"}, []string{"/x"}, []testimage.File{{Name: "a"}}),
		testimage.NewFor(ocispec.Platform{OS: "linux", Architecture: "arm64"}, []string{"/x"}, []testimage.File{{Name: "b"}}),
	)
	upstream.Push(t, "library/app", "v1", img)
	upstream.PushIndex(t, "library/multi", "v2", idx)
	upstream.ResetTokenRequests()

	mirror := Start(t, Options{ProxyRemoteURL: upstream.URL(), ProxyRemoteCAFile: upstream.CAFile, ProxyUsername: "up", ProxyPassword: "stream"})
	client := plainClient()
	resp, body := get(t, client, mirror.URL()+"/v2/library/app/manifests/v1", nil)
	wantManifest(t, resp, body, img.Manifest)
	for _, l := range img.Layers {
		if b := mirror.Blob(t, "library/app", l.Desc.Digest); !bytes.Equal(b, l.Data) {
			t.Fatalf("layer %s differs through the mirror", l.Desc.Digest)
		}
	}
	resp, body = get(t, client, mirror.URL()+"/v2/library/multi/manifests/v2", nil)
	wantManifest(t, resp, body, idx.Index)
	resp, body = get(t, client, mirror.URL()+"/v2/library/multi/manifests/"+idx.Manifests[1].Manifest.Desc.Digest.String(), nil)
	wantManifest(t, resp, body, idx.Manifests[1].Manifest)
	// The mirror fetched through the upstream's token server as "up".
	reqs := upstream.TokenRequests()
	if len(reqs) == 0 {
		t.Fatal("the mirror asked the upstream's token server nothing")
	}
	for _, q := range reqs {
		if q.User != "up" || q.Status != http.StatusOK {
			t.Fatalf("upstream token request %+v", q)
		}
	}
}

func TestParseChallenges(t *testing.T) {
	got := ParseChallenges([]string{
		`Bearer realm="https://127.0.0.1:5000/token",service="registry",scope="repository:a/b:pull,push",error="insufficient_scope"`,
		`Basic realm="x \"y\"", Bearer realm=r`,
	})
	want := []Challenge{
		{"Bearer", map[string]string{"realm": "https://127.0.0.1:5000/token", "service": "registry", "scope": "repository:a/b:pull,push", "error": "insufficient_scope"}},
		{"Basic", map[string]string{"realm": `x "y"`}},
		{"Bearer", map[string]string{"realm": "r"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	sc, err := ParseScope("repository:127.0.0.1:5000/x:pull,push")
	if err != nil || sc.Type != "repository" || sc.Name != "127.0.0.1:5000/x" || !reflect.DeepEqual(sc.Actions, []string{"pull", "push"}) {
		t.Fatalf("ParseScope: %+v %v", sc, err)
	}
}
