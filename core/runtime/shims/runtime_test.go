package shims

import (
	"strings"
	"testing"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
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
		addrDir := "/" + strings.Repeat("d", dirLen-3) // dir + "/s" is dirLen long
		m := &Manager{cfg: Config{Address: addrDir + "/hull.sock"}}
		got := m.socketDir()
		if len(got)+1+shimSocketNameLen > 107 {
			t.Errorf("address dir of %d: socket dir %s (%d) leaves no room for a %d-character name", dirLen, got, len(got), shimSocketNameLen)
		}
		if want := addrDir + "/s"; len(want)+1+shimSocketNameLen <= 107 && got != want {
			t.Errorf("address dir of %d: socket dir %s, want %s", dirLen, got, want)
		}
	}
}
