package metadata

import (
	"context"
	"testing"
	"time"

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
