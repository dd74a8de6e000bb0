package images

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestNormalizeRef(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":                             "docker.io/library/busybox:latest",
		"busybox:1.36":                        "docker.io/library/busybox:1.36",
		"library/busybox":                     "docker.io/library/busybox:latest",
		"127.0.0.1:5000/test/a:1":             "127.0.0.1:5000/test/a:1",
		"registry.k8s.io/pause:3.10":          "registry.k8s.io/pause:3.10",
		"busybox@sha256:" + hex64('a'):        "docker.io/library/busybox@sha256:" + hex64('a'),
		"busybox:1@sha256:" + hex64('b'):      "docker.io/library/busybox@sha256:" + hex64('b'),
		"quay.io/x/y:v1@sha256:" + hex64('c'): "quay.io/x/y@sha256:" + hex64('c'),
	} {
		got, err := normalizeRef(in)
		if err != nil || got.String() != want {
			t.Errorf("normalizeRef(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "Busybox", "busybox:", "a b", "busybox@sha256:123", hex64('a'), "-x/y"} {
		_, err := normalizeRef(bad)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("normalizeRef(%q) = %v; want InvalidArgument", bad, err)
			continue
		}
		if bad != "" && !strings.Contains(err.Error(), bad) {
			t.Errorf("normalizeRef(%q): error %q does not name the reference", bad, err)
		}
	}
}

func hex64(c byte) string { return strings.Repeat(string(c), 64) }

func TestClassifyName(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind nameKind
		norm string
	}{
		{"sha256:" + hex64('1'), kindID, "sha256:" + hex64('1')},
		{"docker.io/library/busybox:latest", kindTag, "docker.io/library/busybox:latest"},
		{"busybox:latest", kindTag, "docker.io/library/busybox:latest"},
		{"x/y@sha256:" + hex64('2'), kindDigest, "docker.io/x/y@sha256:" + hex64('2')},
		{"x/y:t@sha256:" + hex64('2'), kindDigest, "docker.io/x/y@sha256:" + hex64('2')},
		{"docker.io/library/busybox", kindOther, ""},
		{"my image", kindOther, ""},
	} {
		k, n := classifyName(tc.name)
		if k != tc.kind || n != tc.norm {
			t.Errorf("classifyName(%q) = %v, %q; want %v, %q", tc.name, k, n, tc.kind, tc.norm)
		}
	}
}

func TestIDPrefix(t *testing.T) {
	for in, want := range map[string]string{"abc": "abc", "sha256:0f": "0f", hex64('e'): hex64('e')} {
		if got, ok := idPrefix(in); !ok || got != want {
			t.Errorf("idPrefix(%q) = %q, %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "sha256:", "ABC", "busybox", hex64('a') + "a", "sha512:ab", "sha256:xyz"} {
		if got, ok := idPrefix(in); ok {
			t.Errorf("idPrefix(%q) = %q, true", in, got)
		}
	}
}

func TestUserFromImage(t *testing.T) {
	for _, tc := range []struct {
		in       string
		uid      int64
		hasUID   bool
		username string
	}{
		{"", 0, false, ""},
		{"1000", 1000, true, ""},
		{"1000:1000", 1000, true, ""},
		{"0", 0, true, ""},
		{"nobody", 0, false, "nobody"},
		{"www-data:www-data", 0, false, "www-data"},
		{":1000", 0, false, ""},
	} {
		uid, name := userFromImage(tc.in)
		if (uid != nil) != tc.hasUID || (uid != nil && *uid != tc.uid) || name != tc.username {
			t.Errorf("userFromImage(%q) = %v, %q", tc.in, uid, name)
		}
	}
}

func TestAuthCredentials(t *testing.T) {
	ctx := context.Background()
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		what       string
		auth       *runtime.AuthConfig
		host       string
		user, pass string
		identity   string
		anonymous  bool
		note       bool
	}{
		{what: "nil", auth: nil, anonymous: true},
		{what: "empty", auth: &runtime.AuthConfig{}, anonymous: true},
		{what: "password", auth: &runtime.AuthConfig{Username: "u", Password: "p"}, host: "reg.example", user: "u", pass: "p"},
		{what: "auth", auth: &runtime.AuthConfig{Auth: enc("u:p:q")}, host: "reg.example", user: "u", pass: "p:q"},
		{what: "auth with NUL padding", auth: &runtime.AuthConfig{Auth: enc("u:p\x00\x00")}, host: "reg.example", user: "u", pass: "p"},
		{what: "identity token", auth: &runtime.AuthConfig{IdentityToken: "tok"}, host: "reg.example", identity: "tok"},
		{what: "registry token", auth: &runtime.AuthConfig{RegistryToken: "tok"}, anonymous: true, note: true},
		{what: "mirror of the server", auth: &runtime.AuthConfig{Username: "u", Password: "p", ServerAddress: "https://reg.example/v1/"}, host: "mirror.example", user: "u", pass: "p"},
		{what: "server elsewhere", auth: &runtime.AuthConfig{Username: "u", Password: "p", ServerAddress: "other.example"}, host: "reg.example"},
		{what: "server is the mirror", auth: &runtime.AuthConfig{Username: "u", Password: "p", ServerAddress: "mirror.example:5000"}, host: "mirror.example:5000", user: "u", pass: "p"},
		{what: "docker hub index", auth: &runtime.AuthConfig{Username: "u", Password: "p", ServerAddress: "https://index.docker.io/v1/"}, host: "registry-1.docker.io", user: "u", pass: "p"},
	} {
		registry := "reg.example"
		if strings.Contains(tc.what, "docker hub") {
			registry = "docker.io"
		}
		store, note, err := authCredentials(tc.auth, registry)
		if err != nil {
			t.Errorf("%s: %v", tc.what, err)
			continue
		}
		if (note != "") != tc.note {
			t.Errorf("%s: note %q", tc.what, note)
		}
		if tc.anonymous {
			if store != nil {
				t.Errorf("%s: credentials for an anonymous pull", tc.what)
			}
			continue
		}
		c, err := store.Get(ctx, tc.host)
		if err != nil || c.Username != tc.user || c.Secret != tc.pass || c.IdentityToken != tc.identity {
			t.Errorf("%s: Get(%s) = %v (secret %q), %v", tc.what, tc.host, c, c.Secret, err)
		}
	}
	for _, bad := range []string{"!!!", enc("no-colon")} {
		_, _, err := authCredentials(&runtime.AuthConfig{Auth: bad}, "reg.example")
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("auth %q: %v; want InvalidArgument", bad, err)
		}
		if err != nil && strings.Contains(err.Error(), bad) {
			t.Errorf("auth %q: the error shows the secret: %v", bad, err)
		}
	}
}

