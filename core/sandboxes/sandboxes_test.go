package sandboxes

import (
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/hullrt/hull/core/containers"
)

func TestValidateID(t *testing.T) {
	for _, ok := range []string{"a", "0123456789abcdef", "pod.1_x-y", strings.Repeat("p", containers.MaxIDLength)} {
		if err := ValidateID(ok); err != nil {
			t.Errorf("ValidateID(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", "..", "-a", "a b", strings.Repeat("p", containers.MaxIDLength+1)} {
		err := ValidateID(bad)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("ValidateID(%q) = %v, want InvalidArgument", bad, err)
			continue
		}
		if !strings.Contains(err.Error(), "sandbox id") || !strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("ValidateID(%q) = %q: does not say it is the sandbox id or name the value", bad, err)
		}
	}
}

func TestProtoRoundTrip(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	in := Sandbox{
		ID: "pod", Labels: map[string]string{"k": "v"},
		Runtime:   RuntimeInfo{Name: "io.containerd.runc.v2", Options: containers.NewAny("t/opts", []byte("o"))},
		Spec:      containers.NewAny(containers.SpecTypeURL, []byte("{}")),
		CreatedAt: created, UpdatedAt: created.Add(time.Second),
		Extensions: map[string]typeurl.Any{"e": containers.NewAny("t/e", []byte("e"))},
		Sandboxer:  "podsandbox",
	}
	p := ToProto(in)
	want := &types.Sandbox{
		SandboxID: "pod", Labels: map[string]string{"k": "v"},
		Runtime:   &types.Sandbox_Runtime{Name: "io.containerd.runc.v2", Options: &anypb.Any{TypeUrl: "t/opts", Value: []byte("o")}},
		Spec:      &anypb.Any{TypeUrl: containers.SpecTypeURL, Value: []byte("{}")},
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt,
		Extensions: map[string]*anypb.Any{"e": {TypeUrl: "t/e", Value: []byte("e")}},
		Sandboxer:  "podsandbox",
	}
	if !proto.Equal(p, want) {
		t.Fatalf("ToProto:\n%v\nwant\n%v", p, want)
	}
	if !p.CreatedAt.AsTime().Equal(created) || !p.UpdatedAt.AsTime().Equal(created.Add(time.Second)) {
		t.Fatalf("times %v %v", p.CreatedAt, p.UpdatedAt)
	}
	out := FromProto(p)
	if out.ID != "pod" || out.Labels["k"] != "v" || out.Runtime.Name != in.Runtime.Name ||
		string(out.Runtime.Options.GetValue()) != "o" || out.Spec.GetTypeUrl() != containers.SpecTypeURL ||
		!out.CreatedAt.Equal(in.CreatedAt) || !out.UpdatedAt.Equal(in.UpdatedAt) ||
		string(out.Extensions["e"].GetValue()) != "e" || out.Sandboxer != "podsandbox" {
		t.Fatalf("FromProto(ToProto(x)) = %+v, want %+v", out, in)
	}
}

// TestProtoAbsentValues: what is not set travels as nothing and comes back
// as nil, so that "no spec" and "no time" stay recognisable.
func TestProtoAbsentValues(t *testing.T) {
	p := ToProto(Sandbox{ID: "bare"})
	if p.Spec != nil || p.Runtime.GetOptions() != nil || p.CreatedAt != nil || p.UpdatedAt != nil || p.Extensions != nil {
		t.Fatalf("ToProto of a bare record: %v", p)
	}
	out := FromProto(p)
	if out.Spec != nil || out.Runtime.Options != nil || !out.CreatedAt.IsZero() || !out.UpdatedAt.IsZero() || out.Extensions != nil {
		t.Fatalf("FromProto of a bare record: %+v", out)
	}
	if got := FromProto(nil); got.ID != "" || got.Spec != nil {
		t.Fatalf("FromProto(nil) = %+v", got)
	}
}
