package registrytest

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"
)

// TokenOptions turn on bearer token authentication: the fixture runs a token
// server on 127.0.0.1 and the registry accepts the JWTs it issues.
type TokenOptions struct {
	// Users maps user names to passwords the token server accepts, as HTTP
	// basic credentials on GET or as an OAuth2 password grant on POST.
	Users map[string]string
	// AnonymousPull lets requests without credentials have tokens granting
	// pull only; without it they get 401.
	AnonymousPull bool
	// Expiry is how long tokens are valid (expires_in); zero means 5
	// minutes. Distribution allows a minute of clock skew beyond it.
	Expiry time.Duration
	// Authorize, when set, decides which of the requested actions user (""
	// when anonymous) gets on a resource (typ "repository", name the
	// repository). By default a valid user gets every requested action and
	// an anonymous one gets pull when AnonymousPull is set.
	Authorize func(user, typ, name string, requested []string) []string
}

// Scope is one resource access a token grants, the `access` claim entry.
type Scope struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// String formats the scope as a request parameter: type:name:a,b.
func (s Scope) String() string {
	return s.Type + ":" + s.Name + ":" + strings.Join(s.Actions, ",")
}

// ParseScope parses "repository:library/busybox:pull,push". The name may
// hold colons (a registry host with a port); the actions follow the last.
func ParseScope(s string) (Scope, error) {
	i, j := strings.Index(s, ":"), strings.LastIndex(s, ":")
	if i <= 0 || j == i {
		return Scope{}, fmt.Errorf("registrytest: malformed scope %q", s)
	}
	sc := Scope{Type: s[:i], Name: s[i+1 : j]}
	for _, a := range strings.Split(s[j+1:], ",") {
		if a != "" {
			sc.Actions = append(sc.Actions, a)
		}
	}
	return sc, nil
}

// TokenRequest is one request the token server answered.
type TokenRequest struct {
	// Method is GET (basic credentials or anonymous) or POST (OAuth2 form).
	Method string
	// User is the user name presented, "" when anonymous.
	User string
	// Service is the service parameter.
	Service string
	// Scopes are the scope parameters as sent, one entry per scope.
	Scopes []string
	// Status is the HTTP status answered: 200 with a token, else 400/401.
	Status int
	// Granted is the access the token carries.
	Granted []Scope
}

// tokenServer issues the JWTs the registry's token auth accepts: ES256,
// with the signing certificate (signed by the root in the registry's
// rootcertbundle) in the x5c header.
type tokenServer struct {
	srv     *httptest.Server
	service string
	issuer  string
	root    *certKey // in rootcertbundle
	signer  *certKey // signs tokens, sent in x5c
	opts    TokenOptions
	secret  string // marks the fixture's own requests

	mu       sync.Mutex
	requests []TokenRequest
}

const (
	tokenService = "registrytest"
	tokenIssuer  = "registrytest-token-issuer"
	// fixtureHeader carries the per-fixture secret on the fixture's own
	// token requests, which are neither recorded nor restricted.
	fixtureHeader = "X-Registrytest-Fixture"
)

func newTokenServer(opts TokenOptions, serverCert *certKey) (*tokenServer, error) {
	root, err := newCA("registrytest token root")
	if err != nil {
		return nil, err
	}
	signer, err := newCert(certSpec{commonName: "registrytest token signer"}, root)
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 16)
	rand.Read(secret)
	ts := &tokenServer{service: tokenService, issuer: tokenIssuer, root: root, signer: signer, opts: opts, secret: hex.EncodeToString(secret)}
	if ts.opts.Expiry <= 0 {
		ts.opts.Expiry = 5 * time.Minute
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ts.srv = httptest.NewUnstartedServer(http.HandlerFunc(ts.serveToken))
	ts.srv.Listener.Close()
	ts.srv.Listener = ln
	if serverCert != nil {
		ts.srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{serverCert.der}, PrivateKey: serverCert.key}}}
		ts.srv.StartTLS()
	} else {
		ts.srv.Start()
	}
	return ts, nil
}

func (ts *tokenServer) realm() string { return ts.srv.URL + "/token" }

func (ts *tokenServer) record(r TokenRequest, fixture bool) {
	if fixture {
		return
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.requests = append(ts.requests, r)
}

func (ts *tokenServer) recorded() []TokenRequest {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return slices.Clone(ts.requests)
}

func (ts *tokenServer) reset() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.requests = nil
}

