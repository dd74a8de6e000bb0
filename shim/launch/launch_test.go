package launch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSocketPath(t *testing.T) {
	p := SocketPath("/run/hull/hull.sock", "default", "c1")
	if !strings.HasPrefix(p, "/run/hull/s/") || len(filepath.Base(p)) != 32 {
		t.Fatalf("%q", p)
	}
	if p != SocketPath("/run/hull/hull.sock", "default", "c1") {
		t.Fatal("not deterministic")
	}
	if p == SocketPath("/run/hull/hull.sock", "other", "c1") || p == SocketPath("/run/hull/hull.sock", "default", "c2") {
		t.Fatal("namespace or id not in the hash")
	}
	long := "/" + strings.Repeat("d", 100) + "/containerd.sock"
	if lp := SocketPath(long, "default", "c1"); len(lp) > maxSunPath || !strings.HasPrefix(lp, os.TempDir()) {
		t.Fatalf("long address gave %q", lp)
	}
}

func TestGroupID(t *testing.T) {
	if g := GroupID([]byte(`{"annotations":{"io.containerd.runc.v2.group":"g"}}`), "c1"); g != "g" {
		t.Fatal(g)
	}
	if g := GroupID([]byte(`{"annotations":{"io.kubernetes.cri.sandbox-id":"sb"}}`), "c1"); g != "sb" {
		t.Fatal(g)
	}
	if g := GroupID([]byte(`{}`), "c1"); g != "c1" {
		t.Fatal(g)
	}
	if g := GroupID([]byte(`not json`), "c1"); g != "c1" {
		t.Fatal(g)
	}
}

func TestListenPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	l, err := Listen(filepath.Join(dir, "x"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fi, _ := os.Stat(filepath.Join(dir, "x"))
	di, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
		t.Fatalf("socket %v dir %v", fi.Mode(), di.Mode())
	}
	if _, err := Listen(filepath.Join(dir, "x")); err == nil {
		t.Fatal("second listener on an answering socket")
	}
	// A directory others can enter is refused.
	open := filepath.Join(t.TempDir(), "open")
	os.Mkdir(open, 0o755)
	if _, err := Listen(filepath.Join(open, "x")); err == nil {
		t.Fatal("socket in a 0755 directory accepted")
	}
}

func FuzzGroupID(f *testing.F) {
	f.Add([]byte(`{"annotations":{"io.containerd.runc.v2.group":"g"}}`), "c1")
	f.Fuzz(func(t *testing.T, spec []byte, id string) {
		if g := GroupID(spec, id); g == "" && id != "" {
			t.Fatal("empty group")
		}
	})
}

func TestServingProcessRunsOnOneProcessorUnlessTheUserChose(t *testing.T) {
	env := ChildEnv([]string{"PATH=/bin"})
	want := []string{"PATH=/bin", ListenerFDEnv + "=3", "GOMAXPROCS=1", DefaultProcsEnv + "=1"}
	if strings.Join(env, " ") != strings.Join(want, " ") {
		t.Fatalf("child env %q, want %q", env, want)
	}
	env = ChildEnv([]string{"GOMAXPROCS=4"})
	if strings.Join(env, " ") != "GOMAXPROCS=4 "+ListenerFDEnv+"=3" {
		t.Fatalf("a GOMAXPROCS the user set was changed: %q", env)
	}
}
