package imagearchive

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/content/local"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/internal/testimage"
)

// labelStore keeps labels beside a local store, which has none (the
// metadata store keeps them in hulld): Update sets the label paths named.
type labelStore struct {
	*local.Store
	labels map[digest.Digest]map[string]string
}

func (s *labelStore) Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error) {
	if _, err := s.Store.Info(ctx, info.Digest); err != nil {
		return content.Info{}, err
	}
	if s.labels[info.Digest] == nil {
		s.labels[info.Digest] = map[string]string{}
	}
	for _, p := range fieldpaths {
		k := strings.TrimPrefix(p, "labels.")
		s.labels[info.Digest][k] = info.Labels[k]
	}
	return info, nil
}

// TestEntriesAndLabel reads a two-platform archive: its index lists the
// image index under its name, and Label ties only the matched platform's
// content to it, then every platform's with platforms.All.
func TestEntriesAndLabel(t *testing.T) {
	store, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cs := &labelStore{Store: store, labels: map[digest.Digest]map[string]string{}}
	ctx := context.Background()
	otherArch := "arm64"
	if runtime.GOARCH == "arm64" {
		otherArch = "amd64"
	}
	host := testimage.NewFor(testimage.HostPlatform(), nil, []testimage.File{{Name: "host"}})
	other := testimage.NewFor(ocispec.Platform{OS: "linux", Architecture: otherArch}, nil, []testimage.File{{Name: "other"}})
	idx := testimage.NewIndex(host, other)
	var arch bytes.Buffer
	if err := testimage.WriteOCIArchiveIndex(&arch, "example.test/multi:1", idx); err != nil {
		t.Fatal(err)
	}
	index, err := ReadIndex(ctx, cs, &arch)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := Entries(ctx, cs, index)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Digest != idx.Index.Desc.Digest || entries[0].Annotations[AnnotationImageName] != "example.test/multi:1" {
		t.Fatalf("entries %+v, want the image index named example.test/multi:1", entries)
	}
	labels := func(d ocispec.Descriptor) map[string]string { return cs.labels[d.Digest] }
	ref := images.LabelGCRefContent + "."
	if err := Label(ctx, cs, entries[0], platforms.Only(testimage.HostPlatform())); err != nil {
		t.Fatal(err)
	}
	if l := labels(idx.Index.Desc); l[ref+"m.0"] != host.Manifest.Desc.Digest.String() || l[ref+"m.1"] != "" {
		t.Errorf("index labels %v, want the host manifest only", l)
	}
	if l := labels(host.Manifest.Desc); l[ref+"config"] != host.Config.Desc.Digest.String() || l[ref+"l.0"] != host.Layers[0].Desc.Digest.String() {
		t.Errorf("host manifest labels %v, want its config and layer", l)
	}
	if l := labels(other.Manifest.Desc); len(l) != 0 {
		t.Errorf("other platform's manifest labelled %v", l)
	}
	if err := Label(ctx, cs, entries[0], platforms.All); err != nil {
		t.Fatal(err)
	}
	if l := labels(idx.Index.Desc); l[ref+"m.1"] != other.Manifest.Desc.Digest.String() {
		t.Errorf("index labels %v with all platforms, want the other manifest too", l)
	}

	// A manifest whose layer the store lacks is NotFound, naming it.
	m := host.Manifest.Desc
	if err := store.Delete(ctx, host.Layers[0].Desc.Digest); err != nil {
		t.Fatal(err)
	}
	if err := Label(ctx, cs, m, platforms.All); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("label of a manifest without its layer: %v, want NotFound", err)
	}
}
