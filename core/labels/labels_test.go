package labels

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestIsGCRefContent(t *testing.T) {
	for key, want := range map[string]bool{
		"containerd.io/gc.ref.content":          true,
		"containerd.io/gc.ref.content.l.0":      true,
		"containerd.io/gc.ref.content.config":   true,
		"containerd.io/gc.ref.content/anything": true,
		"containerd.io/gc.ref.contents":         false, // another label that shares the prefix
		"containerd.io/gc.ref.snapshot.overlay": false,
		"containerd.io/gc.root":                 false,
		"":                                      false,
	} {
		if got := IsGCRefContent(key); got != want {
			t.Errorf("IsGCRefContent(%q) = %v, want %v", key, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := ValidateAll(map[string]string{GCRoot: "2024-01-01T00:00:00Z"}); err != nil {
		t.Fatal(err)
	}
	if err := Validate("", "v"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("empty key: %v", err)
	}
	long := strings.Repeat("k", 100)
	err := Validate(long, strings.Repeat("v", MaxSize))
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), long[:64]+"...") {
		t.Errorf("oversized label: %v", err)
	}
}

func TestGCChanged(t *testing.T) {
	ref := "containerd.io/gc.ref.content.l.0"
	for _, c := range []struct {
		before, after map[string]string
		want          bool
	}{
		{nil, nil, false},
		{nil, map[string]string{"containerd.io/uncompressed": "sha256:1"}, false},
		{map[string]string{"a": "1"}, map[string]string{"a": "2"}, false},
		{nil, map[string]string{ref: "sha256:1"}, true},
		{map[string]string{ref: "sha256:1"}, map[string]string{ref: "sha256:1", "a": "b"}, false},
		{map[string]string{ref: "sha256:1"}, map[string]string{ref: "sha256:2"}, true},
		{map[string]string{ref: "sha256:1"}, nil, true},
		{map[string]string{GCExpire: "2026-01-01T00:00:00Z"}, map[string]string{GCExpire: "2027-01-01T00:00:00Z"}, true},
		{map[string]string{"containerd.io/gc.bref.content": "x"}, map[string]string{}, true},
	} {
		if got := GCChanged(GCOnly(c.before), c.after); got != c.want {
			t.Errorf("GCChanged(%v, %v) = %v, want %v", c.before, c.after, got, c.want)
		}
	}
	if m := GCOnly(map[string]string{"a": "b"}); m != nil {
		t.Errorf("GCOnly of no gc label: %v, want nil", m)
	}
	m := map[string]string{"containerd.io/snapshot/x": "1", "containerd.io/snapshotter": "2", "y": "3"}
	if got := Prefixed(m, "containerd.io/snapshot/"); len(got) != 1 || got["containerd.io/snapshot/x"] != "1" {
		t.Errorf("Prefixed: %v, want just containerd.io/snapshot/x", got)
	}
	if got := Prefixed(m, "containerd.io/snapshot/"); got != nil {
		got["z"] = "4"
		if _, ok := m["z"]; ok {
			t.Error("Prefixed returned the caller's map")
		}
	}
}
