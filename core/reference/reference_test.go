package reference

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	distref "github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

const (
	sha   = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
	sha5  = "sha512:" + "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
	upper = "sha256:2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Reference
	}{
		{"docker.io/library/busybox:latest", Reference{Host: "docker.io", Path: "library/busybox", Tag: "latest"}},
		{"docker.io/library/busybox", Reference{Host: "docker.io", Path: "library/busybox"}},
		{"localhost/x", Reference{Host: "localhost", Path: "x"}},
		{"localhost:5000/x/y/z:v1.2_3-rc", Reference{Host: "localhost:5000", Path: "x/y/z", Tag: "v1.2_3-rc"}},
		{"127.0.0.1:5000/a@" + sha, Reference{Host: "127.0.0.1:5000", Path: "a", Digest: sha}},
		{"ghcr.io/o/r:t@" + sha, Reference{Host: "ghcr.io", Path: "o/r", Tag: "t", Digest: sha}},
		{"ghcr.io/o/r@" + sha5, Reference{Host: "ghcr.io", Path: "o/r", Digest: sha5}},
		{"[::1]:5000/a:b", Reference{Host: "[::1]:5000", Path: "a", Tag: "b"}},
		{"[fe80::1]/a", Reference{Host: "[fe80::1]", Path: "a"}},
		{"Registry.Example.COM/a", Reference{Host: "Registry.Example.COM", Path: "a"}},
		{"r.io/a.b/c_d/e__f/g---h", Reference{Host: "r.io", Path: "a.b/c_d/e__f/g---h"}},
		{"r.io/a:" + strings.Repeat("t", 128), Reference{Host: "r.io", Path: "a", Tag: strings.Repeat("t", 128)}},
		{"r.io/a:_x", Reference{Host: "r.io", Path: "a", Tag: "_x"}},
	} {
		got, err := Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if got.String() != tc.in {
			t.Errorf("Parse(%q).String() = %q", tc.in, got.String())
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "must not be empty"},
		{"busybox", "not fully qualified: the full form is docker.io/library/busybox"},
		{"library/busybox", "not fully qualified: the full form is docker.io/library/busybox"},
		{"docker.io/busybox", "the full form is docker.io/library/busybox"},
		{"index.docker.io/library/busybox", "the full form is docker.io/library/busybox"},
		{"docker.io", "not fully qualified"},
		{"docker.io/", "invalid reference format"},
		{"docker.io/Library/busybox", "repository name (Library/busybox) must be lowercase"},
		{"docker.io/library//busybox", "invalid reference format"},
		{"docker.io/library/busybox/", "invalid reference format"},
		{"docker.io/a-/b", "invalid reference format"},
		{"docker.io/a..b", "invalid reference format"},
		{"docker.io/a___b", "invalid reference format"},
		{"docker.io/a b", "invalid reference format"},
		{"docker.io/a:", "invalid reference format"},
		{"docker.io/a:-x", "invalid reference format"},
		{"docker.io/a:.x", "invalid reference format"},
		{"docker.io/a:x/y", "invalid reference format"},
		{"docker.io/a:" + strings.Repeat("t", 129), "invalid reference format"},
		{"docker.io/a@", "invalid reference format"},
		{"docker.io/a@sha256:abc", "invalid reference format"},
		{"docker.io/a@" + upper, "invalid checksum digest format"},
		{"docker.io/a@md5:d41d8cd98f00b204e9800998ecf8427e", "unsupported digest algorithm"},
		{"docker.io/a@" + sha + "@" + sha, "invalid reference format"},
		{"-x.io/a", "invalid reference format"},
		{"x.io:/a", "invalid reference format"},
		{"x.io:ab/a", "invalid reference format"},
		{"r.io/" + strings.Repeat("a", 256), "must not be more than 255 characters"},
	} {
		_, err := Parse(tc.in)
		if err == nil {
			t.Errorf("Parse(%q) succeeded", tc.in)
			continue
		}
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("Parse(%q): %v is not InvalidArgument", tc.in, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, tc.want) || !strings.Contains(msg, `"`+tc.in+`"`) {
			t.Errorf("Parse(%q) = %q, want it to name the input and say %q", tc.in, msg, tc.want)
		}
	}
}

