package compat

import (
	"context"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	transfertypes "github.com/containerd/containerd/api/types/transfer"
	"github.com/containerd/containerd/v2/core/transfer"
	"github.com/containerd/containerd/v2/core/transfer/image"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/hullrt/hull/internal/testimage"
)

// TestTransferProgressTree: a Transfer pull's progress events name each
// blob's parent as containerd v2.4.2's do (the reference for the manifest,
// the manifest for its config and layers), from which ctr draws its tree,
// and every layer ends extracted.
func TestTransferProgressTree(t *testing.T) {
	const ns = "compatprogress"
	platform := testimage.HostPlatform()
	img := testimage.New([]string{"/bin/sh"}, []testimage.File{{Name: "a", Data: []byte("a")}}, []testimage.File{{Name: "b", Data: []byte("b")}})
	ref := serveImage(t, "test/progress", "1", img) + "/test/progress:1"
	var trees []map[string]string
	var names []string
	for _, du := range startBoth(t, ns) {
		ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 2*time.Minute)
		defer cancel()
		var mu sync.Mutex
		tree := map[string]string{}
		last := map[string]string{}
		reg := &transfertypes.OCIRegistry{Reference: ref, Resolver: &transfertypes.RegistryResolver{DefaultScheme: "http"}}
		err := du.client.Transfer(ctx, reg, image.NewStore(ref, image.WithPlatforms(platform), image.WithUnpack(platform, "overlayfs")),
			transfer.WithProgress(func(p transfer.Progress) {
				mu.Lock()
				defer mu.Unlock()
				if p.Name == "" {
					return
				}
				last[p.Name] = p.Event
				if len(p.Parents) > 0 {
					tree[p.Name] = strings.Join(p.Parents, ",")
				}
			}))
		if err != nil {
			t.Fatalf("%s: transfer pull: %v", du.name, err)
		}
		mu.Lock()
		for _, l := range img.Layers {
			if ev := last["layer-"+l.Desc.Digest.String()]; ev != "extracted" {
				t.Errorf("%s: layer %s ended %q, want extracted", du.name, l.Desc.Digest, ev)
			}
		}
		t.Logf("%s: parents %v", du.name, tree)
		trees = append(trees, maps.Clone(tree))
		mu.Unlock()
		names = append(names, du.name)
	}
	want := map[string]string{"manifest-" + img.Manifest.Desc.Digest.String(): ref, "config-" + img.Config.Desc.Digest.String(): "manifest-" + img.Manifest.Desc.Digest.String()}
	for _, l := range img.Layers {
		want["layer-"+l.Desc.Digest.String()] = "manifest-" + img.Manifest.Desc.Digest.String()
	}
	for i, tree := range trees {
		if !maps.Equal(tree, want) {
			t.Errorf("%s: parents %v, want %v", names[i], tree, want)
		}
	}
}
