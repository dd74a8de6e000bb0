package credentials

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
)

// helperPrefix is the executable name prefix of Docker credential helpers.
const helperPrefix = "docker-credential-"

// helperNameRe keeps a helper name from a config file from being a path:
// the helper must come from PATH, like docker runs it.
var helperNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// DockerConfigPath returns where docker keeps config.json: in
// $DOCKER_CONFIG if set, else in ~/.docker.
func DockerConfigPath() (string, error) {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("finding docker's config.json: %w", err)
	}
	return filepath.Join(home, ".docker", "config.json"), nil
}

// dockerConfigFile is the part of config.json about registries.
type dockerConfigFile struct {
	Auths       map[string]dockerAuth `json:"auths"`
	CredsStore  string                `json:"credsStore"`
	CredHelpers map[string]string     `json:"credHelpers"`
}

type dockerAuth struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
}

// FromDockerConfig returns a Store reading the Docker config.json at path:
// its "auths" entries, and the credential helpers its "credsStore" and
// "credHelpers" name (docker-credential-<name> on PATH). A missing file is
// an empty Store, since most machines that pull have never run docker
// login.
//
// Helpers are run on every Get, not cached: tokens from helpers such as
// ecr-login expire, and a long-lived Store must not hand out stale ones.
func FromDockerConfig(path string) (Store, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &dockerStore{path: path}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading docker config: %w", err)
	}
	var cfg dockerConfigFile
	if err := json.Unmarshal(data, &cfg); err != nil {
		// The JSON error names a position and a type, never the
		// document's contents.
		return nil, fmt.Errorf("docker config %s: %v: %w", path, err, errdefs.ErrInvalidArgument)
	}
	s := &dockerStore{path: path, credsStore: cfg.CredsStore, helpers: map[string]string{}, auths: map[string]authEntry{}}
	if s.credsStore != "" && !helperNameRe.MatchString(s.credsStore) {
		return nil, fmt.Errorf("docker config %s: credsStore %q is not a credential helper name: %w", path, s.credsStore, errdefs.ErrInvalidArgument)
	}
	for _, key := range sortedKeys(cfg.CredHelpers) {
		name := cfg.CredHelpers[key]
		if !helperNameRe.MatchString(name) {
			return nil, fmt.Errorf("docker config %s: credHelpers[%q] = %q is not a credential helper name: %w", path, key, name, errdefs.ErrInvalidArgument)
		}
		if h := NormalizeHost(key); h != "" {
			if _, dup := s.helpers[h]; !dup {
				s.helpers[h] = name
			}
		}
	}
	// Several keys may name one registry ("https://index.docker.io/v1/"
	// and "docker.io"); usable credentials win over a broken entry, which
	// wins over an empty placeholder, and ties go to the first key in
	// sorted order so the choice does not depend on map iteration.
	for _, key := range sortedKeys(cfg.Auths) {
		h := NormalizeHost(key)
		if h == "" {
			continue
		}
		e := decodeAuth(path, key, cfg.Auths[key])
		if old, ok := s.auths[h]; !ok || e.rank() > old.rank() {
			s.auths[h] = e
		}
	}
	return s, nil
}

// authEntry is one decoded "auths" entry; a malformed one keeps its error
// for Get, so that it only fails pulls from that registry.
type authEntry struct {
	creds Credentials
	err   error
}

func (e authEntry) rank() int {
	switch {
	case e.err == nil && !e.creds.IsAnonymous():
		return 2
	case e.err != nil:
		return 1
	default:
		return 0
	}
}

func decodeAuth(path, key string, a dockerAuth) authEntry {
	c := Credentials{Username: a.Username, Secret: a.Password, IdentityToken: a.IdentityToken}
	if a.Auth != "" {
		user, pass, err := DecodeAuth(a.Auth)
		if err != nil {
			return authEntry{err: fmt.Errorf("docker config %s: auths[%q].auth: %w", path, key, err)}
		}
		c.Username, c.Secret = user, pass
	}
	return authEntry{creds: c}
}

