package metadata

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/namespaces"
)

// TestLabelUpdatesScheduleCollectionOnlyForGCLabels: a label update asks
// the collector for a run only when it changes a label garbage collection
// reads. Every layer of a pull gets its uncompressed digest as a label,
// and each of those used to schedule a collection in the middle of the
// pull.
func TestLabelUpdatesScheduleCollectionOnlyForGCLabels(t *testing.T) {
	db := openDB(t) // GCDelay is an hour: a kick taken waits there
	ctx := namespaces.WithNamespace(context.Background(), "kick")
	child := put(t, ctx, db, "child", nil)
	parent := put(t, ctx, db, "parent", nil)

	// Let the collector take a kick, so that it sits in its delay and
	// the next kick stays in the channel, where the test sees it.
	db.kickGC()
	deadline := time.Now().Add(10 * time.Second)
	for len(db.gcKick) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the collector never took its kick")
		}
		time.Sleep(time.Millisecond)
	}
	kicked := func() bool {
		select {
		case <-db.gcKick:
			return true
		default:
			return false
		}
	}
	update := func(labels map[string]string, paths ...string) {
		t.Helper()
		if _, err := db.Content().Update(ctx, content.Info{Digest: parent, Labels: labels}, paths...); err != nil {
			t.Fatal(err)
		}
	}
	ref := "containerd.io/gc.ref.content.l.0"
	for _, step := range []struct {
		what   string
		labels map[string]string
		paths  []string
		want   bool
	}{
		{"a plain label set", map[string]string{"containerd.io/uncompressed": digest.FromString("u").String()}, []string{"labels.containerd.io/uncompressed"}, false},
		{"a reference added", map[string]string{ref: child.String()}, []string{"labels." + ref}, true},
		{"the same reference set again", map[string]string{ref: child.String()}, []string{"labels." + ref}, false},
		{"the reference changed", map[string]string{ref: digest.FromString("other").String()}, []string{"labels." + ref}, true},
		{"a plain label removed", nil, []string{"labels.containerd.io/uncompressed"}, false},
		{"every label replaced, the reference dropped", map[string]string{"a": "b"}, nil, true},
		{"a gc root set", map[string]string{"containerd.io/gc.root": "x"}, []string{"labels.containerd.io/gc.root"}, true},
		{"the gc root removed", nil, []string{"labels.containerd.io/gc.root"}, true},
	} {
		update(step.labels, step.paths...)
		if got := kicked(); got != step.want {
			t.Errorf("%s: collection scheduled %v, want %v", step.what, got, step.want)
		}
	}
}

// TestUpdateMany: one call updates every blob it names, as Update would
// each; a blob missing, or a field that is no label, fails the call with
// the offending value named and updates none.
func TestUpdateMany(t *testing.T) {
	db := openDB(t)
	ctx := namespaces.WithNamespace(context.Background(), "many")
	a, b := put(t, ctx, db, "a", map[string]string{"keep": "1"}), put(t, ctx, db, "b", nil)
	u := db.Content().(content.ManyUpdater)
	label := "containerd.io/uncompressed"
	err := u.UpdateMany(ctx, []content.Info{
		{Digest: a, Labels: map[string]string{label: "sha256:aa"}},
		{Digest: b, Labels: map[string]string{label: "sha256:bb"}},
	}, "labels."+label)
	if err != nil {
		t.Fatal(err)
	}
	for d, want := range map[digest.Digest]map[string]string{a: {"keep": "1", label: "sha256:aa"}, b: {label: "sha256:bb"}} {
		info, err := db.Content().Info(ctx, d)
		if err != nil || len(info.Labels) != len(want) || info.Labels[label] != want[label] || info.Labels["keep"] != want["keep"] {
			t.Errorf("%s: labels %v (%v), want %v", d, info.Labels, err, want)
		}
	}

	missing := digest.FromString("missing")
	err = u.UpdateMany(ctx, []content.Info{
		{Digest: a, Labels: map[string]string{label: "sha256:changed"}},
		{Digest: missing, Labels: map[string]string{label: "sha256:cc"}},
	}, "labels."+label)
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), missing.String()) {
		t.Errorf("update of a missing blob: %v, want NotFound naming %s", err, missing)
	}
	err = u.UpdateMany(ctx, []content.Info{{Digest: a, Labels: map[string]string{label: "sha256:changed"}}}, "size")
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), `"size"`) {
		t.Errorf("update of field size: %v, want InvalidArgument naming it", err)
	}
	if info, _ := db.Content().Info(ctx, a); info.Labels[label] != "sha256:aa" {
		t.Errorf("a failed call changed %s: labels %v", a, info.Labels)
	}
}
