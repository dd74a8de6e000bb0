package shims

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"

	"github.com/hullrt/hull/shim/launch"
)

func TestBinaryName(t *testing.T) {
	for in, want := range map[string]string{
		"io.containerd.runc.v2": "containerd-shim-runc-v2",
		"io.containerd.hull.v2": "containerd-shim-hull-v2",
		"runc.v1":               "containerd-shim-runc-v1",
	} {
		got, err := BinaryName(in)
		if err != nil || got != want {
			t.Errorf("BinaryName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "runc", "io.containerd..", "a/b.c.d", "x. .y"} {
		if _, err := BinaryName(bad); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), bad) {
			t.Errorf("BinaryName(%q): %v, want InvalidArgument naming it", bad, err)
		}
	}
}

func TestParseBootstrap(t *testing.T) {
	b, err := parseBootstrap([]byte("unix:///run/x/s/abc\n"))
	if err != nil || b.Version != 2 || b.Address != "unix:///run/x/s/abc" {
		t.Fatalf("plain address: %+v %v", b, err)
	}
	b, err = parseBootstrap([]byte(`{"version":3,"address":"unix:///tmp/s/1","protocol":"ttrpc"}`))
	if err != nil || b.Version != 3 || b.Address != "unix:///tmp/s/1" {
		t.Fatalf("json bootstrap: %+v %v", b, err)
	}
	b, err = parseBootstrap(bootstrapResult(t, 3, "unix:///tmp/s/2", "ttrpc"))
	if err != nil || b.Version != 3 || b.Address != "unix:///tmp/s/2" || b.Protocol != "ttrpc" {
		t.Fatalf("binary BootstrapResult: %+v %v", b, err)
	}
	b, err = parseBootstrap(bootstrapResult(t, 0, "unix:///tmp/s/3", ""))
	if err != nil || b.Version != 2 || b.Protocol != "ttrpc" {
		t.Fatalf("BootstrapResult without version or protocol: %+v %v; want 2, ttrpc", b, err)
	}
	for out, want := range map[string]string{
		"":                 "no address",
		"unix://@abstract": "abstract sockets are refused",
		"@abstract":        "abstract",
		`{"version":3,"address":"unix:///s","protocol":"grpc"}`:  "grpc",
		`{"version":9,"address":"unix:///s"}`:                    "version 9",
		`{"version":`:                                            "bootstrap JSON",
		string(bootstrapResult(t, 4, "unix:///s/4", "ttrpc")):    "version 4",
		string(bootstrapResult(t, 3, "unix:///s/5", "grpc")):     "grpc",
		string(bootstrapResult(t, 3, "vsock://3:1024", "ttrpc")): "vsock://3:1024",
		"Segmentation fault (core dumped)\n\x00\xff":             "not a filesystem unix socket",
	} {
		if _, err := parseBootstrap([]byte(out)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseBootstrap(%q): %v, want an error containing %q", out, err, want)
		}
	}
}

// bootstrapResult is start's answer as a shim of containerd 2.3+ prints it.
func bootstrapResult(t testing.TB, version int32, address, protocol string) []byte {
	out, err := proto.Marshal(&bootapi.BootstrapResult{Version: version, Address: address, Protocol: protocol})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func FuzzParseBootstrap(f *testing.F) {
	f.Add([]byte("unix:///run/containerd/s/abc"))
	f.Add(bootstrapResult(f, 3, "unix:///run/s/abc", "ttrpc"))
	f.Add(bootstrapResult(f, 4, "unix:///run/s/abc", "ttrpc"))
	f.Add([]byte(`{"version":3,"address":"unix:///tmp/s/1","protocol":"ttrpc"}`))
	f.Add([]byte("@x"))
	f.Fuzz(func(t *testing.T, out []byte) {
		b, err := parseBootstrap(out)
		if err != nil {
			return
		}
		if b.Version != 2 && b.Version != 3 {
			t.Fatalf("accepted version %d", b.Version)
		}
		p, err := socketPath(b.Address)
		if err != nil || !strings.HasPrefix(p, "/") {
			t.Fatalf("accepted address %q that is not a filesystem socket", b.Address)
		}
	})
}

func TestValidateSpec(t *testing.T) {
	good := `{"process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"}}`
	if err := validateSpec("c", []byte(good)); err != nil {
		t.Fatal(err)
	}
	for spec, field := range map[string]string{
		``:                           "no OCI spec",
		`{`:                          "OCI spec",
		`{"root":{"path":"rootfs"}}`: "process",
		`{"process":{"args":[],"cwd":"/"},"root":{"path":"r"}}`:                   "process.args",
		`{"process":{"args":["sh"],"cwd":"rel"},"root":{"path":"r"}}`:             "process.cwd",
		`{"process":{"args":["sh"],"cwd":"/"}}`:                                   "root.path",
		`{"process":{"args":["sh"],"cwd":"/"},"root":{"path":"r"},"mounts":[{}]}`: "mounts[0].destination",
	} {
		err := validateSpec("c", []byte(spec))
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), field) {
			t.Errorf("validateSpec(%s): %v, want InvalidArgument naming %q", spec, err, field)
		}
	}
}

