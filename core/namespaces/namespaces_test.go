package namespaces

import (
	"context"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestValidate(t *testing.T) {
	for _, ok := range []string{"default", "k8s.io", "a", "A-b_c.d9", "x-y-z", strings.Repeat("a", 76)} {
		if err := Validate(ok); err != nil {
			t.Errorf("Validate(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "a-", ".a", "a.", "a..b", "a._b", "a/b", "a b", "ünï", strings.Repeat("a", 77)} {
		err := Validate(bad)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "namespace name") {
			t.Errorf("Validate(%q) = %v, want InvalidArgument", bad, err)
		}
	}
}

func TestNamespaceRequired(t *testing.T) {
	if _, err := NamespaceRequired(context.Background()); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("missing namespace: %v", err)
	}
	ns, err := NamespaceRequired(WithNamespace(context.Background(), "x"))
	if err != nil || ns != "x" {
		t.Fatalf("got %q %v", ns, err)
	}
}

func BenchmarkValidate(b *testing.B) {
	for i := 0; i < b.N; i++ {
		Validate("k8s.io")
	}
}
