package compat

import (
	"context"
	"os"
	"strings"
	"testing"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	ctrmount "github.com/containerd/containerd/v2/core/mount"
	ctrsnapshots "github.com/containerd/containerd/v2/core/snapshots"
	snapshotsproxy "github.com/containerd/containerd/v2/core/snapshots/proxy"
	"github.com/containerd/containerd/v2/core/snapshots/testsuite"

	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/core/snapshots/native"
	"github.com/hullrt/hull/core/snapshots/overlay"
)

// TestSnapshotterOverlay runs containerd's snapshotter suite against hull's
// overlayfs snapshotter, used directly as a backend (no metadata layer).
func TestSnapshotterOverlay(t *testing.T) {
	requireRoot(t)
	t.Cleanup(func() { checkNoSuiteMounts(t, "snapshot-suite-overlayfs-") })
	// Named "overlayfs" because the suite knows that name: overlayfs
	// without redirect_dir cannot rename a directory of a lower layer
	// (EXDEV), so its Rename case does not ask that of it.
	testsuite.SnapshotterSuite(t, "overlayfs", func(ctx context.Context, root string) (ctrsnapshots.Snapshotter, func() error, error) {
		s, err := overlay.New(root)
		if err != nil {
			return nil, nil, err
		}
		return hullSnapshotter{s}, s.Close, nil
	})
}

// TestSnapshotterNative runs containerd's snapshotter suite against hull's
// native snapshotter, used directly as a backend.
func TestSnapshotterNative(t *testing.T) {
	requireRoot(t)
	t.Cleanup(func() { checkNoSuiteMounts(t, "snapshot-suite-native-") })
	testsuite.SnapshotterSuite(t, "native", func(ctx context.Context, root string) (ctrsnapshots.Snapshotter, func() error, error) {
		s, err := native.New(root)
		if err != nil {
			return nil, nil, err
		}
		return hullSnapshotter{s}, s.Close, nil
	})
}

// TestSnapshotterGRPC runs containerd's snapshotter suite against hulld's
// snapshots service the way containerd's own client tests run it against
// containerd: one daemon, every subtest in parallel in the one namespace
// the suite sets ("testsuite"), through containerd's proxy snapshotter over
// a gRPC connection. The subtests' root directories are unused: the
// snapshots live under hulld's root, and the metadata layer, gc and the
// gRPC mapping of errors and mounts are all on the path.
func TestSnapshotterGRPC(t *testing.T) {
	requireRoot(t)
	for _, name := range []string{"overlayfs", "native"} {
		t.Run(name, func(t *testing.T) {
			d := startHulld(t)
			conn := dial(t, d.Address)
			t.Cleanup(func() { checkNoSuiteMounts(t, "snapshot-suite-"+name+"-") })
			testsuite.SnapshotterSuite(t, name, func(ctx context.Context, root string) (ctrsnapshots.Snapshotter, func() error, error) {
				// Close of the proxy does nothing (the connection is
				// shared), which the suite's CloseTwice case relies on.
				return snapshotsproxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), name), nil, nil
			})
		})
	}
}

// requireRoot fails a test that cannot mount: make test runs as root, and a
// suite that skipped would pass without having checked anything.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("containerd's snapshotter suite mounts, which needs root (make test runs as root)")
	}
}

// checkNoSuiteMounts fails the test if a mount of the suite's temporary
// directories (named by prefix, under os.TempDir) is left once it is done:
// the suite removes those directories, and a removal that follows a leftover
// mount would delete what is mounted there. Tests call it from a cleanup,
// since the suite's subtests are parallel and so run after the test's own
// function has returned.
func checkNoSuiteMounts(t *testing.T, prefix string) {
	t.Helper()
	left, err := mount.MountedUnder(os.TempDir())
	if err != nil {
		t.Errorf("read mounts: %v", err)
		return
	}
	for _, m := range left {
		if strings.Contains(m, prefix) {
			t.Errorf("left mounted after the suite: %s", m)
			mount.UnmountAll(m)
		}
	}
}

// hullSnapshotter presents one of hull's snapshotters as containerd's
// snapshots.Snapshotter. hull's errors wrap the same errdefs values, so they
// pass through unchanged.
type hullSnapshotter struct {
	s snapshots.Snapshotter
}

var (
	_ ctrsnapshots.Snapshotter = hullSnapshotter{}
	_ ctrsnapshots.Cleaner     = hullSnapshotter{}
)

func (h hullSnapshotter) Stat(ctx context.Context, key string) (ctrsnapshots.Info, error) {
	info, err := h.s.Stat(ctx, key)
	if err != nil {
		return ctrsnapshots.Info{}, err
	}
	return toCtrInfo(info), nil
}

