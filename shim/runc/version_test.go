package runc

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// fakeRuntime writes a runtime binary that answers --version with
// versionLine (and counts its runs in a file beside it).
func fakeRuntime(t *testing.T, versionLine string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "runtime")
	script := "#!/bin/sh\necho x >> " + filepath.Join(dir, "runs") + "\necho '" + versionLine + "'\necho 'spec: 1.0.2'\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func runsOf(t *testing.T, fake string) int {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(filepath.Dir(fake), "runs"))
	return strings.Count(string(b), "x")
}

func TestParseVersion(t *testing.T) {
	for out, want := range map[string]string{
		"runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1\nspec: 1.0.2-dev\n": "1.1.5",
		"runc version 1.5.2\nspec: 1.3.0\ngo: go1.26.8\n":                        "1.5.2",
		"runc version 1.4.0-rc.3\n":                                              "1.4.0-rc.3",
		"runc version 1.2.8~deb13u1\n":                                           "1.2.8",
	} {
		v, ok := ParseVersion(out)
		if !ok || v.String() != want {
			t.Errorf("ParseVersion(%q) = %v %v, want %s", out, v, ok, want)
		}
	}
	for _, out := range []string{"crun version 1.8.1\ncommit: x\n", "youki version 0.3.0", "runc version 1.x.0", "", "runc version 1.2\n"} {
		if v, ok := ParseVersion(out); ok {
			t.Errorf("ParseVersion(%q) = %v, want not runc", out, v)
		}
	}
}

func TestVersionOrderAndEscapeFixes(t *testing.T) {
	parse := func(s string) Version {
		v, ok := ParseVersion("runc version " + s)
		if !ok {
			t.Fatalf("parse %s", s)
		}
		return v
	}
	ordered := []string{"1.1.5", "1.2.0-rc.1", "1.2.0-rc.2", "1.2.0-rc.10", "1.2.0", "1.2.8", "1.10.0", "2.0.0"}
	for i := range ordered {
		for j := range ordered {
			got := parse(ordered[i]).Compare(parse(ordered[j]))
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got != want {
				t.Errorf("%s vs %s: %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
	for v, fixed := range map[string]bool{"1.1.5": false, "1.2.7": false, "1.2.8": true, "1.3.2": false, "1.3.3": true,
		"1.4.0-rc.2": false, "1.4.0-rc.3": true, "1.4.0": true, "1.5.2": true, "2.0.0": true, "0.9.9": false} {
		if got := parse(v).HasEscapeFixes(); got != fixed {
			t.Errorf("%s fixed %v, want %v", v, got, fixed)
		}
	}
}

// forgetProbes empties this process's memory of probes, as a new shim
// process starts with.
func forgetProbes() {
	versions.Lock()
	clear(versions.m)
	versions.Unlock()
}

// The version is probed once per binary file: later calls, and later
// shims (a new process each, here an emptied memory) sharing the cache
// directory, read it back; a replaced binary is probed again.
func TestVersionIsProbedOncePerBinary(t *testing.T) {
	ctx := context.Background()
	forgetProbes()
	t.Cleanup(forgetProbes)
	fake := fakeRuntime(t, "runc version 1.1.5+ds1")
	cache := t.TempDir()
	r := &Runc{Binary: fake, VersionCache: cache}
	for i := 0; i < 3; i++ {
		v, err := r.Version(ctx)
		if err != nil || v.String() != "1.1.5" {
			t.Fatalf("call %d: %v %v", i, v, err)
		}
	}
	if n := runsOf(t, fake); n != 1 {
		t.Fatalf("%d probes in one process, want 1", n)
	}
	forgetProbes()
	if v, err := r.Version(ctx); err != nil || v.String() != "1.1.5" {
		t.Fatalf("read back from the cache file: %v %v", v, err)
	}
	if n := runsOf(t, fake); n != 1 {
		t.Fatalf("a new shim probed again (%d probes) instead of reading %s", n, cache)
	}
	// An upgrade replaces the file: another size here, and in any case
	// another ctime, which nobody can set back.
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho x >> "+filepath.Join(filepath.Dir(fake), "runs")+"\necho 'runc version 1.6.0'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	forgetProbes()
	if v, err := r.Version(ctx); err != nil || v.String() != "1.6.0" {
		t.Fatalf("after the upgrade: %v %v", v, err)
	}
	if n := runsOf(t, fake); n != 2 {
		t.Fatalf("%d probes after the upgrade, want 2", n)
	}

	// Not runc: NotImplemented, remembered as well.
	crun := &Runc{Binary: fakeRuntime(t, "crun version 1.8.1"), VersionCache: cache}
	for i := 0; i < 2; i++ {
		if _, err := crun.Version(ctx); !errdefs.IsNotImplemented(err) {
			t.Fatalf("crun: %v, want NotImplemented", err)
		}
	}
	if n := runsOf(t, crun.Binary); n != 1 {
		t.Fatalf("crun probed %d times", n)
	}
	if _, err := (&Runc{Binary: filepath.Join(t.TempDir(), "none")}).Version(ctx); !errdefs.IsNotFound(err) {
		t.Fatalf("missing binary: %v, want NotFound", err)
	}
}
