package bootstrap

import (
	"bytes"
	"strings"
	"testing"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

var startArgs = Args{Namespace: "ns1", ID: "c1", Address: "/run/flag.sock", PublishBinary: "/flag/bin", Action: "start"}

// runcAny is runc options under the bare type name, as containerd and
// hulld send them.
func runcAny(t testing.TB, o *options.Options) *anypb.Any {
	v, err := proto.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	return &anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: v}
}

func marshal(t testing.TB, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseStartInputParams(t *testing.T) {
	opts := runcAny(t, &options.Options{Root: "/state/runc", BinaryName: "crun"})
	dir := "/state/s"
	p := &bootapi.BootstrapParams{
		InstanceID: "c1", Namespace: "ns1", LogLevel: bootapi.LogLevel_LOG_LEVEL_DEBUG,
		ContainerdGrpcAddress: "/run/param.sock", ContainerdTtrpcAddress: "/run/param.sock.ttrpc", ContainerdBinary: "/param/bin",
		SocketDir: &dir,
		Extensions: []*bootapi.Extension{
			{Value: &anypb.Any{TypeUrl: "example.com/other.Config", Value: []byte("x")}},
			{Value: opts},
		},
	}
	in, err := ParseStartInput(marshal(t, p), startArgs)
	if err != nil || in.Params == nil {
		t.Fatalf("ParseStartInput = %+v, %v; want parameters", in, err)
	}
	if !bytes.Equal(in.Options, marshal(t, opts)) {
		t.Errorf("options %x; want the runc options extension %x", in.Options, marshal(t, opts))
	}
	address, ttrpcAddress, publish, debug, socketDir := in.launchArgs(startArgs)
	if address != "/run/param.sock" || ttrpcAddress != "/run/param.sock.ttrpc" || publish != "/param/bin" || !debug || socketDir != dir {
		t.Errorf("launchArgs = %q %q %q %v %q; want the parameters' values", address, ttrpcAddress, publish, debug, socketDir)
	}
	out, err := in.Answer("unix:///state/s/abc", "2")
	if err != nil {
		t.Fatal(err)
	}
	var res bootapi.BootstrapResult
	if err := proto.Unmarshal(out, &res); err != nil || res.Version != 3 || res.Address != "unix:///state/s/abc" || res.Protocol != "ttrpc" {
		t.Errorf("answer %+v, %v; want a BootstrapResult of version 3", &res, err)
	}

	// Info level keeps -debug off; a -debug flag still turns it on.
	p.LogLevel = bootapi.LogLevel_LOG_LEVEL_INFO
	in, _ = ParseStartInput(marshal(t, p), startArgs)
	if _, _, _, debug, _ := in.launchArgs(startArgs); debug {
		t.Error("debug at log level info")
	}
	flagged := startArgs
	flagged.Debug = true
	if _, _, _, debug, _ := in.launchArgs(flagged); !debug {
		t.Error("-debug ignored")
	}
}

func TestParseStartInputLegacy(t *testing.T) {
	in, err := ParseStartInput(nil, startArgs)
	if err != nil || in.Params != nil || in.Options != nil {
		t.Fatalf("empty stdin: %+v, %v", in, err)
	}
	opts := marshal(t, runcAny(t, &options.Options{Root: "/state/runc"}))
	in, err = ParseStartInput(opts, startArgs)
	if err != nil || in.Params != nil || !bytes.Equal(in.Options, opts) {
		t.Fatalf("options on stdin: %+v, %v", in, err)
	}
	address, ttrpcAddress, publish, debug, socketDir := in.launchArgs(startArgs)
	if address != "/run/flag.sock" || ttrpcAddress != "" || publish != "/flag/bin" || debug || socketDir != "" {
		t.Errorf("launchArgs = %q %q %q %v %q; want the flags' values", address, ttrpcAddress, publish, debug, socketDir)
	}
	if out, err := in.Answer("unix:///s/x", ""); err != nil || string(out) != "unix:///s/x" {
		t.Errorf("answer under containerd 1.x: %q, %v; want the bare address", out, err)
	}
	// Parameters for another task are refused, as containerd's shims
	// refuse them, rather than taken for options.
	other := marshal(t, &bootapi.BootstrapParams{InstanceID: "c2", Namespace: "ns1"})
	for name, data := range map[string][]byte{"another task's parameters": other, "garbage": []byte("\xff\xff\xff"), "options of another type": marshal(t, &anypb.Any{TypeUrl: "example.com/Other"})} {
		if _, err := ParseStartInput(data, startArgs); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), `"c1"`) {
			t.Errorf("%s: %v; want InvalidArgument naming the task", name, err)
		}
	}
}

func FuzzParseStartInput(f *testing.F) {
	f.Add([]byte{})
	f.Add(marshal(f, runcAny(f, &options.Options{Root: "/r"})))
	f.Add(marshal(f, &bootapi.BootstrapParams{InstanceID: "c1", Namespace: "ns1", Extensions: []*bootapi.Extension{{Value: runcAny(f, &options.Options{})}}}))
	f.Add([]byte("\x0a\x02c1\x12\x03ns1\x42\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := ParseStartInput(data, startArgs)
		if err != nil {
			return
		}
		if in.Params != nil && (in.Params.InstanceID != "c1" || in.Params.Namespace != "ns1") {
			t.Fatalf("took parameters of %q/%q for c1's", in.Params.Namespace, in.Params.InstanceID)
		}
		if in.Options != nil {
			var a anypb.Any
			if proto.Unmarshal(in.Options, &a) != nil || !a.MessageIs(&options.Options{}) {
				t.Fatalf("options %x are not runc options", in.Options)
			}
		}
	})
}