func (h hullSnapshotter) Update(ctx context.Context, info ctrsnapshots.Info, fieldpaths ...string) (ctrsnapshots.Info, error) {
	out, err := h.s.Update(ctx, fromCtrInfo(info), fieldpaths...)
	if err != nil {
		return ctrsnapshots.Info{}, err
	}
	return toCtrInfo(out), nil
}

func (h hullSnapshotter) Usage(ctx context.Context, key string) (ctrsnapshots.Usage, error) {
	u, err := h.s.Usage(ctx, key)
	if err != nil {
		return ctrsnapshots.Usage{}, err
	}
	return ctrsnapshots.Usage{Inodes: u.Inodes, Size: u.Size}, nil
}

func (h hullSnapshotter) Mounts(ctx context.Context, key string) ([]ctrmount.Mount, error) {
	return toCtrMounts(h.s.Mounts(ctx, key))
}

func (h hullSnapshotter) Prepare(ctx context.Context, key, parent string, opts ...ctrsnapshots.Opt) ([]ctrmount.Mount, error) {
	o, err := fromCtrOpts(opts)
	if err != nil {
		return nil, err
	}
	return toCtrMounts(h.s.Prepare(ctx, key, parent, o...))
}

func (h hullSnapshotter) View(ctx context.Context, key, parent string, opts ...ctrsnapshots.Opt) ([]ctrmount.Mount, error) {
	o, err := fromCtrOpts(opts)
	if err != nil {
		return nil, err
	}
	return toCtrMounts(h.s.View(ctx, key, parent, o...))
}

func (h hullSnapshotter) Commit(ctx context.Context, name, key string, opts ...ctrsnapshots.Opt) error {
	o, err := fromCtrOpts(opts)
	if err != nil {
		return err
	}
	return h.s.Commit(ctx, name, key, o...)
}

func (h hullSnapshotter) Remove(ctx context.Context, key string) error {
	return h.s.Remove(ctx, key)
}

func (h hullSnapshotter) Walk(ctx context.Context, fn ctrsnapshots.WalkFunc, filters ...string) error {
	return h.s.Walk(ctx, func(ctx context.Context, info snapshots.Info) error {
		return fn(ctx, toCtrInfo(info))
	}, filters...)
}

func (h hullSnapshotter) Close() error { return h.s.Close() }

// Cleanup passes to hull's Cleaner; a snapshotter without one has nothing
// to clean, as containerd's proxy treats it.
func (h hullSnapshotter) Cleanup(ctx context.Context) error {
	if c, ok := h.s.(snapshots.Cleaner); ok {
		return c.Cleanup(ctx)
	}
	return nil
}

func toCtrKind(k snapshots.Kind) ctrsnapshots.Kind {
	switch k {
	case snapshots.KindView:
		return ctrsnapshots.KindView
	case snapshots.KindActive:
		return ctrsnapshots.KindActive
	case snapshots.KindCommitted:
		return ctrsnapshots.KindCommitted
	}
	return ctrsnapshots.KindUnknown
}

func fromCtrKind(k ctrsnapshots.Kind) snapshots.Kind {
	switch k {
	case ctrsnapshots.KindView:
		return snapshots.KindView
	case ctrsnapshots.KindActive:
		return snapshots.KindActive
	case ctrsnapshots.KindCommitted:
		return snapshots.KindCommitted
	}
	return snapshots.KindUnknown
}

func toCtrInfo(i snapshots.Info) ctrsnapshots.Info {
	return ctrsnapshots.Info{Kind: toCtrKind(i.Kind), Name: i.Name, Parent: i.Parent, Labels: i.Labels, Created: i.Created, Updated: i.Updated}
}

func fromCtrInfo(i ctrsnapshots.Info) snapshots.Info {
	return snapshots.Info{Kind: fromCtrKind(i.Kind), Name: i.Name, Parent: i.Parent, Labels: i.Labels, Created: i.Created, Updated: i.Updated}
}

// fromCtrOpts applies containerd's options to an Info and hands what they
// set (labels, a parent) to hull as hull's options.
func fromCtrOpts(opts []ctrsnapshots.Opt) ([]snapshots.Opt, error) {
	var info ctrsnapshots.Info
	for _, o := range opts {
		if err := o(&info); err != nil {
			return nil, err
		}
	}
	var out []snapshots.Opt
	if info.Labels != nil {
		out = append(out, snapshots.WithLabels(info.Labels))
	}
	if info.Parent != "" {
		out = append(out, snapshots.WithParent(info.Parent))
	}
	return out, nil
}

func toCtrMounts(ms []mount.Mount, err error) ([]ctrmount.Mount, error) {
	if err != nil {
		return nil, err
	}
	out := make([]ctrmount.Mount, len(ms))
	for i, m := range ms {
		out[i] = ctrmount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options}
	}
	return out, nil
}
