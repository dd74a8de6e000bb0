package compat

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	transfertypes "github.com/containerd/containerd/api/types/transfer"
	"github.com/containerd/containerd/v2/core/transfer/archive"
	"github.com/containerd/containerd/v2/core/transfer/image"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/testimage"
)

// transferResult is what one daemon gave for the pull, the import and the
// export: image names with their targets, and the exported archive's
// entries and index.
type transferResult struct {
	pulled, imported []string
	exportEntries    []string
	exportIndex      []string
}

// closeBuffer is the export's stream: a buffer that records that the
// transfer closed it, under a lock because the client's stream copier
// writes it from its own goroutine.
type closeBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	closed bool
}

func (b *closeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *closeBuffer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return nil
}

// TestTransferWithContainerdsClient: containerd v2.4.2's client.Transfer
// pulls from a registry with unpack, imports an archive stream and
// exports to a stream through hulld, with the same image names, digests
// and archive as through containerd v2.4.2.
func TestTransferWithContainerdsClient(t *testing.T) {
	const ns = "compattransfer"
	platform := testimage.HostPlatform()
	pulledImg := testimage.New([]string{"/bin/sh"}, []testimage.File{{Name: "pulled", Data: []byte("pulled by transfer")}}, []testimage.File{{Name: "second", Data: []byte("second layer")}})
	ref := serveImage(t, "test/transfer", "1", pulledImg) + "/test/transfer:1"
	importedImg := testimage.New([]string{"/bin/sh"}, []testimage.File{{Name: "imported", Data: []byte("imported by transfer")}})
	var arch bytes.Buffer
	if err := testimage.WriteOCIArchive(&arch, "example.test/transfer:imported", importedImg); err != nil {
		t.Fatal(err)
	}

	var results []transferResult
	var names []string
	for _, du := range startBoth(t, ns) {
		ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 2*time.Minute)
		defer cancel()
		var res transferResult

		// The source is what registry.NewOCIRegistry(ctx, ref,
		// registry.WithDefaultScheme("http")) marshals to: that package
		// needs go-toml, which this module's go.sum leaves out.
		reg := &transfertypes.OCIRegistry{Reference: ref, Resolver: &transfertypes.RegistryResolver{DefaultScheme: "http"}}
		if err := du.client.Transfer(ctx, reg, image.NewStore(ref, image.WithPlatforms(platform), image.WithUnpack(platform, "overlayfs"))); err != nil {
			t.Fatalf("%s: transfer pull: %v", du.name, err)
		}
		pulled, err := du.client.GetImage(ctx, ref)
		if err != nil {
			t.Fatalf("%s: pulled image: %v", du.name, err)
		}
		if pulled.Target().Digest != pulledImg.Manifest.Desc.Digest {
			t.Errorf("%s: pulled %s, want %s", du.name, pulled.Target().Digest, pulledImg.Manifest.Desc.Digest)
		}
		if ok, err := pulled.IsUnpacked(ctx, "overlayfs"); err != nil || !ok {
			t.Errorf("%s: pulled image unpacked: %v, %v", du.name, ok, err)
		}
		res.pulled = imageNames(t, ctx, du)

		// As ctr's import asks: names from the archive's annotations
		// under a prefix, the host's platform, unpacked.
		iis := archive.NewImageImportStream(bytes.NewReader(arch.Bytes()), "")
		store := image.NewStore("", image.WithNamedPrefix("import-compat", true), image.WithPlatforms(platform), image.WithUnpack(platform, "overlayfs"))
		if err := du.client.Transfer(ctx, iis, store); err != nil {
			t.Fatalf("%s: transfer import: %v", du.name, err)
		}
		imported, err := du.client.GetImage(ctx, "example.test/transfer:imported")
		if err != nil {
			t.Fatalf("%s: imported image: %v", du.name, err)
		}
		if imported.Target().Digest != importedImg.Manifest.Desc.Digest {
			t.Errorf("%s: imported %s, want %s", du.name, imported.Target().Digest, importedImg.Manifest.Desc.Digest)
		}
		if ok, err := imported.IsUnpacked(ctx, "overlayfs"); err != nil || !ok {
			t.Errorf("%s: imported image unpacked: %v, %v", du.name, ok, err)
		}
		res.imported = imageNames(t, ctx, du)

		out := &closeBuffer{}
		if err := du.client.Transfer(ctx, image.NewStore(ref), archive.NewImageExportStream(out, "", archive.WithPlatform(platform))); err != nil {
			t.Fatalf("%s: transfer export: %v", du.name, err)
		}
		// The client's copier closes the stream once the daemon has sent
		// it all, which may be just after Transfer returns.
		var data []byte
		hulltest.Eventually(t, 20*time.Second, du.name+": export stream closed", func() error {
			out.mu.Lock()
			defer out.mu.Unlock()
			if !out.closed {
				return fmt.Errorf("open, %d bytes so far", out.buf.Len())
			}
			data = bytes.Clone(out.buf.Bytes())
			return nil
		})
		res.exportEntries, res.exportIndex = exportedArchive(t, du.name, data)
		if !slices.Contains(res.exportEntries, "blobs/sha256/"+pulledImg.Manifest.Desc.Digest.Encoded()) {
			t.Errorf("%s: the export lacks the manifest: %q", du.name, res.exportEntries)
		}

		t.Logf("%s: pulled %q, imported %q, exported %q", du.name, res.pulled, res.imported, res.exportIndex)
		results = append(results, res)
		names = append(names, du.name)
	}
	hull, ctd := results[0], results[1]
	for _, c := range []struct {
		what      string
		got, want []string
	}{
		{"images after the pull", hull.pulled, ctd.pulled},
		{"images after the import", hull.imported, ctd.imported},
		{"exported archive's entries", hull.exportEntries, ctd.exportEntries},
		{"exported index.json's manifests", hull.exportIndex, ctd.exportIndex},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s: %s %q, %s %q", c.what, names[0], c.got, names[1], c.want)
		}
	}
}

// imageNames lists du's images as "name digest", sorted.
func imageNames(t *testing.T, ctx context.Context, du *daemonUnderTest) []string {
	t.Helper()
	imgs, err := du.client.ImageService().List(ctx)
	if err != nil {
		t.Fatalf("%s: list images: %v", du.name, err)
	}
	var out []string
	for _, img := range imgs {
		out = append(out, img.Name+" "+img.Target.Digest.String())
	}
	slices.Sort(out)
	return out
}

// exportedArchive reads an exported tar: its entries, directories too,
// sorted, and its index.json's manifests as "digest mediatype annotations",
// sorted, all annotations included (the image names and the distribution
// sources).
func exportedArchive(t *testing.T, name string, data []byte) (entries, index []string) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var idx ocispec.Index
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: exported archive: %v", name, err)
		}
		entries = append(entries, h.Name)
		if h.Name == "index.json" {
			if err := json.NewDecoder(tr).Decode(&idx); err != nil {
				t.Fatalf("%s: exported index.json: %v", name, err)
			}
		}
	}
	if len(idx.Manifests) == 0 {
		t.Fatalf("%s: the export has no index.json manifests: %q", name, entries)
	}
	for _, m := range idx.Manifests {
		keys := make([]string, 0, len(m.Annotations))
		for k, v := range m.Annotations {
			keys = append(keys, k+"="+v)
		}
		slices.Sort(keys)
		index = append(index, m.Digest.String()+" "+m.MediaType+" "+string(mustJSON(t, keys)))
	}
	slices.Sort(entries)
	slices.Sort(index)
	return entries, index
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
