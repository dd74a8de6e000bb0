package restart

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestConfigValidate(t *testing.T) {
	for _, v := range []string{"", "0", "10s", "1h"} {
		if err := (&Config{Interval: v}).Validate(); err != nil {
			t.Errorf("interval %q: %v", v, err)
		}
	}
	for _, v := range []string{"soon", "-1s", "10"} {
		err := (&Config{Interval: v}).Validate()
		if !errdefs.IsInvalidArgument(err) || !strings.HasPrefix(err.Error(), "interval = \""+v+"\": ") {
			t.Errorf("interval %q: %v", v, err)
		}
	}
}
