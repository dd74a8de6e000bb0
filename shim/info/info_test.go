package info

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/hullrt/hull/internal/version"
)

const sampleFeatures = `{"ociVersionMin":"1.0.0","ociVersionMax":"1.2.1","mountOptions":["rro","bind"],"linux":{"namespaces":["mount"]}}`

func optionsAny(t testing.TB, o *options.Options) []byte {
	v, err := proto.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(&anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: v})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFeaturesTypeURL(t *testing.T) {
	if want := "/" + strconv.Itoa(specs.VersionMajor) + "/features/Features"; !strings.HasSuffix(FeaturesTypeURL, want) {
		t.Errorf("FeaturesTypeURL %q does not end in %q", FeaturesTypeURL, want)
	}
}

func TestDescribe(t *testing.T) {
	var asked string
	feat := func(_ context.Context, binary string) ([]byte, error) {
		asked = binary
		return []byte(sampleFeatures), nil
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	opts := optionsAny(t, &options.Options{BinaryName: "sh", Root: "/state/runc"})
	ri, err := Describe(t.Context(), opts, feat)
	if err != nil {
		t.Fatal(err)
	}
	if ri.Name != RuntimeName || ri.Version.GetVersion() != version.Version || ri.Version.GetRevision() != version.Revision {
		t.Errorf("name %q version %v", ri.Name, ri.Version)
	}
	if asked != sh {
		t.Errorf("features asked of %q; want the options' BinaryName found on PATH, %q", asked, sh)
	}
	var o options.Options
	if ri.Options == nil || ri.Options.UnmarshalTo(&o) != nil || o.Root != "/state/runc" {
		t.Errorf("options %v; want the given ones back", ri.Options)
	}
	var f features.Features
	if ri.Features.GetTypeUrl() != FeaturesTypeURL || json.Unmarshal(ri.Features.GetValue(), &f) != nil || !slices.Contains(f.MountOptions, "rro") {
		t.Errorf("features %v", ri.Features)
	}

	// A runc without `features` is described without them.
	ri, err = Describe(t.Context(), nil, func(context.Context, string) ([]byte, error) { return nil, errors.New("no features command") })
	if err != nil || ri.Features != nil || ri.Options != nil {
		t.Errorf("without features: %v, %v", ri, err)
	}
	for name, tc := range map[string]struct {
		opts []byte
		feat string
		is   func(error) bool
		want string
	}{
		"options not an Any":    {[]byte("\xff\xff"), sampleFeatures, errdefs.IsInvalidArgument, "not an encoded Any"},
		"options of other type": {mustMarshal(t, &anypb.Any{TypeUrl: "example.com/Other"}), sampleFeatures, errdefs.IsInvalidArgument, `"example.com/Other"`},
		"runc binary missing":   {optionsAny(t, &options.Options{BinaryName: "no-such-runc"}), sampleFeatures, errdefs.IsNotFound, `"no-such-runc"`},
		"features garbage":      {nil, "hello", errdefs.IsInvalidArgument, "features"},
		"features empty":        {nil, "{}", errdefs.IsInvalidArgument, "ociVersionMin"},
	} {
		_, err := Describe(t.Context(), tc.opts, func(context.Context, string) ([]byte, error) { return []byte(tc.feat), nil })
		if err == nil || !tc.is(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want an error of its class naming %s", name, err, tc.want)
		}
	}
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRunWithRunc describes the runc on PATH, as containerd 2.x's
// `ctr plugins inspect-runtime` asks the shim to.
func TestRunWithRunc(t *testing.T) {
	if _, err := exec.LookPath("runc"); err != nil {
		t.Fatalf("runc (make test installs it): %v", err)
	}
	var out bytes.Buffer
	if err := Run(t.Context(), bytes.NewReader(optionsAny(t, &options.Options{Root: "/x"})), &out); err != nil {
		t.Fatal(err)
	}
	var ri apitypes.RuntimeInfo
	if err := proto.Unmarshal(out.Bytes(), &ri); err != nil {
		t.Fatal(err)
	}
	var f features.Features
	if err := json.Unmarshal(ri.Features.GetValue(), &f); err != nil || f.OCIVersionMin == "" || !slices.Contains(f.MountOptions, "bind") {
		t.Errorf("features of runc: %v, %s", err, ri.Features.GetValue())
	}
}

func FuzzParseFeatures(f *testing.F) {
	f.Add([]byte(sampleFeatures))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"ociVersionMin":"1","ociVersionMax":"2","linux":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseFeatures(data)
		if err != nil {
			return
		}
		var f features.Features
		if a.TypeUrl != FeaturesTypeURL || json.Unmarshal(a.Value, &f) != nil || f.OCIVersionMin == "" {
			t.Fatalf("accepted %q as %v", data, a)
		}
	})
}

func FuzzParseOptions(f *testing.F) {
	f.Add(optionsAny(f, &options.Options{BinaryName: "crun"}))
	f.Add([]byte("\x0a\x1acontainerd.runc.v1.Options\x12\x02\x08\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		o, a, err := ParseOptions(data)
		if err != nil {
			return
		}
		if o == nil || !a.MessageIs(&options.Options{}) {
			t.Fatalf("accepted %x as %v", data, a)
		}
	})
}
