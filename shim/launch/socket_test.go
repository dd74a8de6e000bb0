package launch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSocketDirIn(t *testing.T) {
	if d := SocketDirIn("/run/hull", 64); d != "/run/hull/s" {
		t.Errorf("SocketDirIn(/run/hull) = %s", d)
	}
	for _, base := range []string{"", "/" + strings.Repeat("x", 60)} {
		if d := SocketDirIn(base, 64); d != filepath.Join(os.TempDir(), "hull-shim") {
			t.Errorf("SocketDirIn(%q) = %s, want the temporary one", base, d)
		}
	}
	// SocketDir is SocketDirIn of the address's directory.
	if SocketDir("/x/y/h.sock", 64) != SocketDirIn("/x/y", 64) {
		t.Errorf("SocketDir and SocketDirIn disagree")
	}
}

func TestIsSocketName(t *testing.T) {
	for name, want := range map[string]bool{
		strings.Repeat("a1", 16):        true,
		strings.Repeat("0f", 32):        true,
		strings.Repeat("A1", 16):        false,
		strings.Repeat("a", 31):         false,
		strings.Repeat("g", 32):         false,
		"hull.sock":                     false,
		strings.Repeat("a", 31) + "/":   false,
		strings.Repeat("ab", 16) + ".s": false,
	} {
		if got := IsSocketName(name); got != want {
			t.Errorf("IsSocketName(%q) = %v", name, got)
		}
	}
	// The names SocketPath makes are socket names.
	if p := SocketPath("/run/hull/s", "/run/hull/hull.sock", "default", "c1"); !IsSocketName(filepath.Base(p)) {
		t.Errorf("SocketPath's name %s is not a socket name", filepath.Base(p))
	}
}
