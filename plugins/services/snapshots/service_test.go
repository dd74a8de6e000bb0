package snapshots

import (
	"context"
	"fmt"
	"github.com/hullrt/hull/internal/servicetest"
	"io"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	api "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/core/snapshots/native"
	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/plugins/services"
)

// fakeSnapshotter keeps snapshot records in memory and records the calls
// it gets; err, when set, fails every call, naming the key.
type fakeSnapshotter struct {
	name string
	err  error

	mu       sync.Mutex
	infos    map[string]snapshots.Info
	calls    []string
	cleaned  bool
	updPaths []string
}

func newFake(name string) *fakeSnapshotter {
	return &fakeSnapshotter{name: name, infos: map[string]snapshots.Info{}}
}

func (f *fakeSnapshotter) fail(op, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, op+" "+key)
	if f.err != nil {
		return fmt.Errorf("%s of snapshot %q in %s: %w", op, key, f.name, f.err)
	}
	return nil
}

func (f *fakeSnapshotter) mounts(key string) []mount.Mount {
	return []mount.Mount{{Type: "bind", Source: "/" + f.name + "/" + key, Options: []string{"rbind", "rw"}}}
}

func (f *fakeSnapshotter) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	if err := f.fail("stat", key); err != nil {
		return snapshots.Info{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	i, ok := f.infos[key]
	if !ok {
		return snapshots.Info{}, fmt.Errorf("snapshot %q: %w", key, errdefs.ErrNotFound)
	}
	return i, nil
}

func (f *fakeSnapshotter) Update(ctx context.Context, info snapshots.Info, paths ...string) (snapshots.Info, error) {
	if err := f.fail("update", info.Name); err != nil {
		return snapshots.Info{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updPaths = paths
	i := f.infos[info.Name]
	i.Labels = info.Labels
	i.Updated = i.Updated.Add(time.Hour)
	f.infos[info.Name] = i
	return i, nil
}

func (f *fakeSnapshotter) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	if err := f.fail("usage", key); err != nil {
		return snapshots.Usage{}, err
	}
	return snapshots.Usage{Size: 4096, Inodes: 3}, nil
}

func (f *fakeSnapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	if err := f.fail("mounts", key); err != nil {
		return nil, err
	}
	return f.mounts(key), nil
}

func (f *fakeSnapshotter) create(kind snapshots.Kind, key, parent string, opts []snapshots.Opt) ([]mount.Mount, error) {
	info := snapshots.Info{Kind: kind, Name: key, Parent: parent}
	for _, o := range opts {
		if err := o(&info); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.infos[key]; ok {
		return nil, fmt.Errorf("snapshot %q: %w", key, errdefs.ErrAlreadyExists)
	}
	info.Created = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	info.Updated = info.Created
	f.infos[key] = info
	return f.mounts(key), nil
}

func (f *fakeSnapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	if err := f.fail("prepare", key); err != nil {
		return nil, err
	}
	return f.create(snapshots.KindActive, key, parent, opts)
}

func (f *fakeSnapshotter) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	if err := f.fail("view", key); err != nil {
		return nil, err
	}
	return f.create(snapshots.KindView, key, parent, opts)
}

func (f *fakeSnapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	if err := f.fail("commit", key); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	active, ok := f.infos[key]
	if !ok {
		return fmt.Errorf("snapshot %q: %w", key, errdefs.ErrNotFound)
	}
	info := snapshots.Info{Kind: snapshots.KindCommitted, Name: name, Parent: active.Parent, Created: active.Created, Updated: active.Updated}
	for _, o := range opts {
		if err := o(&info); err != nil {
			return err
		}
	}
	delete(f.infos, key)
	f.infos[name] = info
	return nil
}

func (f *fakeSnapshotter) Remove(ctx context.Context, key string) error {
	if err := f.fail("remove", key); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.infos[key]; !ok {
		return fmt.Errorf("snapshot %q: %w", key, errdefs.ErrNotFound)
	}
	delete(f.infos, key)
	return nil
}

func (f *fakeSnapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	if err := f.fail("walk", fmt.Sprint(filters)); err != nil {
		return err
	}
	f.mu.Lock()
	keys := slices.Sorted(maps.Keys(f.infos))
	infos := maps.Clone(f.infos)
	f.mu.Unlock()
	for _, k := range keys {
		if len(filters) > 0 && !slices.Contains(filters, "name=="+k) {
			continue
		}
		if err := fn(ctx, infos[k]); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeSnapshotter) Close() error { return nil }

// cleaningSnapshotter is a fakeSnapshotter that is also a Cleaner.
type cleaningSnapshotter struct{ *fakeSnapshotter }

func (c cleaningSnapshotter) Cleanup(ctx context.Context) error {
	if err := c.fail("cleanup", ""); err != nil {
		return err
	}
	c.mu.Lock()
	c.cleaned = true
	c.mu.Unlock()
	return nil
}

// fakeSource finds snapshotters by name; "" is not special here: that
// is the service plugin's job.
type fakeSource map[string]snapshots.Snapshotter

func (s fakeSource) Snapshotter(name string) (snapshots.Snapshotter, error) {
	sn, ok := s[name]
	if !ok {
		return nil, fmt.Errorf("snapshotter %q: %w", name, errdefs.ErrNotFound)
	}
	return sn, nil
}

// newClient builds the snapshots service and adapter through their
// registrations over a Source holding the given snapshotters, serves the
// adapter and returns a client and the two plugins.
func newClient(t *testing.T, src fakeSource) (api.SnapshotsClient, *plugin.Plugin, *plugin.Plugin) {
	t.Helper()
	set := &plugin.Set{}
	set.Add(&plugin.Plugin{Registration: &plugin.Registration{Type: plugin.MetadataPlugin, ID: "bolt"}, Instance: src})
	reg := &plugin.Registry{}
	Register(reg)
	var ps []*plugin.Plugin
	for _, r := range reg.Graph(nil) {
		ic := &plugin.InitContext{Context: t.Context()}
		if c, ok := r.Config.(*Config); ok {
			cfg := *c // the registration's default, not shared between tests
			ic.Config = &cfg
		}
		p := set.Init(r, ic)
		if p.Err != nil {
			t.Fatal(p.Err)
		}
		ps = append(ps, p)
	}
	return api.NewSnapshotsClient(servicetest.Serve(t, ps[1].Instance.(services.GRPCService))), ps[0], ps[1]
}

func TestDefaultSnapshotter(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  fakeSource
		want string
	}{
		{"configured default present", fakeSource{"overlayfs": newFake("overlayfs"), "native": newFake("native")}, "overlayfs"},
		{"falls back to native", fakeSource{"native": newFake("native")}, "native"},
		{"neither: the configured name stays", fakeSource{"zfs": newFake("zfs")}, "overlayfs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, svc, grpcPlugin := newClient(t, tc.src)
			if got := svc.Instance.(*Service).Default(); got != tc.want {
				t.Errorf("default %q, want %q", got, tc.want)
			}
			if svc.Meta.Exports["default"] != tc.want || grpcPlugin.Meta.Exports["default"] != tc.want {
				t.Errorf("exports %v and %v, want default=%s on both", svc.Meta.Exports, grpcPlugin.Meta.Exports, tc.want)
			}
			// A request naming no snapshotter goes to the default.
			_, err := c.Prepare(servicetest.ClientCtx(t, "ns1"), &api.PrepareSnapshotRequest{Key: "k"})
			if _, ok := tc.src[tc.want]; ok {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tc.src[tc.want].Stat(t.Context(), "k"); err != nil {
					t.Errorf("the default snapshotter has no snapshot k: %v", err)
				}
			} else {
				servicetest.WantCode(t, err, codes.NotFound, `"overlayfs"`)
			}
		})
	}
}

func TestSnapshotCalls(t *testing.T) {
	fake := newFake("native")
	c, _, _ := newClient(t, fakeSource{"native": cleaningSnapshotter{fake}})
	ctx := servicetest.ClientCtx(t, "ns1")
	wantMounts := func(got []*types.Mount, key string) {
		t.Helper()
		want := []*types.Mount{{Type: "bind", Source: "/native/" + key, Options: []string{"rbind", "rw"}}}
		if len(got) != 1 || !proto.Equal(got[0], want[0]) {
			t.Errorf("mounts %v, want %v", got, want)
		}
	}

	pr, err := c.Prepare(ctx, &api.PrepareSnapshotRequest{Snapshotter: "native", Key: "a", Labels: map[string]string{"l": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	wantMounts(pr.Mounts, "a")
	// A commit's parent travels as a label, which is not kept.
	_, err = c.Commit(ctx, &api.CommitSnapshotRequest{Snapshotter: "native", Name: "base", Key: "a",
		Labels: map[string]string{"c": "2", snapshots.LabelCommitParent: "grandparent"}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Stat(ctx, &api.StatSnapshotRequest{Snapshotter: "native", Key: "base"})
	if err != nil {
		t.Fatal(err)
	}
	want := &api.Info{Name: "base", Parent: "grandparent", Kind: api.Kind_COMMITTED, Labels: map[string]string{"c": "2"},
		CreatedAt: st.Info.CreatedAt, UpdatedAt: st.Info.UpdatedAt}
	if !proto.Equal(st.Info, want) || !st.Info.CreatedAt.AsTime().Equal(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("stat %v, want %v", st.Info, want)
	}
	if _, err := c.Commit(ctx, &api.CommitSnapshotRequest{Snapshotter: "native", Name: "plain", Key: "missing"}); err == nil {
		t.Error("commit of a missing key succeeded")
	}

	vr, err := c.View(ctx, &api.ViewSnapshotRequest{Snapshotter: "native", Key: "v", Parent: "base", Labels: map[string]string{"v": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	wantMounts(vr.Mounts, "v")
	if i, _ := fake.Stat(t.Context(), "v"); i.Kind != snapshots.KindView || i.Parent != "base" || i.Labels["v"] != "1" {
		t.Errorf("view recorded as %+v", i)
	}
	mr, err := c.Mounts(ctx, &api.MountsRequest{Snapshotter: "native", Key: "v"})
	if err != nil {
		t.Fatal(err)
	}
	wantMounts(mr.Mounts, "v")

	ur, err := c.Update(ctx, &api.UpdateSnapshotRequest{Snapshotter: "native",
		Info: &api.Info{Name: "base", Labels: map[string]string{"u": "3"}}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels.u"}}})
	if err != nil {
		t.Fatal(err)
	}
	if ur.Info.Name != "base" || !maps.Equal(ur.Info.Labels, map[string]string{"u": "3"}) || !slices.Equal(fake.updPaths, []string{"labels.u"}) {
		t.Errorf("update: %v with paths %v", ur.Info, fake.updPaths)
	}

	us, err := c.Usage(ctx, &api.UsageRequest{Snapshotter: "native", Key: "v"})
	if err != nil || us.Size != 4096 || us.Inodes != 3 {
		t.Errorf("usage: %v, %v", us, err)
	}

	names := func(filters ...string) []string {
		l, err := c.List(ctx, &api.ListSnapshotsRequest{Snapshotter: "native", Filters: filters})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for {
			m, err := l.Recv()
			if err == io.EOF {
				return out
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, i := range m.Info {
				out = append(out, i.Name)
			}
		}
	}
	if got := names(); !slices.Equal(got, []string{"base", "v"}) {
		t.Errorf("list: %v", got)
	}
	if got := names("name==v"); !slices.Equal(got, []string{"v"}) {
		t.Errorf("list name==v: %v", got)
	}

	if _, err := c.Remove(ctx, &api.RemoveSnapshotRequest{Snapshotter: "native", Key: "v"}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Remove(ctx, &api.RemoveSnapshotRequest{Snapshotter: "native", Key: "v"})
	servicetest.WantCode(t, err, codes.NotFound, `"v"`)
	_, err = c.Prepare(ctx, &api.PrepareSnapshotRequest{Snapshotter: "native", Key: "base"})
	servicetest.WantCode(t, err, codes.AlreadyExists, `"base"`)

	if _, err := c.Cleanup(ctx, &api.CleanupRequest{Snapshotter: "native"}); err != nil || !fake.cleaned {
		t.Errorf("cleanup: %v (cleaned %v)", err, fake.cleaned)
	}
}

func TestListBatches(t *testing.T) {
	fake := newFake("native")
	for i := range 230 {
		fake.infos[fmt.Sprintf("k%03d", i)] = snapshots.Info{Kind: snapshots.KindCommitted, Name: fmt.Sprintf("k%03d", i)}
	}
	c, _, _ := newClient(t, fakeSource{"native": fake})
	l, err := c.List(servicetest.ClientCtx(t, "ns1"), &api.ListSnapshotsRequest{Snapshotter: "native"})
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	var n int
	for {
		m, err := l.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(m.Info))
		for _, i := range m.Info {
			if i.Name != fmt.Sprintf("k%03d", n) || i.Kind != api.Kind_COMMITTED {
				t.Fatalf("info %d: %v", n, i)
			}
			n++
		}
	}
	if !slices.Equal(sizes, []int{100, 100, 30}) {
		t.Errorf("batches %v, want 100, 100, 30", sizes)
	}
}

func TestCleanupWithoutCleaner(t *testing.T) {
	// A snapshotter that cannot clean up has nothing to clean: no error.
	c, _, _ := newClient(t, fakeSource{"native": newFake("native")})
	if _, err := c.Cleanup(servicetest.ClientCtx(t, "ns1"), &api.CleanupRequest{Snapshotter: "native"}); err != nil {
		t.Error(err)
	}
}

func TestErrorCodes(t *testing.T) {
	for _, tc := range servicetest.ErrorClasses {
		t.Run(tc.Code.String(), func(t *testing.T) {
			fake := newFake("native")
			fake.err = tc.Class
			c := api.NewSnapshotsClient(servicetest.Serve(t, NewSnapshotsServer(fakeSource{"native": cleaningSnapshotter{fake}})))
			ctx := servicetest.ClientCtx(t, "ns1")
			sn := "native"
			check := func(err error, key string) {
				t.Helper()
				servicetest.WantCode(t, err, tc.Code, `"`+key+`"`, "native")
			}
			_, err := c.Prepare(ctx, &api.PrepareSnapshotRequest{Snapshotter: sn, Key: "p1"})
			check(err, "p1")
			_, err = c.View(ctx, &api.ViewSnapshotRequest{Snapshotter: sn, Key: "v1"})
			check(err, "v1")
			_, err = c.Mounts(ctx, &api.MountsRequest{Snapshotter: sn, Key: "m1"})
			check(err, "m1")
			_, err = c.Commit(ctx, &api.CommitSnapshotRequest{Snapshotter: sn, Name: "n", Key: "c1"})
			check(err, "c1")
			_, err = c.Remove(ctx, &api.RemoveSnapshotRequest{Snapshotter: sn, Key: "r1"})
			check(err, "r1")
			_, err = c.Stat(ctx, &api.StatSnapshotRequest{Snapshotter: sn, Key: "s1"})
			check(err, "s1")
			_, err = c.Update(ctx, &api.UpdateSnapshotRequest{Snapshotter: sn, Info: &api.Info{Name: "u1"}})
			check(err, "u1")
			_, err = c.Usage(ctx, &api.UsageRequest{Snapshotter: sn, Key: "us1"})
			check(err, "us1")
			_, err = c.Cleanup(ctx, &api.CleanupRequest{Snapshotter: sn})
			check(err, "")
			l, err := c.List(ctx, &api.ListSnapshotsRequest{Snapshotter: sn, Filters: []string{"name==w1"}})
			if err == nil {
				_, err = l.Recv()
			}
			check(err, "[name==w1]")
		})
	}
}

func TestUnknownSnapshotter(t *testing.T) {
	// Every call names the snapshotter it could not find.
	c := api.NewSnapshotsClient(servicetest.Serve(t, NewSnapshotsServer(fakeSource{})))
	ctx := servicetest.ClientCtx(t, "ns1")
	for name, call := range map[string]func() error{
		"Prepare": func() error { _, err := c.Prepare(ctx, &api.PrepareSnapshotRequest{Snapshotter: "zfs"}); return err },
		"View":    func() error { _, err := c.View(ctx, &api.ViewSnapshotRequest{Snapshotter: "zfs"}); return err },
		"Mounts":  func() error { _, err := c.Mounts(ctx, &api.MountsRequest{Snapshotter: "zfs"}); return err },
		"Commit":  func() error { _, err := c.Commit(ctx, &api.CommitSnapshotRequest{Snapshotter: "zfs"}); return err },
		"Remove":  func() error { _, err := c.Remove(ctx, &api.RemoveSnapshotRequest{Snapshotter: "zfs"}); return err },
		"Stat":    func() error { _, err := c.Stat(ctx, &api.StatSnapshotRequest{Snapshotter: "zfs"}); return err },
		"Update":  func() error { _, err := c.Update(ctx, &api.UpdateSnapshotRequest{Snapshotter: "zfs"}); return err },
		"Usage":   func() error { _, err := c.Usage(ctx, &api.UsageRequest{Snapshotter: "zfs"}); return err },
		"Cleanup": func() error { _, err := c.Cleanup(ctx, &api.CleanupRequest{Snapshotter: "zfs"}); return err },
		"List": func() error {
			l, err := c.List(ctx, &api.ListSnapshotsRequest{Snapshotter: "zfs"})
			if err != nil {
				return err
			}
			_, err = l.Recv()
			return err
		},
	} {
		t.Run(name, func(t *testing.T) { servicetest.WantCode(t, call(), codes.NotFound, `"zfs"`) })
	}
}

func TestServiceSnapshotterDefault(t *testing.T) {
	// The service plugin's Snapshotter maps "" to the default and passes
	// other names through.
	n, o := newFake("native"), newFake("overlayfs")
	s := &Service{source: fakeSource{"native": n, "overlayfs": o}, defaultName: "overlayfs"}
	if sn, err := s.Snapshotter(""); err != nil || sn != o {
		t.Errorf(`Snapshotter(""): %v, %v; want overlayfs`, sn, err)
	}
	if sn, err := s.Snapshotter("native"); err != nil || sn != n {
		t.Errorf(`Snapshotter("native"): %v, %v`, sn, err)
	}
}

func TestOverNative(t *testing.T) {
	// The real native snapshotter in a temporary directory (Prepare of a
	// snapshot without a parent, Commit and Stat need no root): the
	// adapter's mapping holds against a backend it did not write.
	n, err := native.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	c := api.NewSnapshotsClient(servicetest.Serve(t, NewSnapshotsServer(fakeSource{"native": n})))
	ctx := servicetest.ClientCtx(t, "ns1")
	pr, err := c.Prepare(ctx, &api.PrepareSnapshotRequest{Snapshotter: "native", Key: "work", Labels: map[string]string{"l": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(pr.Mounts) != 1 || pr.Mounts[0].Type != "bind" || pr.Mounts[0].Source == "" {
		t.Errorf("mounts %v, want one bind mount", pr.Mounts)
	}
	if _, err := c.Commit(ctx, &api.CommitSnapshotRequest{Snapshotter: "native", Name: "layer", Key: "work"}); err != nil {
		t.Fatal(err)
	}
	st, err := c.Stat(ctx, &api.StatSnapshotRequest{Snapshotter: "native", Key: "layer"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Info.Name != "layer" || st.Info.Kind != api.Kind_COMMITTED || st.Info.Parent != "" || st.Info.CreatedAt == nil {
		t.Errorf("stat: %v", st.Info)
	}
	_, err = c.Stat(ctx, &api.StatSnapshotRequest{Snapshotter: "native", Key: "work"})
	servicetest.WantCode(t, err, codes.NotFound, "work")
	_, err = c.Prepare(ctx, &api.PrepareSnapshotRequest{Snapshotter: "native", Key: "layer"})
	servicetest.WantCode(t, err, codes.AlreadyExists, "layer")
	if _, err := c.Remove(ctx, &api.RemoveSnapshotRequest{Snapshotter: "native", Key: "layer"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Cleanup(ctx, &api.CleanupRequest{Snapshotter: "native"}); err != nil {
		t.Fatal(err)
	}
}
