package plugin

import (
	"errors"
	"testing"
)

func TestGraphOrdersByRequirements(t *testing.T) {
	var r Registry
	noop := func(*InitContext) (any, error) { return nil, nil }
	r.Register(&Registration{Type: GRPCPlugin, ID: "images", Requires: []Type{MetadataPlugin}, Init: noop})
	r.Register(&Registration{Type: MetadataPlugin, ID: "bolt", Requires: []Type{ContentPlugin}, Init: noop})
	r.Register(&Registration{Type: ContentPlugin, ID: "content", Init: noop})
	r.Register(&Registration{Type: InternalPlugin, ID: "last", Requires: []Type{"*"}, Init: noop})
	var order []string
	for _, reg := range r.Graph(nil) {
		order = append(order, reg.ID)
	}
	want := []string{"content", "bolt", "images", "last"}
	if len(order) != len(want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("order %v, want %v", order, want)
		}
	}
	// Disabled plugins are left out.
	for _, reg := range r.Graph(func(r *Registration) bool { return r.ID == "bolt" }) {
		if reg.ID == "bolt" {
			t.Fatal("disabled plugin in the graph")
		}
	}
}

func TestSetRecordsFailures(t *testing.T) {
	var s Set
	boom := errors.New("boom")
	s.Init(&Registration{Type: ContentPlugin, ID: "bad", Init: func(*InitContext) (any, error) { return nil, boom }}, &InitContext{})
	s.Init(&Registration{Type: ContentPlugin, ID: "good", Init: func(ic *InitContext) (any, error) {
		ic.Meta.Exports["root"] = "/x"
		return 42, nil
	}}, &InitContext{})
	if _, err := s.GetByID(ContentPlugin, "bad"); err == nil {
		t.Fatal("failed plugin returned")
	}
	v, err := s.GetSingle(ContentPlugin)
	if err != nil || v.(int) != 42 {
		t.Fatalf("GetSingle: %v %v", v, err)
	}
	all := s.All()
	if len(all) != 2 || !errors.Is(all[0].Err, boom) || all[1].Meta.Exports["root"] != "/x" {
		t.Fatalf("set: %+v", all)
	}
}
