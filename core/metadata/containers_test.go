package metadata

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/namespaces"
)

const specURL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"

func spec(s string) typeurl.Any { return containers.NewAny(specURL, []byte(s)) }

func newContainer(id string) containers.Container {
	return containers.Container{
		ID: id, Runtime: containers.RuntimeInfo{Name: "io.containerd.runc.v2"},
		Spec: spec(`{"ociVersion":"1.2.0"}`),
	}
}

// recorder is an events.Publisher that keeps what it is given.
type recorder struct{ topics []string }

func (r *recorder) Publish(ctx context.Context, topic string, ev any) error {
	r.topics = append(r.topics, topic)
	return nil
}

func wantErr(t *testing.T, what string, err, class error, parts ...string) {
	t.Helper()
	if !errors.Is(err, class) {
		t.Fatalf("%s: got %v, want %v", what, err, class)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("%s: error %q does not name %q", what, err, p)
		}
	}
}

func TestContainersCreateGetDelete(t *testing.T) {
	db := openDB(t)
	rec := &recorder{}
	db.pub = rec
	ctx := namespaces.WithNamespace(context.Background(), "c")
	s := db.Containers()
	in := newContainer("web-1")
	in.Labels = map[string]string{"app": "web"}
	in.Image = "example.test/web:1"
	in.Snapshotter, in.SnapshotKey = "native", "web-1-rootfs"
	in.Runtime.Options = containers.NewAny("example/opts", []byte{1, 2, 3})
	in.Extensions = map[string]typeurl.Any{"ext": containers.NewAny("example/ext", []byte("x"))}
	in.SandboxID = "pod"
	created, err := s.Create(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if created.CreatedAt.IsZero() || !created.CreatedAt.Equal(created.UpdatedAt) {
		t.Fatalf("times not set by the store: %v %v", created.CreatedAt, created.UpdatedAt)
	}
	got, err := s.Get(ctx, "web-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Image != in.Image || got.Labels["app"] != "web" || got.Runtime.Name != "io.containerd.runc.v2" ||
		got.Runtime.Options.GetTypeUrl() != "example/opts" || string(got.Runtime.Options.GetValue()) != "\x01\x02\x03" ||
		got.Spec.GetTypeUrl() != specURL || string(got.Spec.GetValue()) != `{"ociVersion":"1.2.0"}` ||
		got.Snapshotter != "native" || got.SnapshotKey != "web-1-rootfs" || got.SandboxID != "pod" ||
		string(got.Extensions["ext"].GetValue()) != "x" || !got.CreatedAt.Equal(created.CreatedAt) {
		t.Fatalf("got %+v", got)
	}
	_, err = s.Create(ctx, in)
	wantErr(t, "duplicate create", err, errdefs.ErrAlreadyExists, `"web-1"`)
	// Another namespace does not see it.
	_, err = s.Get(namespaces.WithNamespace(ctx, "other"), "web-1")
	wantErr(t, "get in another namespace", err, errdefs.ErrNotFound, `"web-1"`)
	if err := s.Delete(ctx, "web-1"); err != nil {
		t.Fatal(err)
	}
	_, err = s.Get(ctx, "web-1")
	wantErr(t, "get after delete", err, errdefs.ErrNotFound, `"web-1"`)
	wantErr(t, "second delete", s.Delete(ctx, "web-1"), errdefs.ErrNotFound, `"web-1"`)
	if want := "/containers/create /containers/delete"; strings.Join(rec.topics, " ") != want {
		t.Fatalf("events %v, want %s", rec.topics, want)
	}
}

func TestContainersCreateChecks(t *testing.T) {
	db := openDB(t)
	ctx := namespaces.WithNamespace(context.Background(), "c")
	s := db.Containers()
	for _, tc := range []struct {
		name  string
		edit  func(*containers.Container)
		parts []string
	}{
		{"empty id", func(c *containers.Container) { c.ID = "" }, []string{"must not be empty"}},
		{"bad id", func(c *containers.Container) { c.ID = "a/b" }, []string{`"a/b"`}},
		{"leading separator", func(c *containers.Container) { c.ID = "-a" }, []string{`"-a"`}},
		{"long id", func(c *containers.Container) { c.ID = strings.Repeat("a", 77) }, []string{"77", "76"}},
		{"no spec", func(c *containers.Container) { c.Spec = nil }, []string{`"x"`, "spec"}},
		{"empty spec", func(c *containers.Container) { c.Spec = containers.NewAny("", nil) }, []string{"spec"}},
		{"no runtime", func(c *containers.Container) { c.Runtime.Name = "" }, []string{`"x"`, "runtime"}},
		{"key without snapshotter", func(c *containers.Container) { c.SnapshotKey = "k" }, []string{`"k"`, "snapshotter"}},
		{"empty label key", func(c *containers.Container) { c.Labels = map[string]string{"": "v"} }, []string{"label key"}},
		{"huge label", func(c *containers.Container) { c.Labels = map[string]string{"k": strings.Repeat("v", 5000)} }, []string{`"k"`}},
		{"nil extension", func(c *containers.Container) { c.Extensions = map[string]typeurl.Any{"e": nil} }, []string{`"e"`}},
	} {
		c := newContainer("x")
		tc.edit(&c)
		_, err := s.Create(ctx, c)
		wantErr(t, tc.name, err, errdefs.ErrInvalidArgument, tc.parts...)
	}
	if cs, err := s.List(ctx); err != nil || len(cs) != 0 {
		t.Fatalf("rejected creates left records: %v %v", cs, err)
	}
	_, err := s.Get(ctx, "nope")
	wantErr(t, "get unknown", err, errdefs.ErrNotFound, `"nope"`)
	// A namespace is required.
	_, err = s.Create(context.Background(), newContainer("x"))
	if err == nil {
		t.Fatal("create without a namespace succeeded")
	}
}

func TestContainersList(t *testing.T) {
	db := openDB(t)
	ctx := namespaces.WithNamespace(context.Background(), "c")
	s := db.Containers()
	mk := func(id, image, runtime, sn, key, sandbox string, labels map[string]string) {
		c := newContainer(id)
		c.Image, c.Runtime.Name, c.Snapshotter, c.SnapshotKey, c.SandboxID, c.Labels = image, runtime, sn, key, sandbox, labels
		if _, err := s.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	mk("a", "img:1", "io.containerd.runc.v2", "overlayfs", "a-root", "", map[string]string{"tier": "web", "x.y": "dotted"})
	mk("b", "img:2", "io.containerd.hull.v2", "native", "b-root", "pod1", map[string]string{"tier": "db"})
	mk("c", "", "io.containerd.runc.v2", "", "", "pod1", nil)
	for _, tc := range []struct {
		filters []string
		want    string
	}{
		{nil, "a b c"},
		{[]string{"id==b"}, "b"},
		{[]string{"image==img:1"}, "a"},
		{[]string{"image!=img:1"}, "b c"},
		{[]string{"runtime.name==io.containerd.runc.v2"}, "a c"},
		{[]string{"snapshotter==native"}, "b"},
		{[]string{"snapshotkey==a-root"}, "a"},
		{[]string{"sandbox==pod1"}, "b c"},
		{[]string{"labels.tier==web"}, "a"},
		{[]string{`labels."x.y"==dotted`}, "a"},
		{[]string{"labels.tier"}, "a b"},
		{[]string{"id==a", "id==c"}, "a c"},
		{[]string{"runtime.name==io.containerd.runc.v2,labels.tier==web"}, "a"},
		{[]string{"image~=^img"}, "a b"},
	} {
		cs, err := s.List(ctx, tc.filters...)
		if err != nil {
			t.Fatalf("%v: %v", tc.filters, err)
		}
		var ids []string
		for _, c := range cs {
			ids = append(ids, c.ID)
		}
		sort.Strings(ids)
		if got := strings.Join(ids, " "); got != tc.want {
			t.Errorf("List(%q) = %q, want %q", tc.filters, got, tc.want)
		}
	}
	_, err := s.List(ctx, "id==")
	if err == nil {
		_, err = s.List(ctx, "id~=(")
	}
	wantErr(t, "bad filter", err, errdefs.ErrInvalidArgument)
	if cs, err := s.List(namespaces.WithNamespace(ctx, "empty")); err != nil || len(cs) != 0 {
		t.Fatalf("list of an empty namespace: %v %v", cs, err)
	}
}

func TestContainersUpdate(t *testing.T) {
	db := openDB(t)
	ctx := namespaces.WithNamespace(context.Background(), "c")
	s := db.Containers()
	in := newContainer("u")
	in.Labels = map[string]string{"keep": "1", "drop": "2"}
	in.Image, in.Snapshotter, in.SnapshotKey, in.SandboxID = "img:1", "native", "u-root", "pod"
	in.Extensions = map[string]typeurl.Any{"a": containers.NewAny("t/a", []byte("a")), "b": containers.NewAny("t/b", []byte("b"))}
	created, err := s.Create(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond)
	// Field paths touch only what they name.
	up := containers.Container{ID: "u", Labels: map[string]string{"new": "3"}, Image: "ignored",
		Extensions: map[string]typeurl.Any{"c": containers.NewAny("t/c", []byte("c"))}}
	got, err := s.Update(ctx, up, "labels.new", "labels.drop", "extensions.c", "extensions.a")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Labels) != 2 || got.Labels["keep"] != "1" || got.Labels["new"] != "3" || got.Image != "img:1" {
		t.Fatalf("after label update: %+v", got)
	}
	if len(got.Extensions) != 2 || got.Extensions["b"] == nil || string(got.Extensions["c"].GetValue()) != "c" {
		t.Fatalf("extensions after update: %v", got.Extensions)
	}
	if !got.CreatedAt.Equal(created.CreatedAt) || !got.UpdatedAt.After(created.UpdatedAt) {
		t.Fatalf("times after update: created %v updated %v (was %v)", got.CreatedAt, got.UpdatedAt, created.UpdatedAt)
	}
	got, err = s.Update(ctx, containers.Container{ID: "u", Image: "img:2", SnapshotKey: "u-root2", Spec: spec(`{}`),
		Runtime: containers.RuntimeInfo{Name: "io.containerd.hull.v2"}}, "image", "snapshotkey", "spec", "runtime")
	if err != nil {
		t.Fatal(err)
	}
	if got.Image != "img:2" || got.SnapshotKey != "u-root2" || string(got.Spec.GetValue()) != "{}" || got.Runtime.Name != "io.containerd.hull.v2" || got.Labels["keep"] != "1" {
		t.Fatalf("after field update: %+v", got)
	}
	// A full replace keeps id, snapshotter and sandbox, which must match.
	full := newContainer("u")
	full.Snapshotter, full.SandboxID = "native", "pod"
	full.Labels = map[string]string{"only": "this"}
	got, err = s.Update(ctx, full)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Labels) != 1 || got.Image != "" || got.SnapshotKey != "" || got.Extensions != nil || got.Snapshotter != "native" {
		t.Fatalf("after full update: %+v", got)
	}
	full.Snapshotter = "overlayfs"
	_, err = s.Update(ctx, full)
	wantErr(t, "full update changing the snapshotter", err, errdefs.ErrInvalidArgument, "snapshotter", `"u"`)
	full.Snapshotter, full.SandboxID = "native", "other"
	_, err = s.Update(ctx, full)
	wantErr(t, "full update changing the sandbox", err, errdefs.ErrInvalidArgument, "sandbox")
	for _, p := range []string{"snapshotter", "sandbox", "id"} {
		_, err = s.Update(ctx, containers.Container{ID: "u", Snapshotter: "x", SandboxID: "y"}, p)
		wantErr(t, "update of "+p, err, errdefs.ErrInvalidArgument, p)
	}
	_, err = s.Update(ctx, containers.Container{ID: "u"}, "bogus")
	wantErr(t, "unknown path", err, errdefs.ErrInvalidArgument, `"bogus"`)
	_, err = s.Update(ctx, containers.Container{ID: "u"}, "spec")
	wantErr(t, "removing the spec", err, errdefs.ErrInvalidArgument, "spec")
	_, err = s.Update(ctx, containers.Container{ID: "u"}, "runtime")
	wantErr(t, "removing the runtime", err, errdefs.ErrInvalidArgument, "runtime")
	_, err = s.Update(ctx, containers.Container{ID: "nope"}, "labels")
	wantErr(t, "update of an unknown container", err, errdefs.ErrNotFound, `"nope"`)
	// Failed updates changed nothing.
	if got, _ := s.Get(ctx, "u"); got.Labels["only"] != "this" || got.Spec == nil {
		t.Fatalf("failed updates changed the record: %+v", got)
	}
}

func TestContainerEventsCarryFields(t *testing.T) {
	db := openDB(t)
	var evs []any
	db.pub = publisherFunc(func(ctx context.Context, topic string, ev any) error {
		if ns, _ := namespaces.Namespace(ctx); ns != "c" {
			t.Errorf("event %s in namespace %q", topic, ns)
		}
		evs = append(evs, ev)
		return nil
	})
	ctx := namespaces.WithNamespace(context.Background(), "c")
	c := newContainer("e")
	c.Image = "img"
	if _, err := db.Containers().Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Containers().Update(ctx, containers.Container{ID: "e", Labels: map[string]string{"k": "v"}}, "labels"); err != nil {
		t.Fatal(err)
	}
	if cr, ok := evs[0].(*eventstypes.ContainerCreate); !ok || cr.ID != "e" || cr.Image != "img" || cr.Runtime.GetName() != "io.containerd.runc.v2" {
		t.Fatalf("create event %#v", evs[0])
	}
	if up, ok := evs[1].(*eventstypes.ContainerUpdate); !ok || up.ID != "e" || up.Labels["k"] != "v" {
		t.Fatalf("update event %#v", evs[1])
	}
}

type publisherFunc func(ctx context.Context, topic string, ev any) error

func (f publisherFunc) Publish(ctx context.Context, topic string, ev any) error {
	return f(ctx, topic, ev)
}

// TestGCContainerKeepsItsSnapshot: a container holds its root filesystem
// snapshot and that snapshot's parents after its image is deleted, and
// gives them up when it is deleted itself.
func TestGCContainerKeepsItsSnapshot(t *testing.T) {
	db := openDB(t)
	s := withNative(t, db)
	ctx := namespaces.WithNamespace(context.Background(), "gc")
	layer(t, ctx, s, "base", "")
	layer(t, ctx, s, "top", "base")
	// The image's config references its top layer's snapshot, as unpack
	// labels it.
	config := put(t, ctx, db, "config", map[string]string{"containerd.io/gc.ref.snapshot.native": "top"})
	manifest := put(t, ctx, db, "manifest", map[string]string{"containerd.io/gc.ref.content.config": config.String()})
	if _, err := db.Images().Create(ctx, images.Image{Name: "img", Target: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: manifest, Size: 8}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prepare(ctx, "ctr-rootfs", "top"); err != nil {
		t.Fatal(err)
	}
	extra := put(t, ctx, db, "extra", nil)
	c := newContainer("ctr")
	c.Image, c.Snapshotter, c.SnapshotKey = "img", "native", "ctr-rootfs"
	c.Labels = map[string]string{"containerd.io/gc.ref.content.extra": extra.String()}
	if _, err := db.Containers().Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := db.Images().Delete(ctx, "img", images.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ctr-rootfs", "top", "base"} {
		if _, err := s.Stat(ctx, k); err != nil {
			t.Errorf("snapshot %s removed while the container uses it: %v", k, err)
		}
	}
	if !exists(ctx, db, extra) {
		t.Error("blob named by the container's gc.ref label removed")
	}
	if exists(ctx, db, manifest) || exists(ctx, db, config) {
		t.Error("the deleted image's blobs survived")
	}
	if err := db.Containers().Delete(ctx, "ctr"); err != nil {
		t.Fatal(err)
	}
	st, err := db.GarbageCollect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ctr-rootfs", "top", "base"} {
		if _, err := s.Stat(ctx, k); !errdefs.IsNotFound(err) {
			t.Errorf("snapshot %s survived its container: %v", k, err)
		}
	}
	if st.SnapshotsDeleted != 3 {
		t.Errorf("gc removed %d backend snapshots, want 3", st.SnapshotsDeleted)
	}
	if exists(ctx, db, extra) {
		t.Error("blob named by the deleted container's label survived")
	}
}

// TestGCContainerSnapshotLabel: a container's gc.ref.snapshot label keeps
// the snapshot it names, in the snapshotter the label names.
func TestGCContainerSnapshotLabel(t *testing.T) {
	db := openDB(t)
	s := withNative(t, db)
	ctx := namespaces.WithNamespace(context.Background(), "gc")
	layer(t, ctx, s, "kept", "")
	layer(t, ctx, s, "dropped", "")
	c := newContainer("ctr")
	c.Labels = map[string]string{"containerd.io/gc.ref.snapshot.native": "kept"}
	if _, err := db.Containers().Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "kept"); err != nil {
		t.Errorf("labelled snapshot removed: %v", err)
	}
	if _, err := s.Stat(ctx, "dropped"); !errdefs.IsNotFound(err) {
		t.Errorf("unreferenced snapshot kept: %v", err)
	}
}
