package bootstrap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseArgs(t *testing.T) {
	a, err := ParseArgs([]string{"-namespace", "default", "-address", "/run/x/containerd.sock", "-publish-binary", "/usr/bin/containerd", "-id", "c1", "-debug", "start"})
	if err != nil || a.Action != "start" || a.Namespace != "default" || a.ID != "c1" || !a.Debug || a.Address != "/run/x/containerd.sock" {
		t.Fatalf("%+v %v", a, err)
	}
	a, err = ParseArgs([]string{"-namespace", "n", "-id", "c1", "-bundle", "/b", "delete"})
	if err != nil || a.Action != "delete" || a.Bundle != "/b" {
		t.Fatalf("%+v %v", a, err)
	}
	a, err = ParseArgs([]string{"-namespace", "n", "-id", "c1", "-socket", "/s"})
	if err != nil || a.Action != "" || a.Socket != "/s" {
		t.Fatalf("%+v %v", a, err)
	}
	for _, bad := range [][]string{
		{"-id", "c1", "start"}, {"-namespace", "n", "start"}, {"-namespace", "n", "-id", "c", "frobnicate"},
		{"-namespace", "n", "-id", "c", "start", "delete"}, {"-nosuchflag"},
	} {
		if _, err := ParseArgs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

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

func FuzzParseArgs(f *testing.F) {
	f.Add("-namespace\x00default\x00-id\x00c1\x00start")
	f.Add("-namespace\x00n\x00-id\x00c\x00-bundle\x00/b\x00delete")
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseArgs(strings.Split(s, "\x00"))
		if err == nil && (a.Namespace == "" || a.ID == "") {
			t.Fatalf("accepted without namespace or id: %+v", a)
		}
	})
}

func FuzzGroupID(f *testing.F) {
	f.Add([]byte(`{"annotations":{"io.containerd.runc.v2.group":"g"}}`), "c1")
	f.Fuzz(func(t *testing.T, spec []byte, id string) {
		if g := GroupID(spec, id); g == "" && id != "" {
			t.Fatal("empty group")
		}
	})
}

func TestBootstrapOutput(t *testing.T) {
	if got := BootstrapOutput("unix:///s/x", ""); got != "unix:///s/x" {
		t.Fatalf("without MAX_SHIM_VERSION: %q", got)
	}
	if got := BootstrapOutput("unix:///s/x", "2"); got != "unix:///s/x" {
		t.Fatalf("MAX_SHIM_VERSION=2: %q", got)
	}
	if got := BootstrapOutput("unix:///s/x", "3"); got != `{"version":3,"address":"unix:///s/x","protocol":"ttrpc"}` {
		t.Fatalf("MAX_SHIM_VERSION=3: %q", got)
	}
}

func TestServingProcessRunsOnOneProcessorUnlessTheUserChose(t *testing.T) {
	env := childEnv([]string{"PATH=/bin"})
	want := []string{"PATH=/bin", listenerFDEnv + "=3", "GOMAXPROCS=1", defaultProcsEnv + "=1"}
	if strings.Join(env, " ") != strings.Join(want, " ") {
		t.Fatalf("child env %q, want %q", env, want)
	}
	env = childEnv([]string{"GOMAXPROCS=4"})
	if strings.Join(env, " ") != "GOMAXPROCS=4 "+listenerFDEnv+"=3" {
		t.Fatalf("a GOMAXPROCS the user set was changed: %q", env)
	}
}

// The default GOMAXPROCS=1 is dropped from the serving process's own
// environment, so that runc and the containers never see it.
func TestServingProcessDropsItsDefaultProcs(t *testing.T) {
	t.Setenv("GOMAXPROCS", "1")
	t.Setenv(defaultProcsEnv, "1")
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := listener(Args{Socket: filepath.Join(dir, "s")})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	for _, k := range []string{"GOMAXPROCS", defaultProcsEnv} {
		if v, ok := os.LookupEnv(k); ok {
			t.Errorf("%s=%s is still in the serving process's environment", k, v)
		}
	}
}
