package integration

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/testimage"
)

func newClient(t *testing.T, d *hulltest.Daemon, ns string) (*client.Client, context.Context) {
	c, err := client.New(d.Address, client.WithDefaultNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, client.WithNamespace(context.Background(), ns)
}

// twoPlatforms returns an index of an image for this host and one for
// another architecture.
func twoPlatforms() (*testimage.Index, *testimage.Image, *testimage.Image) {
	otherArch := "arm64"
	if runtime.GOARCH == "arm64" {
		otherArch = "amd64"
	}
	host := testimage.NewFor(testimage.HostPlatform(), []string{"/bin/sh"}, []testimage.File{{Name: "host.txt", Data: []byte("host")}})
	other := testimage.NewFor(ocispec.Platform{OS: "linux", Architecture: otherArch}, []string{"/bin/sh"}, []testimage.File{{Name: "other.txt", Data: []byte("other")}})
	return testimage.NewIndex(host, other), host, other
}

func has(ctx context.Context, c *client.Client, d digest.Digest) bool {
	_, err := c.ContentStore().Info(ctx, d)
	return err == nil
}

func TestImportExportRoundTrip(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	c, ctx := newClient(t, d, "arch")
	idx, host, other := twoPlatforms()
	var archive bytes.Buffer
	if err := testimage.WriteOCIArchiveIndex(&archive, "example.test/multi:1", idx); err != nil {
		t.Fatal(err)
	}
	imgs, err := c.Import(ctx, bytes.NewReader(archive.Bytes()), client.WithDigestImages(), client.WithIndexName("example.test/whole:idx"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, img := range imgs {
		names[img.Name] = true
	}
	for _, want := range []string{"example.test/multi:1", "example.test/multi@" + idx.Index.Desc.Digest.String(), "example.test/whole:idx"} {
		if !names[want] {
			t.Errorf("import did not record %s (got %v)", want, names)
		}
	}
	// Only the host platform is kept once gc has run.
	if err := c.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	for _, b := range host.Blobs() {
		if !has(ctx, c, b.Desc.Digest) {
			t.Fatalf("host platform blob %s missing", b.Desc.Digest)
		}
	}
	if has(ctx, c, other.Manifest.Desc.Digest) {
		t.Fatalf("other platform manifest kept without --all-platforms")
	}

	// Export and import into another namespace: the same image.
	var out bytes.Buffer
	if err := c.Export(ctx, &out, []string{"example.test/multi:1"}); err != nil {
		t.Fatal(err)
	}
	c2, ctx2 := newClient(t, d, "arch2")
	imgs, err = c2.Import(ctx2, bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].Name != "example.test/multi:1" || imgs[0].Target.Digest != idx.Index.Desc.Digest {
		t.Fatalf("re-import: %+v", imgs)
	}
	for _, b := range host.Blobs() {
		if !has(ctx2, c2, b.Desc.Digest) {
			t.Fatalf("exported archive lacks %s", b.Desc.Digest)
		}
	}
	// Debian's ctr imports hull's export too.
	path := filepath.Join(t.TempDir(), "export.tar")
	os.WriteFile(path, out.Bytes(), 0o600)
	d.Ctr(t, nil, "-n", "ctrimport", "images", "import", "--no-unpack", path)
	if ls := d.Ctr(t, nil, "-n", "ctrimport", "images", "ls", "-q"); !strings.Contains(ls, "example.test/multi:1") {
		t.Fatalf("ctr import of hull's export:\n%s", ls)
	}
}

func TestImportAllPlatforms(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	c, ctx := newClient(t, d, "all")
	idx, _, _ := twoPlatforms()
	var archive bytes.Buffer
	testimage.WriteOCIArchiveIndex(&archive, "example.test/multi:1", idx)
	if _, err := c.Import(ctx, &archive, client.WithImportAllPlatforms()); err != nil {
		t.Fatal(err)
	}
	if err := c.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	for _, b := range idx.Blobs() {
		if !has(ctx, c, b.Desc.Digest) {
			t.Fatalf("blob %s dropped despite all platforms", b.Desc.Digest)
		}
	}
}

func TestImportDockerArchive(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	c, ctx := newClient(t, d, "docker")
	img := testimage.New([]string{"/bin/sh"}, []testimage.File{{Name: "a", Data: []byte("a")}}, []testimage.File{{Name: "b", Data: []byte("b")}})
	var archive bytes.Buffer
	if err := testimage.WriteDockerArchive(&archive, "busybox:saved", img); err != nil {
		t.Fatal(err)
	}
	imgs, err := c.Import(ctx, &archive)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].Name != "docker.io/library/busybox:saved" || imgs[0].Target.MediaType != "application/vnd.docker.distribution.manifest.v2+json" {
		t.Fatalf("docker import: %+v", imgs)
	}
	if err := c.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	if !has(ctx, c, img.Config.Desc.Digest) {
		t.Fatal("config of a docker archive missing after gc")
	}
	// ctr reads the image: it walks the manifest to the config and layers.
	if out := d.Ctr(t, nil, "-n", "docker", "images", "ls"); !strings.Contains(out, "linux/") {
		t.Fatalf("ctr images ls of a docker import:\n%s", out)
	}
}

func TestImportBadArchives(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	c, ctx := newClient(t, d, "bad")
	if _, err := c.Import(ctx, strings.NewReader("not a tar at all, not even close............................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................")); !errdefs.IsInvalidArgument(err) {
		t.Errorf("garbage archive: %v", err)
	}
	img := testimage.New(nil, []testimage.File{{Name: "x"}})
	var archive bytes.Buffer
	testimage.WriteOCIArchive(&archive, "example.test/x:1", img)
	// Corrupt the layer's bytes inside the archive: the digest check fails.
	data := bytes.Replace(archive.Bytes(), img.Layers[0].Data[20:40], bytes.Repeat([]byte{0}, 20), 1)
	if _, err := c.Import(ctx, bytes.NewReader(data)); err == nil || !errdefs.IsFailedPrecondition(err) {
		t.Errorf("archive with a corrupt blob: %v", err)
	}
	if _, err := c.ImageService().Get(ctx, "example.test/x:1"); !errdefs.IsNotFound(err) {
		t.Errorf("an image was recorded from a corrupt archive: %v", err)
	}
	if has(ctx, c, img.Layers[0].Desc.Digest) {
		t.Error("a corrupt blob is visible")
	}
	if err := c.Export(ctx, &bytes.Buffer{}, []string{"example.test/none:1"}); !errdefs.IsNotFound(err) {
		t.Errorf("export of a missing image: %v", err)
	}
}
