package registrytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/internal/testimage"
)

// ManifestAccept lists every manifest media type, for the Accept header of a
// manifest GET: distribution 2.8 answers "manifest unknown" for an OCI
// manifest or index whose media type the request does not accept.
const ManifestAccept = ocispec.MediaTypeImageManifest + ", " + ocispec.MediaTypeImageIndex + ", " +
	"application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"

// Challenge is a parsed WWW-Authenticate challenge.
type Challenge struct {
	Scheme string            // "Basic" or "Bearer"
	Params map[string]string // lower-case keys: realm, service, scope, error
}

// ParseChallenges parses WWW-Authenticate header values such as
// `Bearer realm="https://h/token",service="s",scope="repository:r:pull,push"`.
func ParseChallenges(values []string) []Challenge {
	var out []Challenge
	for _, v := range values {
		s := strings.TrimSpace(v)
		for s != "" {
			i := strings.IndexAny(s, " \t")
			if i < 0 {
				i = len(s)
			}
			ch := Challenge{Scheme: s[:i], Params: map[string]string{}}
			s = strings.TrimLeft(s[i:], " \t")
			// Params: key=value or key="quoted", comma separated; a token
			// without '=' starts the next challenge.
			for s != "" {
				eq := strings.IndexByte(s, '=')
				sp := strings.IndexAny(s, " \t,")
				if eq < 0 || (sp >= 0 && sp < eq) {
					break
				}
				key := strings.ToLower(strings.TrimSpace(s[:eq]))
				s = s[eq+1:]
				var val string
				if strings.HasPrefix(s, `"`) {
					var b strings.Builder
					j := 1
					for ; j < len(s) && s[j] != '"'; j++ {
						if s[j] == '\\' && j+1 < len(s) {
							j++
						}
						b.WriteByte(s[j])
					}
					val, s = b.String(), s[min(j+1, len(s)):]
				} else {
					j := strings.IndexAny(s, ", \t")
					if j < 0 {
						j = len(s)
					}
					val, s = s[:j], s[j:]
				}
				ch.Params[key] = val
				s = strings.TrimLeft(s, " \t")
				s = strings.TrimLeft(strings.TrimPrefix(s, ","), " \t")
			}
			out = append(out, ch)
		}
	}
	return out
}

// repoOf returns the repository a /v2/<name>/... path addresses.
func repoOf(path string) string {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return ""
	}
	for _, part := range []string{"/blobs/", "/manifests/", "/tags/"} {
		if i := strings.LastIndex(rest, part); i > 0 {
			return rest[:i]
		}
	}
	return ""
}

// Do sends req to the registry with the fixture's credentials: basic auth
// behind Htpasswd, or behind Token a bearer token fetched from the token
// server when the registry challenges (cached per repository, and not
// recorded in TokenRequests). req's body must be replayable (as
// http.NewRequest makes it for bytes and strings readers).
func (r *Registry) Do(req *http.Request) (*http.Response, error) {
	repo := repoOf(req.URL.Path)
	send := func(bearer string) (*http.Response, error) {
		rq := req.Clone(req.Context())
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			rq.Body = body
		}
		switch {
		case r.opts.Htpasswd != nil:
			rq.SetBasicAuth(r.Username, r.Password)
		case bearer != "":
			rq.Header.Set("Authorization", "Bearer "+bearer)
		}
		return r.client.Do(rq)
	}
	r.mu.Lock()
	tok := r.tokens[repo]
	r.mu.Unlock()
	resp, err := send(tok)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || r.token == nil {
		return resp, err
	}
	var bearer *Challenge
	for _, c := range ParseChallenges(resp.Header.Values("WWW-Authenticate")) {
		if strings.EqualFold(c.Scheme, "Bearer") {
			bearer = &c
			break
		}
	}
	if bearer == nil {
		return resp, nil
	}
	resp.Body.Close()
	// Ask for push along with what the registry asked for, so one token
	// serves every later request of the fixture to this repository.
	scope := bearer.Params["scope"]
	if repo != "" {
		scope += " repository:" + repo + ":pull,push"
	}
	tok, err = r.fetchToken(bearer.Params["realm"], bearer.Params["service"], scope)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.tokens[repo] = tok
	r.mu.Unlock()
	return send(tok)
}

// fetchToken asks the token server for a token (GET with basic auth when
// the fixture has credentials), marked as the fixture's own request.
func (r *Registry) fetchToken(realm, service, scope string) (string, error) {
	u, err := url.Parse(realm)
	if err != nil {
		return "", fmt.Errorf("registrytest: realm %q: %w", realm, err)
	}
	qv := u.Query()
	qv.Set("service", service)
	for _, s := range strings.Fields(scope) {
		qv.Add("scope", s)
	}
	u.RawQuery = qv.Encode()
	req, err := http.NewRequest(http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	if r.Username != "" {
		req.SetBasicAuth(r.Username, r.Password)
	}
	req.Header.Set(fixtureHeader, r.token.secret)
	resp, err := r.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("registrytest: token server: %s: %s", resp.Status, body)
	}
	var tr struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		return "", fmt.Errorf("registrytest: token response: %w", err)
	}
	if tr.Token == "" {
		tr.Token = tr.AccessToken
	}
	return tr.Token, nil
}

