package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/hullrt/hull/internal/hulltest"
)

// TestLinkerDropsDeadMethods guards the binaries that stay resident on
// every node, hulld and the shim, against a reachable reflect method
// lookup by name (text/template's execution, html/template, a CLI
// library's help templates): one such call makes the linker keep every
// exported method of every type, 3.5 MB of hulld. The probes are pointer
// wrappers of time.Duration's methods, which nothing calls: the linker
// keeps them only then.
func TestLinkerDropsDeadMethods(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	probe := regexp.MustCompile(`(?m) T time\.\(\*Duration\)\.(Hours|Minutes|Microseconds)$`)
	for _, pkg := range []string{".", "../containerd-shim-hull-v2"} {
		bin := filepath.Join(t.TempDir(), "bin")
		// Not stripped, so that the symbols can be read; otherwise as
		// `make build` builds.
		build := exec.Command("go", "build", "-trimpath", "-tags", hulltest.BuildTags, "-o", bin, pkg)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, out)
		}
		syms, err := exec.Command("go", "tool", "nm", bin).Output()
		if err != nil {
			t.Fatalf("nm %s: %v", pkg, err)
		}
		if m := probe.FindAllString(string(syms), -1); len(m) > 0 {
			t.Errorf("%s keeps methods nothing calls (%q): something it links looks methods up by name at run time "+
				"(reflect.Value.MethodByName or Method with a computed name, as text/template's execution does), "+
				"which stops the linker from dropping dead methods", pkg, m)
		}
	}
}

// TestBuildTagsMatchMakefile keeps the tests' builds (hulltest.BuildTags)
// the same as `make build`'s.
func TestBuildTagsMatchMakefile(t *testing.T) {
	mk, err := os.ReadFile(filepath.Join("..", "..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^BUILDTAGS\s*:?=\s*(\S+)\s*$`).FindSubmatch(mk)
	if m == nil || string(m[1]) != hulltest.BuildTags {
		t.Errorf("the Makefile's BUILDTAGS line %q, hulltest.BuildTags %q: keep them the same", m, hulltest.BuildTags)
	}
}
