package images

import (
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/images"
)

// testView builds a view from record names and targets by id, and the
// labels of some records.
func testView(pinned map[string]string, labels map[string]map[string]string, byID map[digest.Digest]map[string]digest.Digest) *view {
	var recs []found
	for id, names := range byID {
		ti := &targetInfo{configDigest: id}
		for name, target := range names {
			recs = append(recs, found{images.Image{Name: name, Target: ocispec.Descriptor{Digest: target}, Labels: labels[name]}, ti})
		}
	}
	return newView(recs, pinned)
}

func TestViewResolve(t *testing.T) {
	id1 := digest.Digest("sha256:ab" + strings.Repeat("1", 62))
	id2 := digest.Digest("sha256:ab" + strings.Repeat("2", 62))
	m1 := digest.Digest("sha256:" + strings.Repeat("d", 64))
	m2 := digest.Digest("sha256:" + strings.Repeat("e", 64))
	id3 := digest.Digest("sha256:" + strings.Repeat("3", 64))
	v := testView(map[string]string{"sandbox": "pause:3.10"}, map[string]map[string]string{"pinned/by:label": {PinnedLabel: PinnedValue}}, map[digest.Digest]map[string]digest.Digest{
		// Recorded by another tool under a short name, and by the CRI.
		id1: {"busybox:latest": m1, "docker.io/library/busybox@" + string(m1): m1, string(id1): m1},
		id2: {"docker.io/library/pause:3.10": m2, "registry.example/x:1": m2, "odd name": m2},
		id3: {"pinned/by:label": m1},
	})
	for _, tc := range []struct {
		ref    string
		id     digest.Digest
		record string
		kind   nameKind
	}{
		{"busybox", id1, "busybox:latest", kindTag},
		{"docker.io/library/busybox:latest", id1, "busybox:latest", kindTag},
		{"busybox@" + string(m1), id1, "docker.io/library/busybox@" + string(m1), kindDigest},
		{string(id1), id1, "busybox:latest", kindID},
		{"ab1", id1, "busybox:latest", kindID},
		{"sha256:ab2", id2, "docker.io/library/pause:3.10", kindID},
		// A repo digest derived from a tag answers with the tag's record.
		{"registry.example/x@" + string(m2), id2, "registry.example/x:1", kindDigest},
	} {
		e, rec, kind, err := v.resolve(tc.ref)
		if err != nil || e.id != tc.id || rec != tc.record || kind != tc.kind {
			t.Errorf("resolve(%q) = %v %q %v, %v; want %s %q %v", tc.ref, e, rec, kind, err, tc.id, tc.record, tc.kind)
		}
	}
	if _, _, _, err := v.resolve("ab"); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "ambiguous") {
		t.Errorf("ambiguous prefix: %v", err)
	}
	for _, ref := range []string{"sha256:" + strings.Repeat("f", 64), "abc", "nothing:1", "Not A Ref"} {
		if _, _, _, err := v.resolve(ref); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), ref) {
			t.Errorf("resolve(%q): %v; want NotFound naming it", ref, err)
		}
	}

	if img := v.image(v.get(id3), "pinned/by:label"); !img.Pinned {
		t.Errorf("a record labelled pinned: %+v", img)
	}
	img := v.image(v.get(id2), "registry.example/x:1")
	if !img.Pinned || img.Target.Digest != m2 || !slices.Equal(img.RepoTags, []string{"docker.io/library/pause:3.10", "registry.example/x:1"}) ||
		!slices.Equal(img.RepoDigests, []string{"docker.io/library/pause@" + string(m2), "registry.example/x@" + string(m2)}) {
		t.Errorf("image %+v", img)
	}
	if img := v.image(v.get(id1), "busybox:latest"); img.Pinned || !slices.Equal(img.RepoTags, []string{"docker.io/library/busybox:latest"}) ||
		!slices.Equal(img.RepoDigests, []string{"docker.io/library/busybox@" + string(m1)}) {
		t.Errorf("image %+v", img)
	}
}