// The socket directory given to a 2.3+ shim leaves room in sun_path for
// its 64-character socket name, else it is the temporary one.
func TestSocketDirFitsTheShimsNames(t *testing.T) {
	for _, dirLen := range []int{20, 40, 41, 42, 43, 60, 80} {
		state := "/" + strings.Repeat("d", dirLen-3) // state + "/s" is dirLen long
		got := launch.SocketDirIn(state, shimSocketNameLen)
		if len(got)+1+shimSocketNameLen > 107 {
			t.Errorf("state of %d: socket dir %s (%d) leaves no room for a %d-character name", dirLen, got, len(got), shimSocketNameLen)
		}
		if want := state + "/s"; len(want)+1+shimSocketNameLen <= 107 && got != want {
			t.Errorf("state of %d: socket dir %s, want %s", dirLen, got, want)
		}
	}
}

// The shim sockets go under hulld's state (the parent of the manager's
// own), whatever the gRPC address, in a directory New makes private; one
// that cannot be private stops New with a clear error.
func TestSocketDirUnderState(t *testing.T) {
	top, err := os.MkdirTemp("", "hs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	state := filepath.Join(top, "st")
	cfg := Config{Root: filepath.Join(top, "root"), State: filepath.Join(state, "io.containerd.runtime.v2.task"),
		Address: filepath.Join(top, "elsewhere", "h.sock"), Log: slog.New(slog.DiscardHandler)}
	m, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	want := filepath.Join(state, "s")
	if m.socketDir() != want {
		t.Errorf("socket dir %s, want %s", m.socketDir(), want)
	}
	if fi, err := os.Stat(want); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("socket dir: %v, %v; want it made, mode 0700", fi, err)
	}
	// hulld's state as the socket directory: 0711, not private.
	cfg.SocketDir = state
	if err := os.Chmod(state, 0o711); err != nil {
		t.Fatal(err)
	}
	if _, err := New(t.Context(), cfg); !errdefs.IsPermissionDenied(err) || !strings.Contains(err.Error(), "socket directory "+state+" is not private") {
		t.Errorf("New with a shared socket directory: %v", err)
	}
}

// sweepSockets removes dead shims' sockets from today's directory and
// the one beside the address earlier hullds used, and nothing else.
func TestSweepSocketsOldAndNewDirs(t *testing.T) {
	top, err := os.MkdirTemp("", "hs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	newDir, oldDir := filepath.Join(top, "state", "s"), filepath.Join(top, "run", "s")
	m := &Manager{cfg: Config{SocketDir: newDir, Address: filepath.Join(top, "run", "h.sock")}}
	dead := func(dir, name string) string {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		l.SetUnlinkOnClose(false)
		l.Close()
		return p
	}
	hash32, hash64 := strings.Repeat("ab", 16), strings.Repeat("0f", 32)
	gone := []string{dead(newDir, hash32), dead(oldDir, hash64)}
	kept := []string{dead(oldDir, "hull.sock"), dead(newDir, strings.Repeat("AB", 16))}
	live := filepath.Join(newDir, strings.Repeat("cd", 16))
	l, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	m.sweepSockets()
	for _, p := range gone {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("dead shim socket %s kept: %v", p, err)
		}
	}
	for _, p := range append(kept, live) {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
}
