package metadata

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/core/snapshots"
)

// prepareDetached prepares key without parent, as the layer chain (its
// LabelSnapshotRef), holding one file.
func prepareDetached(t *testing.T, ctx context.Context, s snapshots.Snapshotter, key, chain string) {
	t.Helper()
	ms, err := s.Prepare(ctx, key, "", snapshots.WithLabels(map[string]string{LabelSnapshotRef: chain}))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ms[0].Source, chain), []byte(chain), 0o644); err != nil {
		t.Fatal(err)
	}
}

func backendCommitted(t *testing.T, ov snapshots.Snapshotter) int {
	t.Helper()
	n := 0
	ov.Walk(context.Background(), func(_ context.Context, i snapshots.Info) error {
		if i.Kind == snapshots.KindCommitted {
			n++
		}
		return nil
	})
	return n
}

// TestSnapshotsCommitChain commits runs of snapshots prepared without
// parent onto each other, as a parallel unpack commits the layers that are
// ready: the records, parents, labels and lease resources are those of
// one Commit after another; a second namespace links the first's backend
// snapshots link by link; a link that cannot be committed stops the chain
// there with the error its own Commit would give; and a backend that
// cannot rebase refuses at the first link that needs it.
func TestSnapshotsCommitChain(t *testing.T) {
	db, ov, s := withOverlay(t)
	a := namespaces.WithNamespace(context.Background(), "a")
	b := namespaces.WithNamespace(context.Background(), "b")
	if _, err := db.Leases().Create(a, "unpack", nil); err != nil {
		t.Fatal(err)
	}
	la := leases.WithLease(a, "unpack")

	layer(t, a, s, "l1", "")
	for _, c := range []string{"l2", "l3", "l4"} {
		prepareDetached(t, la, s, "d-"+c, c)
	}
	chain := []snapshots.CommitLink{{Name: "l2", Key: "d-l2"}, {Name: "l3", Key: "d-l3"}, {Name: "l4", Key: "d-l4", Opts: []snapshots.Opt{snapshots.WithLabels(map[string]string{"top": "yes"})}}}
	if n, err := s.(snapshots.ChainCommitter).CommitChain(la, "l1", chain); n != 3 || err != nil {
		t.Fatalf("CommitChain = %d, %v; want 3, nil", n, err)
	}
	for name, parent := range map[string]string{"l2": "l1", "l3": "l2", "l4": "l3"} {
		info, err := s.Stat(a, name)
		if err != nil || info.Kind != snapshots.KindCommitted || info.Parent != parent || info.Labels[LabelSnapshotRef] != "" {
			t.Errorf("a's %s: %+v %v; want committed on %s without the ref label", name, info, err, parent)
		}
		if _, err := s.Stat(a, "d-"+name); !errdefs.IsNotFound(err) {
			t.Errorf("active d-%s after the commit: %v", name, err)
		}
	}
	if info, _ := s.Stat(a, "l4"); info.Labels["top"] != "yes" {
		t.Errorf("l4's labels: %v", info.Labels)
	}
	ms, err := s.View(a, "v", "l4")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Type != "overlay" || !slices.ContainsFunc(ms[0].Options, func(o string) bool {
		return strings.HasPrefix(o, "lowerdir=") && strings.Count(o, ":") == 3
	}) {
		t.Fatalf("view of l4: %+v, want an overlay of its four layers", ms)
	}
	res, err := db.Leases().ListResources(a, "unpack")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range res {
		if r.Type == "snapshots/overlayfs" && !strings.HasPrefix(r.ID, "d-") {
			names = append(names, r.ID)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"l2", "l3", "l4"}) {
		t.Errorf("lease holds committed snapshots %v, want l2 l3 l4", names)
	}
	if n := backendCommitted(t, ov); n != 4 {
		t.Fatalf("backend has %d committed snapshots, want 4", n)
	}

	// b prepares the same layers apart and commits them as a chain: each
	// link is a's backend snapshot, linked, and the backend gets none.
	if _, err := s.Prepare(b, "x", "", snapshots.WithLabels(map[string]string{LabelSnapshotRef: "l1"})); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("prepare of l1 in b: %v", err)
	}
	for _, c := range []string{"l2", "l3"} {
		prepareDetached(t, b, s, "d-"+c, c)
	}
	if n, err := snapshots.CommitChain(b, s, "l1", chain[:2]); n != 2 || err != nil {
		t.Fatalf("b's CommitChain = %d, %v", n, err)
	}
	if info, err := s.Stat(b, "l3"); err != nil || info.Parent != "l2" {
		t.Fatalf("b's l3: %+v %v", info, err)
	}
	if n := backendCommitted(t, ov); n != 4 {
		t.Fatalf("backend has %d committed snapshots after b's chain, want still 4", n)
	}

	// A link whose name exists stops the chain: the links before it are
	// committed, it and those after it stay active.
	for _, k := range []string{"e5", "e6", "e7"} {
		prepareDetached(t, a, s, k, k)
	}
	n, err := snapshots.CommitChain(a, s, "l4", []snapshots.CommitLink{{Name: "l5", Key: "e5"}, {Name: "l2", Key: "e6"}, {Name: "l7", Key: "e7"}})
	if n != 1 || !errdefs.IsAlreadyExists(err) || !strings.Contains(err.Error(), `"l2"`) {
		t.Fatalf("chain with an existing name: %d, %v; want 1 and AlreadyExists naming l2", n, err)
	}
	if info, err := s.Stat(a, "l5"); err != nil || info.Parent != "l4" {
		t.Fatalf("l5: %+v %v", info, err)
	}
	for _, k := range []string{"e6", "e7"} {
		if info, err := s.Stat(a, k); err != nil || info.Kind != snapshots.KindActive {
			t.Fatalf("%s after the stopped chain: %+v %v", k, info, err)
		}
	}
	// A name twice, and a key twice, in one chain: what one Commit after
	// another would say.
	if n, err := snapshots.CommitChain(a, s, "l5", []snapshots.CommitLink{{Name: "l6", Key: "e6"}, {Name: "l6", Key: "e7"}}); n != 1 || !errdefs.IsAlreadyExists(err) {
		t.Fatalf("a name twice: %d, %v", n, err)
	}
	prepareDetached(t, a, s, "e8", "e8")
	if n, err := snapshots.CommitChain(a, s, "l6", []snapshots.CommitLink{{Name: "l8", Key: "e8"}, {Name: "l9", Key: "e8"}}); n != 1 || !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), `"e8"`) {
		t.Fatalf("a key twice: %d, %v", n, err)
	}
	// Onto nothing, or onto an active snapshot.
	if n, err := snapshots.CommitChain(a, s, "nothing", []snapshots.CommitLink{{Name: "l10", Key: "e7"}}); n != 0 || !errdefs.IsNotFound(err) {
		t.Fatalf("onto a missing parent: %d, %v", n, err)
	}
	if n, err := snapshots.CommitChain(a, s, "e7", []snapshots.CommitLink{{Name: "l10", Key: "e7"}}); n != 0 || err == nil {
		t.Fatalf("onto an active snapshot: %d, %v", n, err)
	}

	// native cannot rebase: the first link, without parent, is committed
	// and the second is refused.
	nat := withNative(t, db)
	for _, k := range []string{"n1", "n2"} {
		if _, err := nat.Prepare(a, k, ""); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := snapshots.CommitChain(a, nat, "", []snapshots.CommitLink{{Name: "c1", Key: "n1"}, {Name: "c2", Key: "n2"}}); n != 1 || !errdefs.IsNotImplemented(err) {
		t.Fatalf("native chain: %d, %v; want 1 and NotImplemented", n, err)
	}
	if info, err := nat.Stat(a, "c1"); err != nil || info.Kind != snapshots.KindCommitted {
		t.Fatalf("native c1: %+v %v", info, err)
	}
	if info, err := nat.Stat(a, "n2"); err != nil || info.Kind != snapshots.KindActive {
		t.Fatalf("native n2: %+v %v", info, err)
	}
}
