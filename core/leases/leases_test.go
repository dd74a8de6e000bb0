package leases

import (
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestIdleTimeout(t *testing.T) {
	for v, want := range map[string]time.Duration{"3m": 3 * time.Minute, "1.5s": 1500 * time.Millisecond} {
		d, ok, err := IdleTimeout(map[string]string{IdleExpireLabel: v})
		if err != nil || !ok || d != want {
			t.Errorf("IdleTimeout(%q) = %v, %v, %v; want %v", v, d, ok, err, want)
		}
	}
	for _, v := range []string{"", "0", "-1m", "3", "soon"} {
		if _, ok, err := IdleTimeout(map[string]string{IdleExpireLabel: v}); !ok || !errdefs.IsInvalidArgument(err) {
			t.Errorf("IdleTimeout(%q): ok %v, err %v; want an InvalidArgument", v, ok, err)
		}
	}
	if _, ok, err := IdleTimeout(map[string]string{ExpireLabel: "2030-01-01T00:00:00Z"}); ok || err != nil {
		t.Errorf("without the label: ok %v, err %v", ok, err)
	}
}

// Whatever a client puts in the label, the parse either gives a positive
// period or an InvalidArgument: never a lease that expires at once or never.
func FuzzIdleTimeout(f *testing.F) {
	for _, s := range []string{"3m", "1s", "0", "-5m", "1e3s", "9223372036854775807ns", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, ok, err := IdleTimeout(map[string]string{IdleExpireLabel: v})
		if !ok {
			t.Fatal("label present but not seen")
		}
		if err == nil && d <= 0 {
			t.Fatalf("IdleTimeout(%q) = %v without error", v, d)
		}
		if err != nil && !errdefs.IsInvalidArgument(err) {
			t.Fatalf("IdleTimeout(%q): %v is not InvalidArgument", v, err)
		}
	})
}
