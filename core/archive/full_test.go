//go:build linux

package archive

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/internal/tmpfstest"
)

// A layer that does not fit fails as ResourceExhausted naming the
// filesystem of the snapshot, not as an anonymous write error.
func TestApplyIntoFullDiskIsResourceExhausted(t *testing.T) {
	mnt := tmpfstest.Mount(t, 2<<20)
	data := buildTar(t,
		entry{Name: "small", Data: "fits"},
		entry{Name: "big", Data: strings.Repeat("x", 4<<20)},
	)
	err := apply(t, mnt, data)
	if !errdefs.IsResourceExhausted(err) {
		t.Fatalf("apply of a 4 MiB layer into 2 MiB: %v, want ResourceExhausted", err)
	}
	if !strings.Contains(err.Error(), "no space left on device on "+mnt) || !strings.Contains(err.Error(), `"big"`) {
		t.Errorf("error %q does not name the filesystem and the entry", err)
	}
}
