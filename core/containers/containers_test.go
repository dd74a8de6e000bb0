package containers

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
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
