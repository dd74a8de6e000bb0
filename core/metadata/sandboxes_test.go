package metadata

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"

	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/core/sandboxes"
)

func newSandbox(id string) sandboxes.Sandbox {
	return sandboxes.Sandbox{
		ID: id, Runtime: sandboxes.RuntimeInfo{Name: "io.containerd.runc.v2"},
		Spec: spec(`{"ociVersion":"1.2.0"}`), Sandboxer: "podsandbox",
	}
}

// event is one published event with the namespace it was published in.
type event struct {
	ns, topic string
	ev        any
}

// eventLog records what a DB publishes.
func eventLog(db *DB) *[]event {
	var evs []event
	db.pub = publisherFunc(func(ctx context.Context, topic string, ev any) error {
		ns, _ := namespaces.Namespace(ctx)
		evs = append(evs, event{ns, topic, ev})
		return nil
	})
	return &evs
}

func TestSandboxesCreateGetDelete(t *testing.T) {
	db := openDB(t)
	evs := eventLog(db)
	ctx := namespaces.WithNamespace(context.Background(), "k8s.io")
	s := db.Sandboxes()
	in := newSandbox("pod-1")
	in.Labels = map[string]string{"io.kubernetes.pod.name": "web"}
	in.Runtime.Options = containers.NewAny("example/opts", []byte{1, 2, 3})
	in.Extensions = map[string]typeurl.Any{"ext": containers.NewAny("example/ext", []byte("x"))}
	before := time.Now().UTC().Round(0)
	created, err := s.Create(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if created.CreatedAt.Before(before) || !created.CreatedAt.Equal(created.UpdatedAt) {
		t.Fatalf("times not set by the store: created %v updated %v, call began %v", created.CreatedAt, created.UpdatedAt, before)
	}
	got, err := s.Get(ctx, "pod-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "pod-1" || got.Labels["io.kubernetes.pod.name"] != "web" || got.Runtime.Name != "io.containerd.runc.v2" ||
		got.Runtime.Options.GetTypeUrl() != "example/opts" || string(got.Runtime.Options.GetValue()) != "\x01\x02\x03" ||
		got.Spec.GetTypeUrl() != specURL || string(got.Spec.GetValue()) != `{"ociVersion":"1.2.0"}` ||
		got.Sandboxer != "podsandbox" || string(got.Extensions["ext"].GetValue()) != "x" ||
		!got.CreatedAt.Equal(created.CreatedAt) || !got.UpdatedAt.Equal(created.UpdatedAt) {
		t.Fatalf("got %+v", got)
	}
	// The record is a copy: changing what Get returned changes nothing.
	got.Labels["io.kubernetes.pod.name"] = "changed"
	if again, _ := s.Get(ctx, "pod-1"); again.Labels["io.kubernetes.pod.name"] != "web" {
		t.Fatalf("Get shares its labels with the store: %v", again.Labels)
	}
	_, err = s.Create(ctx, in)
	wantErr(t, "duplicate create", err, errdefs.ErrAlreadyExists, `"pod-1"`)
	if err := s.Delete(ctx, "pod-1"); err != nil {
		t.Fatal(err)
	}
	_, err = s.Get(ctx, "pod-1")
	wantErr(t, "get after delete", err, errdefs.ErrNotFound, `"pod-1"`)
	wantErr(t, "second delete", s.Delete(ctx, "pod-1"), errdefs.ErrNotFound, `"pod-1"`)
	wantErr(t, "delete in a namespace without sandboxes", s.Delete(namespaces.WithNamespace(ctx, "none"), "x"), errdefs.ErrNotFound, `"x"`)

	if len(*evs) != 2 {
		t.Fatalf("events %+v, want create and delete", *evs)
	}
	if e := (*evs)[0]; e.topic != "/sandboxes/create" || e.ns != "k8s.io" {
		t.Errorf("first event %+v", e)
	} else if ev, ok := e.ev.(*eventstypes.SandboxCreate); !ok || ev.SandboxID != "pod-1" {
		t.Errorf("create event %#v", e.ev)
	}
	if e := (*evs)[1]; e.topic != "/sandboxes/delete" || e.ns != "k8s.io" {
		t.Errorf("second event %+v", e)
	} else if ev, ok := e.ev.(*types.Sandbox); !ok || ev.SandboxID != "pod-1" {
		t.Errorf("delete event %#v", e.ev)
	}
}

func TestSandboxesChecks(t *testing.T) {
	db := openDB(t)
	evs := eventLog(db)
	ctx := namespaces.WithNamespace(context.Background(), "k8s.io")
	s := db.Sandboxes()
	for _, tc := range []struct {
		name  string
		edit  func(*sandboxes.Sandbox)
		parts []string
	}{
		{"empty id", func(sb *sandboxes.Sandbox) { sb.ID = "" }, []string{"sandbox id", "must not be empty"}},
		{"bad id", func(sb *sandboxes.Sandbox) { sb.ID = "a/b" }, []string{"sandbox id", `"a/b"`}},
		{"leading separator", func(sb *sandboxes.Sandbox) { sb.ID = "-a" }, []string{`"-a"`}},
		{"long id", func(sb *sandboxes.Sandbox) { sb.ID = strings.Repeat("a", 77) }, []string{"77", "76"}},
		{"empty label key", func(sb *sandboxes.Sandbox) { sb.Labels = map[string]string{"": "v"} }, []string{`"x"`, "label key"}},
		{"huge label", func(sb *sandboxes.Sandbox) { sb.Labels = map[string]string{"k": strings.Repeat("v", 5000)} }, []string{`"k"`}},
		{"nil extension", func(sb *sandboxes.Sandbox) { sb.Extensions = map[string]typeurl.Any{"e": nil} }, []string{`"x"`, `"e"`}},
		{"unnamed extension", func(sb *sandboxes.Sandbox) {
			sb.Extensions = map[string]typeurl.Any{"": containers.NewAny("t/e", nil)}
		}, []string{`"x"`, "extension name"}},
	} {
		sb := newSandbox("x")
		tc.edit(&sb)
		_, err := s.Create(ctx, sb)
		wantErr(t, tc.name, err, errdefs.ErrInvalidArgument, tc.parts...)
	}
	// Runtime and spec are optional, as in containerd.
	if _, err := s.Create(ctx, sandboxes.Sandbox{ID: "bare"}); err != nil {
		t.Fatalf("create with only an id: %v", err)
	}
	if sbs, err := s.List(ctx); err != nil || len(sbs) != 1 || sbs[0].ID != "bare" {
		t.Fatalf("rejected creates left records: %+v %v", sbs, err)
	}
	_, err := s.Get(ctx, "nope")
	wantErr(t, "get unknown", err, errdefs.ErrNotFound, `"nope"`)
	_, err = s.Update(ctx, newSandbox("nope"))
	wantErr(t, "update unknown", err, errdefs.ErrNotFound, `"nope"`)
	_, err = s.Update(ctx, newSandbox("nope"), "labels")
	wantErr(t, "masked update unknown", err, errdefs.ErrNotFound, `"nope"`)
	_, err = s.Update(ctx, newSandbox("a/b"), "labels")
	wantErr(t, "update with a bad id", err, errdefs.ErrInvalidArgument, `"a/b"`)
	// A namespace is required.
	if _, err := s.Create(context.Background(), newSandbox("x")); !errdefs.IsFailedPrecondition(err) && !errdefs.IsInvalidArgument(err) {
		t.Fatalf("create without a namespace: %v", err)
	}
	if _, err := s.List(context.Background()); err == nil {
		t.Fatal("list without a namespace succeeded")
	}
	if len(*evs) != 1 {
		t.Fatalf("failed calls published events: %+v", *evs)
	}
}

func TestSandboxesNamespaces(t *testing.T) {
	db := openDB(t)
	s := db.Sandboxes()
	a := namespaces.WithNamespace(context.Background(), "a")
	b := namespaces.WithNamespace(context.Background(), "b")
	for _, tc := range []struct {
		ctx    context.Context
		id, rt string
	}{{a, "pod", "rt-a"}, {b, "pod", "rt-b"}, {a, "only-a", "rt-a"}} {
		sb := newSandbox(tc.id)
		sb.Runtime.Name = tc.rt
		if _, err := s.Create(tc.ctx, sb); err != nil {
			t.Fatalf("create %s: %v", tc.id, err)
		}
	}
	if got, err := s.Get(b, "pod"); err != nil || got.Runtime.Name != "rt-b" {
		t.Fatalf("b's pod: %+v %v", got, err)
	}
	_, err := s.Get(b, "only-a")
	wantErr(t, "get of another namespace's sandbox", err, errdefs.ErrNotFound, `"only-a"`)
	_, err = s.Update(b, newSandbox("only-a"), "labels")
	wantErr(t, "update of another namespace's sandbox", err, errdefs.ErrNotFound, `"only-a"`)
	wantErr(t, "delete of another namespace's sandbox", s.Delete(b, "only-a"), errdefs.ErrNotFound, `"only-a"`)
	if err := s.Delete(a, "pod"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(b, "pod"); err != nil || got.Runtime.Name != "rt-b" {
		t.Fatalf("deleting a's pod touched b's: %+v %v", got, err)
	}
	if sbs, err := s.List(b); err != nil || len(sbs) != 1 || sbs[0].ID != "pod" {
		t.Fatalf("list of b: %+v %v", sbs, err)
	}
	if sbs, err := s.List(namespaces.WithNamespace(context.Background(), "empty")); err != nil || len(sbs) != 0 {
		t.Fatalf("list of an empty namespace: %+v %v", sbs, err)
	}
}

func TestSandboxesList(t *testing.T) {
	db := openDB(t)
	ctx := namespaces.WithNamespace(context.Background(), "k8s.io")
	s := db.Sandboxes()
	mk := func(id, runtime, sandboxer string, labels map[string]string) {
		sb := sandboxes.Sandbox{ID: id, Runtime: sandboxes.RuntimeInfo{Name: runtime}, Sandboxer: sandboxer, Labels: labels}
		if _, err := s.Create(ctx, sb); err != nil {
			t.Fatal(err)
		}
	}
	mk("a", "io.containerd.runc.v2", "podsandbox", map[string]string{"tier": "web", "x.y": "dotted"})
	mk("b", "io.containerd.hull.v2", "shim", map[string]string{"tier": "db"})
	mk("c", "io.containerd.runc.v2", "", nil)
	for _, tc := range []struct {
		filters []string
		want    string
	}{
		{nil, "a b c"},
		{[]string{"id==b"}, "b"},
		{[]string{"id!=b"}, "a c"},
		{[]string{"runtime.name==io.containerd.runc.v2"}, "a c"},
		{[]string{"sandboxer==podsandbox"}, "a"},
		{[]string{"sandboxer"}, "a b"},
		{[]string{"labels.tier==web"}, "a"},
		{[]string{`labels."x.y"==dotted`}, "a"},
		{[]string{"labels.tier"}, "a b"},
		{[]string{"id==a", "id==c"}, "a c"},
		{[]string{"runtime.name==io.containerd.runc.v2,labels.tier==web"}, "a"},
		{[]string{"id~=^[ab]$"}, "a b"},
		{[]string{"image==x"}, ""},
	} {
		sbs, err := s.List(ctx, tc.filters...)
		if err != nil {
			t.Fatalf("%v: %v", tc.filters, err)
		}
		var ids []string
		for _, sb := range sbs {
			ids = append(ids, sb.ID)
		}
		sort.Strings(ids)
		if got := strings.Join(ids, " "); got != tc.want {
			t.Errorf("List(%q) = %q, want %q", tc.filters, got, tc.want)
		}
	}
	for _, bad := range []string{"id==", "id~=(", "labels.tier=="} {
		_, err := s.List(ctx, bad)
		wantErr(t, "bad filter "+bad, err, errdefs.ErrInvalidArgument)
	}
}

func TestSandboxesUpdate(t *testing.T) {
	db := openDB(t)
	evs := eventLog(db)
	ctx := namespaces.WithNamespace(context.Background(), "k8s.io")
	s := db.Sandboxes()
	in := newSandbox("u")
	in.Labels = map[string]string{"keep": "1", "drop": "2"}
	in.Extensions = map[string]typeurl.Any{"a": containers.NewAny("t/a", []byte("a")), "b": containers.NewAny("t/b", []byte("b"))}
	created, err := s.Create(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	// Field paths touch only what they name.
	before := time.Now().UTC().Round(0)
	up := sandboxes.Sandbox{ID: "u", Labels: map[string]string{"new": "3"}, Sandboxer: "ignored",
		Runtime:    sandboxes.RuntimeInfo{Name: "ignored"},
		Extensions: map[string]typeurl.Any{"c": containers.NewAny("t/c", []byte("c"))}}
	got, err := s.Update(ctx, up, "labels.new", "labels.drop", "extensions.c", "extensions.a")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Labels) != 2 || got.Labels["keep"] != "1" || got.Labels["new"] != "3" ||
		got.Runtime.Name != "io.containerd.runc.v2" || got.Sandboxer != "podsandbox" || got.Spec.GetTypeUrl() != specURL {
		t.Fatalf("after label update: %+v", got)
	}
	if len(got.Extensions) != 2 || got.Extensions["b"] == nil || string(got.Extensions["c"].GetValue()) != "c" {
		t.Fatalf("extensions after update: %v", got.Extensions)
	}
	if !got.CreatedAt.Equal(created.CreatedAt) || got.UpdatedAt.Before(before) {
		t.Fatalf("times after update: created %v updated %v (update began %v)", got.CreatedAt, got.UpdatedAt, before)
	}
	if stored, _ := s.Get(ctx, "u"); !stored.UpdatedAt.Equal(got.UpdatedAt) || len(stored.Labels) != 2 {
		t.Fatalf("stored %+v, update returned %+v", stored, got)
	}
	got, err = s.Update(ctx, sandboxes.Sandbox{ID: "u", Spec: spec(`{}`),
		Runtime: sandboxes.RuntimeInfo{Name: "io.containerd.hull.v2", Options: containers.NewAny("t/o", []byte("o"))}}, "spec", "runtime")
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Spec.GetValue()) != "{}" || got.Runtime.Name != "io.containerd.hull.v2" || string(got.Runtime.Options.GetValue()) != "o" || got.Labels["keep"] != "1" {
		t.Fatalf("after spec and runtime update: %+v", got)
	}
	// A full replace sets every mutable field; runtime name and sandboxer
	// must be those recorded.
	full := sandboxes.Sandbox{ID: "u", Runtime: sandboxes.RuntimeInfo{Name: "io.containerd.hull.v2"}, Sandboxer: "podsandbox",
		Labels: map[string]string{"only": "this"}}
	got, err = s.Update(ctx, full)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Labels) != 1 || got.Spec != nil || got.Extensions != nil || got.Runtime.Options != nil || got.Sandboxer != "podsandbox" {
		t.Fatalf("after full update: %+v", got)
	}
	full.Runtime.Name = "io.containerd.runc.v2"
	_, err = s.Update(ctx, full)
	wantErr(t, "full update changing the runtime name", err, errdefs.ErrInvalidArgument, `"u"`, "runtime.name")
	full.Runtime.Name, full.Sandboxer = "io.containerd.hull.v2", "other"
	_, err = s.Update(ctx, full)
	wantErr(t, "full update changing the sandboxer", err, errdefs.ErrInvalidArgument, `"u"`, "sandboxer")
	for _, p := range []string{"sandboxer", "id"} {
		_, err = s.Update(ctx, full, p)
		wantErr(t, "update of "+p, err, errdefs.ErrInvalidArgument, `"u"`, p)
	}
	for _, p := range []string{"bogus", "labels.", "extensions.", "created_at"} {
		_, err = s.Update(ctx, full, "labels", p)
		wantErr(t, "unknown path "+p, err, errdefs.ErrInvalidArgument, `"`+p+`"`)
	}
	_, err = s.Update(ctx, sandboxes.Sandbox{ID: "u", Labels: map[string]string{"": "v"}}, "labels")
	wantErr(t, "update to a bad label", err, errdefs.ErrInvalidArgument, "label key")
	// Failed updates changed nothing.
	if got, _ := s.Get(ctx, "u"); len(got.Labels) != 1 || got.Labels["only"] != "this" || got.Sandboxer != "podsandbox" {
		t.Fatalf("failed updates changed the record: %+v", got)
	}
	var topics []string
	for _, e := range *evs {
		topics = append(topics, e.topic)
	}
	if want := "/sandboxes/create /sandboxes/update /sandboxes/update /sandboxes/update"; strings.Join(topics, " ") != want {
		t.Fatalf("events %v, want %s", topics, want)
	}
	last, ok := (*evs)[3].ev.(*types.Sandbox)
	if !ok || last.SandboxID != "u" || last.Labels["only"] != "this" || last.Runtime.GetName() != "io.containerd.hull.v2" ||
		last.Sandboxer != "podsandbox" || last.UpdatedAt == nil || (*evs)[3].ns != "k8s.io" {
		t.Fatalf("update event %#v in %q", (*evs)[3].ev, (*evs)[3].ns)
	}
}

// TestSandboxesDurable: records are on disk when a call returns and read
// back after the database is reopened.
func TestSandboxesDurable(t *testing.T) {
	dir := t.TempDir()
	ctx := namespaces.WithNamespace(context.Background(), "k8s.io")
	db := openDBAt(t, dir)
	in := newSandbox("kept")
	in.Labels = map[string]string{"k": "v"}
	created, err := db.Sandboxes().Create(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	got, err := openDBAt(t, dir).Sandboxes().Get(ctx, "kept")
	if err != nil || got.Labels["k"] != "v" || got.Sandboxer != "podsandbox" || !got.CreatedAt.Equal(created.CreatedAt) ||
		string(got.Spec.GetValue()) != `{"ociVersion":"1.2.0"}` {
		t.Fatalf("after reopening: %+v %v", got, err)
	}
}

// TestGCIgnoresSandboxes: a sandbox is no gc root in hull yet, so the
// blob its gc.ref label names is collected, and collection leaves the
// sandbox record alone.
func TestGCIgnoresSandboxes(t *testing.T) {
	db := openDB(t)
	ctx := namespaces.WithNamespace(context.Background(), "gc")
	blob := put(t, ctx, db, "named-by-a-sandbox", nil)
	sb := newSandbox("pod")
	sb.Labels = map[string]string{"containerd.io/gc.ref.content.x": blob.String()}
	if _, err := db.Sandboxes().Create(ctx, sb); err != nil {
		t.Fatal(err)
	}
	if !exists(ctx, db, blob) {
		t.Fatal("blob missing before gc")
	}
	if _, err := db.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	if exists(ctx, db, blob) {
		t.Error("a sandbox's gc.ref label kept a blob: sandboxes are not gc roots")
	}
	if _, err := db.Sandboxes().Get(ctx, "pod"); err != nil {
		t.Errorf("gc removed the sandbox record: %v", err)
	}
}
