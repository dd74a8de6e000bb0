package unpack

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/internal/testimage"
)

// An overlapped unpack applies a layer only once the pull says its blob
// is stored, and ends with the image unpacked.
func TestOverlapWaitsForStoredBlobs(t *testing.T) {
	ctx, _, sn, o := setup(t)
	img := testimage.New([]string{"/x"}, []testimage.File{{Name: "a", Data: []byte("a")}}, []testimage.File{{Name: "b", Data: []byte("b")}})
	var m ocispec.Manifest
	if err := json.Unmarshal(img.Manifest.Data, &m); err != nil {
		t.Fatal(err)
	}
	applied := make(chan string, 4)
	o.Progress = func(layer ocispec.Descriptor, _ digest.Digest, status string) {
		if status == "applied" {
			applied <- layer.Digest.String()
		}
	}
	ov := NewOverlap(ctx, o)
	ov.Start(m)
	ov.Start(m) // a second manifest read changes nothing
	// The config and the first layer arrive; the second layer has not.
	store(t, ctx, o.Content, img.Config)
	store(t, ctx, o.Content, img.Layers[0])
	ov.Stored(img.Config.Desc.Digest)
	ov.Stored(img.Layers[0].Desc.Digest)
	select {
	case d := <-applied:
		if d != img.Layers[0].Desc.Digest.String() {
			t.Fatalf("applied %s first", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first layer was not applied once stored")
	}
	select {
	case d := <-applied:
		t.Fatalf("applied %s before its blob was stored", d)
	case <-time.After(100 * time.Millisecond):
	}
	store(t, ctx, o.Content, img.Layers[1])
	ov.Stored(img.Layers[1].Desc.Digest)
	ov.Stored(img.Layers[1].Desc.Digest) // told twice: no panic
	started, err := ov.Wait(false)
	if !started || err != nil {
		t.Fatalf("wait: started %v, %v", started, err)
	}
	n := 0
	sn.Walk(ctx, func(_ context.Context, i snapshots.Info) error {
		if i.Kind == snapshots.KindCommitted {
			n++
		}
		return nil
	})
	if n != 2 {
		t.Fatalf("%d committed snapshots, want 2", n)
	}
}

// A failed pull stops an unpack waiting for blobs that will not come; an
// overlap never started reports so.
func TestOverlapStopsWithTheFailedPull(t *testing.T) {
	ctx, _, _, o := setup(t)
	img := testimage.New([]string{"/x"}, []testimage.File{{Name: "a", Data: []byte("a")}})
	var m ocispec.Manifest
	json.Unmarshal(img.Manifest.Data, &m)
	if started, err := NewOverlap(ctx, o).Wait(false); started || err != nil {
		t.Fatalf("an overlap never started: %v %v", started, err)
	}
	ov := NewOverlap(ctx, o)
	ov.Start(m)
	done := make(chan error, 1)
	go func() { _, err := ov.Wait(true); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("unpack after a failed pull: %v, want canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the unpack went on waiting after the pull failed")
	}
}