// request sends a request built from method, url and body through Do and
// returns the response with its body read; it fails the test on a
// transport error or a status other than want.
func (r *Registry) request(t testing.TB, method, u string, body []byte, header http.Header, want ...int) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := r.Do(req)
	if err != nil {
		t.Fatalf("registrytest: %s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, w := range want {
		if resp.StatusCode == w {
			return resp, b
		}
	}
	t.Fatalf("registrytest: %s %s: %s: %s", method, u, resp.Status, b)
	return nil, nil
}

// PushBlob uploads b to repo (POST then a monolithic PUT ?digest=) unless
// the registry already has it.
func (r *Registry) PushBlob(t testing.TB, repo string, b testimage.Blob) {
	t.Helper()
	base := r.URL() + "/v2/" + repo + "/blobs/"
	if resp, _ := r.request(t, http.MethodHead, base+b.Desc.Digest.String(), nil, nil, http.StatusOK, http.StatusNotFound); resp.StatusCode == http.StatusOK {
		return
	}
	resp, _ := r.request(t, http.MethodPost, base+"uploads/", nil, nil, http.StatusAccepted)
	loc, err := resp.Location()
	if err != nil {
		t.Fatalf("registrytest: upload of %s to %s: %v", b.Desc.Digest, repo, err)
	}
	qv := loc.Query()
	qv.Set("digest", b.Desc.Digest.String())
	loc.RawQuery = qv.Encode()
	h := http.Header{"Content-Type": {"application/octet-stream"}}
	r.request(t, http.MethodPut, loc.String(), b.Data, h, http.StatusCreated)
}

// PushManifest puts manifest m (an image manifest or index) to repo under
// ref, a tag or its digest, with m's media type as Content-Type.
func (r *Registry) PushManifest(t testing.TB, repo, ref string, m testimage.Blob) {
	t.Helper()
	h := http.Header{"Content-Type": {m.Desc.MediaType}}
	resp, _ := r.request(t, http.MethodPut, r.URL()+"/v2/"+repo+"/manifests/"+ref, m.Data, h, http.StatusCreated)
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != m.Desc.Digest.String() {
		t.Fatalf("registrytest: registry stored manifest %s as %s", m.Desc.Digest, got)
	}
}

// Push uploads img's layers and config to repo, then its manifest under
// tag (by digest alone when tag is empty), with the fixture's credentials.
func (r *Registry) Push(t testing.TB, repo, tag string, img *testimage.Image) {
	t.Helper()
	for _, b := range append(append([]testimage.Blob{}, img.Layers...), img.Config) {
		r.PushBlob(t, repo, b)
	}
	if tag == "" {
		tag = img.Manifest.Desc.Digest.String()
	}
	r.PushManifest(t, repo, tag, img.Manifest)
}

// PushIndex pushes each image of idx by digest, then the index under tag
// (by digest alone when tag is empty).
func (r *Registry) PushIndex(t testing.TB, repo, tag string, idx *testimage.Index) {
	t.Helper()
	for _, img := range idx.Manifests {
		r.Push(t, repo, "", img)
	}
	if tag == "" {
		tag = idx.Index.Desc.Digest.String()
	}
	r.PushManifest(t, repo, tag, idx.Index)
}

// Manifest fetches the manifest repo:ref (a tag or digest), accepting every
// manifest media type, and returns its Content-Type and bytes; it fails the
// test unless the registry answers 200.
func (r *Registry) Manifest(t testing.TB, repo, ref string) (mediaType string, data []byte) {
	t.Helper()
	resp, b := r.request(t, http.MethodGet, r.URL()+"/v2/"+repo+"/manifests/"+ref, nil, http.Header{"Accept": {ManifestAccept}}, http.StatusOK)
	return resp.Header.Get("Content-Type"), b
}

// Blob fetches blob dgst of repo; it fails the test unless the registry
// answers 200 with content of that digest.
func (r *Registry) Blob(t testing.TB, repo string, dgst digest.Digest) []byte {
	t.Helper()
	_, b := r.request(t, http.MethodGet, r.URL()+"/v2/"+repo+"/blobs/"+dgst.String(), nil, nil, http.StatusOK)
	if digest.FromBytes(b) != dgst {
		t.Fatalf("registrytest: blob %s of %s has digest %s", dgst, repo, digest.FromBytes(b))
	}
	return b
}