func tokenError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="registrytest token"`)
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": msg})
}

func (ts *tokenServer) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/token" {
		http.NotFound(w, r)
		return
	}
	fixture := ts.secret != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get(fixtureHeader)), []byte(ts.secret)) == 1
	req := TokenRequest{Method: r.Method}
	var user, pass string
	var hasCreds bool
	var rawScopes []string
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		req.Service, rawScopes = q.Get("service"), q["scope"]
		user, pass, hasCreds = r.BasicAuth()
	case http.MethodPost:
		if err := r.ParseForm(); err != nil {
			req.Status = http.StatusBadRequest
			ts.record(req, fixture)
			tokenError(w, req.Status, "invalid_request", err.Error())
			return
		}
		req.Service, rawScopes = r.PostForm.Get("service"), r.PostForm["scope"]
		if gt := r.PostForm.Get("grant_type"); gt != "password" {
			req.Status = http.StatusBadRequest
			ts.record(req, fixture)
			tokenError(w, req.Status, "unsupported_grant_type", fmt.Sprintf("grant_type %q is not supported", gt))
			return
		}
		user, pass, hasCreds = r.PostForm.Get("username"), r.PostForm.Get("password"), true
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	req.User = user
	// A scope parameter may hold several space-separated scopes.
	var scopes []Scope
	for _, raw := range rawScopes {
		for _, s := range strings.Fields(raw) {
			req.Scopes = append(req.Scopes, s)
			sc, err := ParseScope(s)
			if err != nil {
				req.Status = http.StatusBadRequest
				ts.record(req, fixture)
				tokenError(w, req.Status, "invalid_scope", err.Error())
				return
			}
			scopes = append(scopes, sc)
		}
	}
	if req.Service != ts.service {
		req.Status = http.StatusBadRequest
		ts.record(req, fixture)
		tokenError(w, req.Status, "invalid_request", fmt.Sprintf("unknown service %q", req.Service))
		return
	}
	if hasCreds {
		want, ok := ts.opts.Users[user]
		if !ok || subtle.ConstantTimeCompare([]byte(want), []byte(pass)) != 1 {
			if !fixture {
				req.Status = http.StatusUnauthorized
				ts.record(req, fixture)
				tokenError(w, req.Status, "invalid_grant", "wrong user name or password")
				return
			}
		}
	} else if !ts.opts.AnonymousPull && !fixture {
		req.Status = http.StatusUnauthorized
		ts.record(req, fixture)
		tokenError(w, req.Status, "unauthorized", "credentials required")
		return
	}
	for _, sc := range scopes {
		actions := sc.Actions
		switch {
		case fixture:
		case ts.opts.Authorize != nil:
			actions = ts.opts.Authorize(user, sc.Type, sc.Name, slices.Clone(sc.Actions))
		case !hasCreds:
			actions = nil
			if slices.Contains(sc.Actions, "pull") {
				actions = []string{"pull"}
			}
		}
		req.Granted = append(req.Granted, Scope{Type: sc.Type, Name: sc.Name, Actions: actions})
	}
	now := time.Now()
	tok, err := ts.sign(user, req.Granted, now)
	if err != nil {
		req.Status = http.StatusInternalServerError
		ts.record(req, fixture)
		tokenError(w, req.Status, "server_error", err.Error())
		return
	}
	req.Status = http.StatusOK
	ts.record(req, fixture)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"token":        tok,
		"access_token": tok,
		"expires_in":   int(ts.opts.Expiry / time.Second),
		"issued_at":    now.UTC().Format(time.RFC3339),
	})
}

// claims are the JWT claims distribution's token auth checks.
type claims struct {
	Issuer    string  `json:"iss"`
	Subject   string  `json:"sub"`
	Audience  string  `json:"aud"`
	Expiry    int64   `json:"exp"`
	NotBefore int64   `json:"nbf"`
	IssuedAt  int64   `json:"iat"`
	JWTID     string  `json:"jti"`
	Access    []Scope `json:"access"`
}

// sign makes a compact JWS (ES256) for subject with access.
func (ts *tokenServer) sign(subject string, access []Scope, now time.Time) (string, error) {
	for i := range access {
		if access[i].Actions == nil {
			access[i].Actions = []string{}
		}
	}
	if access == nil {
		access = []Scope{}
	}
	jti := make([]byte, 16)
	rand.Read(jti)
	header := map[string]any{
		"typ": "JWT",
		"alg": "ES256",
		"x5c": []string{base64.StdEncoding.EncodeToString(ts.signer.der)},
	}
	c := claims{
		Issuer: ts.issuer, Subject: subject, Audience: ts.service,
		Expiry: now.Add(ts.opts.Expiry).Unix(), NotBefore: now.Add(-time.Second).Unix(), IssuedAt: now.Unix(),
		JWTID: hex.EncodeToString(jti), Access: access,
	}
	hb, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	cb, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(hb) + "." + enc.EncodeToString(cb)
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, ts.signer.key, sum[:])
	if err != nil {
		return "", err
	}
	// JWS ES256 signatures are R and S as 32-byte big-endian halves.
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + enc.EncodeToString(sig), nil
}
