package bootstrap

import (
	"github.com/hullrt/hull/shim/launch"
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
	a, err = ParseArgs([]string{"-info"})
	if err != nil || !a.Info {
		t.Fatalf("-info: %+v %v", a, err)
	}
	a, err = ParseArgs([]string{"-v"})
	if err != nil || !a.Version {
		t.Fatalf("-v: %+v %v", a, err)
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

func FuzzParseArgs(f *testing.F) {
	f.Add("-namespace\x00default\x00-id\x00c1\x00start")
	f.Add("-namespace\x00n\x00-id\x00c\x00-bundle\x00/b\x00delete")
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseArgs(strings.Split(s, "\x00"))
		if err == nil && !a.Info && !a.Version && (a.Namespace == "" || a.ID == "") {
			t.Fatalf("accepted without namespace or id: %+v", a)
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

// The default GOMAXPROCS=1 is dropped from the serving process's own
// environment, so that runc and the containers never see it; the daemon's
// default comes back for runc.
func TestServingProcessDropsItsDefaultProcs(t *testing.T) {
	// listen makes the serving process's listener, which settles its
	// environment.
	listen := func() {
		t.Helper()
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		l, err := listener(Args{Socket: filepath.Join(dir, "s")})
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
	}
	t.Setenv("GOMAXPROCS", "") // restored after the test
	t.Setenv(launch.DefaultProcsEnv, "2")
	listen()
	if v := os.Getenv("GOMAXPROCS"); v != "2" {
		t.Fatalf("runc would get GOMAXPROCS=%q, want the daemon's 2", v)
	}
	t.Setenv("GOMAXPROCS", "1")
	t.Setenv(launch.DefaultProcsEnv, "none")
	listen()
	for _, k := range []string{"GOMAXPROCS", launch.DefaultProcsEnv} {
		if v, ok := os.LookupEnv(k); ok {
			t.Errorf("%s=%s is still in the serving process's environment", k, v)
		}
	}
}
