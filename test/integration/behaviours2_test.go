package integration

import (
	"testing"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/registrytest"
)

// TestPushOfWhatWasPulled: an index pulled for this host alone pushes by
// default (this host's manifest, as the help says); --all-platforms is
// refused naming the manifest that is missing; --platform of the missing
// platform names it; and an index pulled whole pushes whole with
// --all-platforms.
func TestPushOfWhatWasPulled(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	idx, host, other := twoPlatforms()
	reg.PushIndex(t, "test/multi", "1", idx)
	d := hulltest.Start(t, hulltest.Options{})
	h := newHullctl(t, d)
	ref := reg.Host() + "/test/multi:1"
	h.ok(t, "images", "pull", "--plain", "--plain-http", ref)

	h.ok(t, "images", "push", "--plain", "--plain-http", reg.Host()+"/copy/host:1", ref)
	if mt, data := reg.Manifest(t, "copy/host", "1"); string(data) != string(host.Manifest.Data) {
		t.Fatalf("default push of a one-platform pull gave %s:\n%s\nwant this host's manifest", mt, data)
	}
	otherPlatform, err := other.Platform()
	if err != nil {
		t.Fatal(err)
	}
	h.fails(t, []string{other.Manifest.Desc.Digest.String(), "not in the store"},
		"images", "push", "--plain", "--plain-http", "--all-platforms", reg.Host()+"/copy/all:1", ref)
	h.fails(t, []string{other.Manifest.Desc.Digest.String()},
		"images", "push", "--plain", "--plain-http", "--platform", otherPlatform.OS+"/"+otherPlatform.Architecture, reg.Host()+"/copy/other:1", ref)

	h.ok(t, "images", "pull", "--plain", "--plain-http", "--all-platforms", ref)
	h.ok(t, "images", "push", "--plain", "--plain-http", "--all-platforms", reg.Host()+"/copy/all:2", ref)
	if mt, data := reg.Manifest(t, "copy/all", "2"); string(data) != string(idx.Index.Data) {
		t.Fatalf("--all-platforms push gave %s:\n%s\nwant the index", mt, data)
	}
	h.ok(t, "images", "push", "--plain", "--plain-http", "--platform", otherPlatform.OS+"/"+otherPlatform.Architecture, reg.Host()+"/copy/other:2", ref)
	if _, data := reg.Manifest(t, "copy/other", "2"); string(data) != string(other.Manifest.Data) {
		t.Fatal("--platform push is not that platform's manifest")
	}
}
