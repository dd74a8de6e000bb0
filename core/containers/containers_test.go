package containers

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestValidateID(t *testing.T) {
	for _, ok := range []string{"a", "A1", "web-1", "a.b_c-d", strings.Repeat("x", MaxIDLength)} {
		if err := ValidateID(ok); err != nil {
			t.Errorf("ValidateID(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "a-", "a..b", "a/b", "a b", "ü", strings.Repeat("x", MaxIDLength+1)} {
		err := ValidateID(bad)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("ValidateID(%q) = %v, want InvalidArgument", bad, err)
			continue
		}
		if bad != "" && !strings.Contains(err.Error(), bad[:1]) {
			t.Errorf("ValidateID(%q) = %v, does not name the value", bad, err)
		}
	}
}

func TestSpecTypeURLs(t *testing.T) {
	for v, want := range map[any]string{&specs.Spec{}: SpecTypeURL, &specs.Process{}: ProcessTypeURL, &specs.LinuxResources{}: ResourcesTypeURL} {
		a, err := typeurl.MarshalAny(v)
		if err != nil {
			t.Fatal(err)
		}
		if a.GetTypeUrl() != want {
			t.Errorf("%T marshals with type URL %q, want %q", v, a.GetTypeUrl(), want)
		}
	}
}