func TestParseNormalized(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		changed  bool
	}{
		{"busybox", "docker.io/library/busybox:latest", true},
		{"busybox:1.36", "docker.io/library/busybox:1.36", true},
		{"busybox@" + sha, "docker.io/library/busybox@" + sha, true},
		{"busybox:1@" + sha, "docker.io/library/busybox:1@" + sha, true},
		{"user/app", "docker.io/user/app:latest", true},
		{"user/app/sub:v", "docker.io/user/app/sub:v", true},
		{"docker.io/busybox", "docker.io/library/busybox:latest", true},
		{"index.docker.io/busybox:1", "docker.io/library/busybox:1", true},
		{"index.docker.io/user/app:1", "docker.io/user/app:1", true},
		{"docker.io/library/busybox:latest", "docker.io/library/busybox:latest", false},
		{"localhost:5000/x", "localhost:5000/x:latest", true},
		{"localhost/x:y", "localhost/x:y", false},
		{"localhost", "docker.io/library/localhost:latest", true},
		{"localhost:5000/x@" + sha, "localhost:5000/x@" + sha, false},
		{"docker.io/library/busybox:1@" + sha, "docker.io/library/busybox:1@" + sha, false},
		{"ghcr.io/o/r@" + sha, "ghcr.io/o/r@" + sha, false},
		{"quay.io/a", "quay.io/a:latest", true},
	} {
		ref, changed, err := ParseNormalized(tc.in)
		if err != nil {
			t.Errorf("ParseNormalized(%q): %v", tc.in, err)
			continue
		}
		if ref.String() != tc.want || changed != tc.changed {
			t.Errorf("ParseNormalized(%q) = %q, %v; want %q, %v", tc.in, ref.String(), changed, tc.want, tc.changed)
		}
	}
	ref, _, _ := ParseNormalized("busybox@" + sha)
	if ref.Tag != "" || ref.Digest != digest.Digest(sha) || ref.Name() != "docker.io/library/busybox" || ref.Repository() != "library/busybox" {
		t.Errorf("digest reference: %+v", ref)
	}
}

func TestParseNormalizedErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "must not be empty"},
		{"BusyBox", `repository name (library/BusyBox) must be lowercase`},
		{"user/App:1", `repository name (user/App) must be lowercase`},
		{"busybox:", "invalid reference format"},
		{"busybox@sha256:00", "invalid reference format"},
		{strings.Repeat("ab", 32), "cannot specify 64-byte hexadecimal strings"},
		{"a//b", "invalid reference format"},
		{"/a", "invalid reference format"},
		{"docker.io/" + strings.Repeat("a", 250), "must not be more than 255 characters"},
	} {
		_, _, err := ParseNormalized(tc.in)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `"`+tc.in+`"`) {
			t.Errorf("ParseNormalized(%q) = %v, want InvalidArgument naming the input and saying %q", tc.in, err, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"docker.io/library/busybox:latest", "busybox", "user/app:1", "localhost:5000/x@" + sha,
		"[::1]:5000/a:b", "r.io/a.b/c__d:t@" + sha5, "index.docker.io/x", "a:b:c", "@", ":", "/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if r, err := Parse(s); err == nil {
			back, err := Parse(r.String())
			if err != nil || back != r {
				t.Fatalf("Parse(%q) = %+v, but its String %q parses to %+v, %v", s, r, r.String(), back, err)
			}
			if r.String() != s {
				t.Fatalf("Parse(%q).String() = %q", s, r.String())
			}
		}
		if r, changed, err := ParseNormalized(s); err == nil {
			back, err := Parse(r.String())
			if err != nil || back != r {
				t.Fatalf("ParseNormalized(%q) = %+v, but its String %q parses to %+v, %v", s, r, r.String(), back, err)
			}
			again, changed2, err := ParseNormalized(r.String())
			if err != nil || again != r || changed2 {
				t.Fatalf("ParseNormalized(%q) = %q is not a fixed point: %+v %v %v", s, r, again, changed2, err)
			}
			if changed != (r.String() != s) {
				t.Fatalf("ParseNormalized(%q) changed = %v for %q", s, changed, r)
			}
			// The value type carries everything the library parsed.
			n, err := distref.ParseNormalizedNamed(s)
			if err != nil || r.String() != distref.TagNameOnly(n).String() {
				t.Fatalf("ParseNormalized(%q) = %q, the library says %v, %v", s, r, n, err)
			}
		}
	})
}