func FuzzNormalizeRef(f *testing.F) {
	for _, s := range []string{"busybox", "a/b:c", "127.0.0.1:5000/x@sha256:" + hex64('a'), "", ":", "@", "A", "x:1@sha256:" + hex64('0')} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		named, err := normalizeRef(s)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("%q: %v is not InvalidArgument", s, err)
			}
			return
		}
		// Normalizing is idempotent, and what it makes is recorded as a
		// tag or a digest.
		again, err := normalizeRef(named.String())
		if err != nil || again.String() != named.String() {
			t.Fatalf("%q -> %q -> %v, %v", s, named, again, err)
		}
		if k, n := classifyName(named.String()); (k != kindTag && k != kindDigest) || n != named.String() {
			t.Fatalf("%q: classifyName(%q) = %v, %q", s, named, k, n)
		}
	})
}

func FuzzClassifyName(f *testing.F) {
	for _, s := range []string{"sha256:" + hex64('1'), "busybox:latest", "x/y@sha256:" + hex64('2'), "foo", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, n := classifyName(s)
		switch k {
		case kindTag, kindDigest:
			if k2, n2 := classifyName(n); k2 != k || n2 != n {
				t.Fatalf("%q -> %v %q -> %v %q", s, k, n, k2, n2)
			}
		case kindID:
			if n != s {
				t.Fatalf("%q: id %q", s, n)
			}
		case kindOther:
			if n != "" {
				t.Fatalf("%q: other with %q", s, n)
			}
		}
	})
}

func FuzzIDPrefix(f *testing.F) {
	for _, s := range []string{"abc", "sha256:0f", hex64('e'), "sha256:", "XYZ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		hex, ok := idPrefix(s)
		if !ok {
			return
		}
		if hex == "" || len(hex) > 64 || !strings.HasSuffix(s, hex) || strings.Trim(hex, "0123456789abcdef") != "" {
			t.Fatalf("idPrefix(%q) = %q", s, hex)
		}
	})
}

func FuzzUserFromImage(f *testing.F) {
	for _, s := range []string{"", "0", "1000:1000", "nobody", "a:b:c", "-1", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		uid, name := userFromImage(s)
		if uid != nil && name != "" {
			t.Fatalf("%q: both uid %d and name %q", s, *uid, name)
		}
		if name != "" && (strings.Contains(name, ":") || !strings.HasPrefix(s, name)) {
			t.Fatalf("%q: name %q", s, name)
		}
	})
}

func FuzzDecodeAuth(f *testing.F) {
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, s := range []string{enc("u:p"), enc("u:"), enc(":"), enc("nocolon"), "!!", "", " " + enc("a:b") + "\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		user, secret, err := decodeAuth(s)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("%q: %v is not InvalidArgument", s, err)
			}
			if len(s) > 3 && strings.Contains(err.Error(), s) {
				t.Fatalf("the error shows the value: %v", err)
			}
			return
		}
		if strings.Contains(user, ":") {
			t.Fatalf("%q: user %q has a colon", s, user)
		}
		if strings.HasSuffix(secret, "\x00") || strings.HasPrefix(secret, "\x00") {
			t.Fatalf("%q: secret keeps NUL padding", s)
		}
		// What decodes was user:secret, padded.
		if user != "" || secret != "" {
			creds, _, err := authCredentials(&runtime.AuthConfig{Auth: s}, "reg.example")
			if err != nil || creds == nil {
				t.Fatalf("%q: decodes but authCredentials says %v", s, err)
			}
		}
	})
}