// DecodeAuth decodes docker's "auth" field, base64 (padded or not) of
// "user:password", as config.json and a kubelet's pull auth carry it. The
// error shows neither the encoded nor the decoded value: both are the
// password.
func DecodeAuth(s string) (user, secret string, err error) {
	s = strings.TrimSpace(s)
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		raw, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	}
	user, secret, ok := strings.Cut(string(raw), ":")
	if err != nil || !ok {
		return "", "", fmt.Errorf("not base64 of user:password: %w", errdefs.ErrInvalidArgument)
	}
	// Some writers pad the password with NULs.
	return user, strings.Trim(secret, "\x00"), nil
}

// dockerStore is a parsed config.json.
type dockerStore struct {
	path       string
	credsStore string
	helpers    map[string]string // normalized host -> helper name
	auths      map[string]authEntry
}

// Get asks the registry's credential helper first (credHelpers, else
// credsStore), as docker does; when the helper has nothing, an inline
// "auths" entry still counts, which docker would ignore but which is what
// a user who wrote one means.
func (s *dockerStore) Get(ctx context.Context, host string) (Credentials, error) {
	h := NormalizeHost(host)
	if h == "" {
		return Credentials{}, fmt.Errorf("registry host must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	helper, ok := s.helpers[h]
	source := fmt.Sprintf("credHelpers[%q]", h)
	if !ok {
		helper, source = s.credsStore, "credsStore"
	}
	if helper != "" {
		c, err := runHelper(ctx, helper, helperServerURL(h))
		if err != nil {
			return Credentials{}, fmt.Errorf("credentials for %s (%s in %s): %w", h, source, s.path, err)
		}
		if !c.IsAnonymous() {
			return c, nil
		}
	}
	e := s.auths[h]
	return e.creds, e.err
}

// helperServerURL is the name docker passes to helpers, and so the name
// `docker login` stored the credentials under.
func helperServerURL(host string) string {
	if host == dockerHub {
		return dockerHubIndexURL
	}
	return host
}

// helperErrorLimit caps how much of a failing helper's output goes into an
// error message.
const helperErrorLimit = 256

// runHelper runs `docker-credential-<name> get` with server on stdin.
func runHelper(ctx context.Context, name, server string) (Credentials, error) {
	exe := helperPrefix + name
	cmd := exec.CommandContext(ctx, exe, "get")
	cmd.Stdin = strings.NewReader(server)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return Credentials{}, fmt.Errorf("%s get: %w", exe, ctxErr)
		}
		if errors.Is(err, exec.ErrNotFound) {
			return Credentials{}, fmt.Errorf("credential helper %s is not installed (not found on PATH): %w", exe, errdefs.ErrFailedPrecondition)
		}
		// Helpers report errors on stdout (docker-credential-helpers)
		// or stderr; on failure neither carries a secret.
		msg := strings.TrimSpace(stdout.String() + "\n" + stderr.String())
		if strings.Contains(strings.ToLower(msg), "credentials not found") {
			return Credentials{}, nil
		}
		if len(msg) > helperErrorLimit {
			msg = msg[:helperErrorLimit] + "..."
		}
		if msg != "" {
			msg = ": " + msg
		}
		return Credentials{}, fmt.Errorf("%s get: %v%s: %w", exe, err, msg, errdefs.ErrUnknown)
	}
	var out struct {
		ServerURL string
		Username  string
		Secret    string
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		// The output is not shown: it may hold the secret.
		return Credentials{}, fmt.Errorf("%s get: output is not the credential helper JSON: %w", exe, errdefs.ErrUnknown)
	}
	if out.Username == "<token>" {
		// docker's convention for identity (refresh) tokens.
		return Credentials{IdentityToken: out.Secret}, nil
	}
	return Credentials{Username: out.Username, Secret: out.Secret}, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
