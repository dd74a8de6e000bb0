package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
)

const (
	// defaultTokenLifetime is what the token spec says to assume when a
	// token response has no expires_in.
	defaultTokenLifetime = 60 * time.Second
	// tokenMargin is how long before expiry a token is replaced, so that
	// it does not expire between the check and the registry reading it.
	tokenMargin      = 30 * time.Second
	maxTokenResponse = 1 << 20
	// maxTokens bounds the cache; expired tokens are pruned beyond it.
	maxTokens = 256
)

// challenge is one WWW-Authenticate challenge.
type challenge struct {
	scheme string // lower case
	params map[string]string
}

// parseChallenges parses WWW-Authenticate headers, each of which may hold
// several challenges: `Bearer realm="…",service="…", Basic realm="…"`.
func parseChallenges(headers []string) []challenge {
	var out []challenge
	for _, s := range headers {
		var cur *challenge
		i := 0
		for i < len(s) {
			for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == ',') {
				i++
			}
			start := i
			for i < len(s) && s[i] != ' ' && s[i] != '\t' && s[i] != ',' && s[i] != '=' {
				i++
			}
			tok := s[start:i]
			if tok == "" {
				// A stray '=' (token68 padding); skip it.
				i++
				continue
			}
			j := i
			for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
				j++
			}
			if j < len(s) && s[j] == '=' && cur != nil {
				i = j + 1
				for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
					i++
				}
				var val string
				if i < len(s) && s[i] == '"' {
					var b strings.Builder
					i++
					for i < len(s) && s[i] != '"' {
						if s[i] == '\\' && i+1 < len(s) {
							i++
						}
						b.WriteByte(s[i])
						i++
					}
					i++ // closing quote
					val = b.String()
				} else {
					vs := i
					for i < len(s) && s[i] != ',' && s[i] != ' ' && s[i] != '\t' {
						i++
					}
					val = s[vs:i]
				}
				cur.params[strings.ToLower(tok)] = val
				continue
			}
			if j < len(s) && s[j] == '=' {
				// A parameter before any scheme: malformed; skip it.
				i = j + 1
				continue
			}
			out = append(out, challenge{scheme: strings.ToLower(tok), params: map[string]string{}})
			cur = &out[len(out)-1]
		}
	}
	return out
}

// hostAuth is what a host asked for the last time it challenged us.
type hostAuth struct {
	scheme  string // "basic" or "bearer"
	realm   string
	service string
	// user and secret are cached Basic credentials, so that the
	// credentials callback (maybe a helper program) is not run per request.
	user, secret string
	haveCreds    bool
}

type token struct {
	value     string
	refreshAt time.Time
}

type tokenCall struct {
	done chan struct{}
	tok  token
	err  error
	// abandoned says the fetching caller's context ended, so its error
	// says nothing about the realm.
	abandoned bool
}

// sentAuth is what authorize put on a request, so that a 401 can tell a
// stale token from missing credentials.
type sentAuth struct {
	scheme string
	key    string
	token  string
}

// authCache holds each host's auth scheme and the bearer tokens obtained.
type authCache struct {
	creds func(ctx context.Context, host string) (string, string, error)
	ua    string
	log   *slog.Logger

	mu       sync.Mutex
	hosts    map[string]*hostAuth
	tokens   map[string]token
	inflight map[string]*tokenCall
}

func newAuthCache(creds func(context.Context, string) (string, string, error), ua string, log *slog.Logger) *authCache {
	return &authCache{
		creds:    creds,
		ua:       ua,
		log:      log,
		hosts:    make(map[string]*hostAuth),
		tokens:   make(map[string]token),
		inflight: make(map[string]*tokenCall),
	}
}

func hostKey(ep *endpoint) string { return ep.Scheme + "://" + ep.Host.Host }

func (a *authCache) credentials(ctx context.Context, ep *endpoint) (string, string, error) {
	if a.creds == nil {
		return "", "", nil
	}
	u, s, err := a.creds(ctx, ep.Host.Host)
	if err != nil {
		// The callback's error is reported without its arguments' values.
		return "", "", &hostErr{kind: errdefs.ErrUnauthenticated, reason: "getting credentials: " + err.Error(), cause: err}
	}
	return u, s, nil
}

