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