// authorize adds an Authorization header to req if the host asked for one
// before. Requests to other hosts (an upload location elsewhere) get none.
func (a *authCache) authorize(ctx context.Context, ep *endpoint, scopes []string, req *http.Request) (sentAuth, error) {
	if req.URL.Host != ep.Host.Host {
		return sentAuth{}, nil
	}
	hk := hostKey(ep)
	a.mu.Lock()
	ha, ok := a.hosts[hk]
	var copied hostAuth
	if ok {
		copied = *ha
	}
	a.mu.Unlock()
	if !ok {
		return sentAuth{}, nil
	}
	switch copied.scheme {
	case "basic":
		u, s := copied.user, copied.secret
		if !copied.haveCreds {
			var err error
			if u, s, err = a.credentials(ctx, ep); err != nil {
				return sentAuth{}, err
			}
			a.mu.Lock()
			if ha := a.hosts[hk]; ha != nil && ha.scheme == "basic" {
				ha.user, ha.secret, ha.haveCreds = u, s, true
			}
			a.mu.Unlock()
		}
		if u == "" && s == "" {
			return sentAuth{}, nil
		}
		req.SetBasicAuth(u, s)
		return sentAuth{scheme: "basic"}, nil
	case "bearer":
		key, tok, err := a.token(ctx, ep, copied, scopes)
		if err != nil {
			return sentAuth{}, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		return sentAuth{scheme: "bearer", key: key, token: tok}, nil
	}
	return sentAuth{}, nil
}

// challenged records a host's 401 challenge and says whether the request
// is worth repeating, with which scopes.
func (a *authCache) challenged(ctx context.Context, ep *endpoint, chs []challenge, sent sentAuth, scopes []string) ([]string, bool) {
	var bearer, basic *challenge
	for i := range chs {
		switch chs[i].scheme {
		case "bearer":
			if bearer == nil {
				bearer = &chs[i]
			}
		case "basic":
			if basic == nil {
				basic = &chs[i]
			}
		}
	}
	hk := hostKey(ep)
	switch {
	case bearer != nil:
		realm := bearer.params["realm"]
		if realm == "" {
			return scopes, false
		}
		a.mu.Lock()
		a.hosts[hk] = &hostAuth{scheme: "bearer", realm: realm, service: bearer.params["service"]}
		if sent.scheme == "bearer" {
			// Tokens can be revoked or expire early; a 401 with a
			// cached token gets one fresh token before giving up.
			if t, ok := a.tokens[sent.key]; ok && t.value == sent.token {
				delete(a.tokens, sent.key)
			}
		}
		a.mu.Unlock()
		for _, s := range strings.Fields(bearer.params["scope"]) {
			if !slices.Contains(scopes, s) {
				scopes = append(slices.Clip(scopes), s)
			}
		}
		return scopes, true
	case basic != nil:
		a.mu.Lock()
		defer a.mu.Unlock()
		if sent.scheme == "basic" {
			// The credentials were refused; look them up again next
			// time in case they changed.
			a.hosts[hk] = &hostAuth{scheme: "basic"}
			return scopes, false
		}
		a.hosts[hk] = &hostAuth{scheme: "basic"}
		return scopes, a.creds != nil
	}
	return scopes, false
}

// token returns a bearer token for scopes on ep, from the cache or from the
// realm. Concurrent callers for the same key share one fetch.
func (a *authCache) token(ctx context.Context, ep *endpoint, ha hostAuth, scopes []string) (key, value string, err error) {
	sorted := slices.Clone(scopes)
	slices.Sort(sorted)
	key = hostKey(ep) + " " + ha.realm + " " + ha.service + " " + strings.Join(sorted, " ")
	for {
		a.mu.Lock()
		if t, ok := a.tokens[key]; ok && time.Now().Before(t.refreshAt) {
			a.mu.Unlock()
			return key, t.value, nil
		}
		if c, ok := a.inflight[key]; ok {
			a.mu.Unlock()
			select {
			case <-c.done:
			case <-ctx.Done():
				return key, "", ctx.Err()
			}
			if c.abandoned {
				// Fetch again under our own context.
				continue
			}
			if c.err != nil {
				return key, "", c.err
			}
			return key, c.tok.value, nil
		}
		c := &tokenCall{done: make(chan struct{})}
		a.inflight[key] = c
		a.mu.Unlock()

		c.tok, c.err = a.fetchToken(ctx, ep, ha, sorted)
		c.abandoned = c.err != nil && ctx.Err() != nil

		a.mu.Lock()
		delete(a.inflight, key)
		if c.err == nil {
			if len(a.tokens) >= maxTokens {
				now := time.Now()
				for k, t := range a.tokens {
					if now.After(t.refreshAt) {
						delete(a.tokens, k)
					}
				}
			}
			a.tokens[key] = c.tok
		}
		close(c.done)
		a.mu.Unlock()
		return key, c.tok.value, c.err
	}
}

// fetchToken asks the realm for a token as the distribution token spec
// says: an identity token (empty username) is exchanged with an OAuth2
// refresh_token POST, anything else with a GET carrying Basic credentials
// if there are any.
func (a *authCache) fetchToken(ctx context.Context, ep *endpoint, ha hostAuth, scopes []string) (token, error) {
	realm, err := url.Parse(ha.realm)
	if err != nil || (realm.Scheme != "https" && realm.Scheme != "http") || realm.Host == "" {
		return token{}, &hostErr{kind: errdefs.ErrUnauthenticated, reason: fmt.Sprintf("bad token realm %q", ha.realm), answered: true}
	}
	where := realm.Scheme + "://" + realm.Host + realm.Path
	user, secret, err := a.credentials(ctx, ep)
	if err != nil {
		return token{}, err
	}
	var req *http.Request
	if user == "" && secret != "" {
		form := url.Values{}
		form.Set("grant_type", "refresh_token")
		form.Set("refresh_token", secret)
		form.Set("client_id", "hull")
		if ha.service != "" {
			form.Set("service", ha.service)
		}
		if len(scopes) > 0 {
			form.Set("scope", strings.Join(scopes, " "))
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, realm.String(), strings.NewReader(form.Encode()))
		if err != nil {
			return token{}, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		q := realm.Query()
		if ha.service != "" {
			q.Set("service", ha.service)
		}
		for _, s := range scopes {
			q.Add("scope", s)
		}
		realm.RawQuery = q.Encode()
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, realm.String(), nil)
		if err != nil {
			return token{}, err
		}
		if user != "" || secret != "" {
			req.SetBasicAuth(user, secret)
		}
	}
	if a.ua != "" {
		req.Header.Set("User-Agent", a.ua)
	}
	a.log.DebugContext(ctx, "fetching registry token", "realm", where, "service", ha.service, "scopes", scopes, "identity_token", user == "" && secret != "", "basic", user != "")
	resp, err := ep.clients.normal.Do(req)
	if err != nil {
		he := toHostErr(err)
		return token{}, &hostErr{kind: he.kind, reason: "fetching token from " + where + ": " + he.reason, next: he.next, cause: he.cause}
	}
	defer drain(resp.Body)
	if resp.StatusCode != http.StatusOK {
		he := &hostErr{kind: errdefs.ErrUnauthenticated, reason: "fetching token from " + where + ": " + resp.Status, answered: true}
		if retryableStatus(resp.StatusCode) {
			he.kind, he.next = errdefs.ErrUnavailable, true
		}
		return token{}, he
	}
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxTokenResponse)).Decode(&body); err != nil {
		return token{}, &hostErr{kind: errdefs.ErrUnauthenticated, reason: "fetching token from " + where + ": bad response: " + err.Error(), answered: true}
	}
	value := body.AccessToken
	if value == "" {
		value = body.Token
	}
	if value == "" {
		return token{}, &hostErr{kind: errdefs.ErrUnauthenticated, reason: "fetching token from " + where + ": response has no token", answered: true}
	}
	life := defaultTokenLifetime
	if body.ExpiresIn > 0 {
		life = time.Duration(body.ExpiresIn) * time.Second
	}
	// Short-lived tokens are kept for half their life rather than not at
	// all.
	keep := max(life-tokenMargin, life/2)
	return token{value: value, refreshAt: time.Now().Add(keep)}, nil
}
