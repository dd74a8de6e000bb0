package integration

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/testimage"
)

// runTool runs a program and fails the test on a non-zero exit.
func runTool(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// imageDigests lists the images of namespace ns as "name digest" lines,
// sorted, as ctr (any version) reports them from the daemon at address.
func imageDigests(t *testing.T, ctr, address, ns string) []string {
	t.Helper()
	var out []string
	lines := strings.Split(strings.TrimSpace(runTool(t, ctr, "--address", address, "-n", ns, "images", "ls")), "\n")
	for _, l := range lines {
		// Skip the heading (its columns differ between versions) and
		// warnings: an image's line is its name, then a digest column.
		f := strings.Fields(l)
		for _, col := range f[min(1, len(f)):] {
			if strings.HasPrefix(col, "sha256:") {
				out = append(out, f[0]+" "+col)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// readArchive returns the regular files of a tar archive by name.
func readArchive(t *testing.T, path string) map[string][]byte {
	t.Helper()
	files, err := testimage.ReadArchiveFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// twoPlatformArchive writes twoPlatforms' index, named ref, as an OCI
// archive in dir and returns it with the host's image and the path.
func twoPlatformArchive(t *testing.T, dir, ref string) (*testimage.Index, *testimage.Image, string) {
	t.Helper()
	idx, host, _ := twoPlatforms()
	var buf bytes.Buffer
	if err := testimage.WriteOCIArchiveIndex(&buf, ref, idx); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "src.tar")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return idx, host, path
}

// TestArchive2ImportsKeepDigests imports archives that containerd 2.4.2's
// ctr exported (through its transfer service and with --local; both hold
// index.json and a docker manifest.json) of a two-platform image into
// hulld with Debian's ctr 1.6, containerd 2.4.2's ctr and hullctl, and
// into containerd 2.4.2 with its own ctr: every import records the same
// names with the same digests, the archive's index, not the host's
// manifest.
func TestArchive2ImportsKeepDigests(t *testing.T) {
	hulltest.RequireCtr(t)
	ctr2 := hulltest.Containerd2Bin(t, "ctr")
	cd := hulltest.StartContainerdWith(t, "", hulltest.ContainerdOptions{Binary: hulltest.Containerd2Bin(t, "containerd")})
	d := hulltest.Start(t, hulltest.Options{})
	hullctl := hulltest.Build(t, "hullctl", "github.com/hullrt/hull/cmd/hullctl")
	dir := t.TempDir()

	idx, host, src := twoPlatformArchive(t, dir, "example.test/multi:1")
	runTool(t, ctr2, "--address", cd.Address, "-n", "src", "images", "import", "--all-platforms", "--no-unpack", src)

	for _, mode := range []string{"transfer", "local"} {
		t.Run(mode, func(t *testing.T) {
			archive := filepath.Join(dir, mode+".tar")
			args := []string{"--address", cd.Address, "-n", "src", "images", "export"}
			if mode == "local" {
				args = append(args, "--local")
			}
			exportWhole(t, archive, func() { runTool(t, ctr2, append(args, archive, "example.test/multi:1")...) })
			if files := readArchive(t, archive); testimage.WholeExport(files, nil) != nil {
				t.Fatalf("containerd's export is not the OCI layout with a manifest.json this test is about: %v", len(files))
			}

			ns := "imp-" + mode
			runTool(t, ctr2, "--address", cd.Address, "-n", ns, "images", "import", "--no-unpack", archive)
			want := imageDigests(t, ctr2, cd.Address, ns)
			if len(want) == 0 {
				t.Fatal("containerd 2.4.2 recorded no image")
			}
			wantLine := "example.test/multi:1 " + idx.Index.Desc.Digest.String()
			if !slices.Contains(want, wantLine) {
				t.Fatalf("containerd 2.4.2 did not record %q: %v (the test's premise is wrong)", wantLine, want)
			}

			// Debian's ctr 1.6 imports through the content and images
			// services, containerd 2.4.2's through hulld's transfer service.
			for _, imp := range []struct{ name, bin string }{{"ctr16", "ctr"}, {"ctr24", ctr2}} {
				runTool(t, imp.bin, "--address", d.Address, "-n", ns+"-"+imp.name, "images", "import", "--no-unpack", archive)
				if got := imageDigests(t, ctr2, d.Address, ns+"-"+imp.name); !slices.Equal(got, want) {
					t.Errorf("%s import into hulld: %v, containerd 2.4.2: %v", imp.name, got, want)
				}
			}
			// hullctl records the archive's names with their digests, as
			// containerd's ctr 1.6 import does.
			out := runTool(t, hullctl, "--address", d.Address, "-n", ns+"-hullctl", "images", "import", archive)
			if !strings.Contains(out, wantLine) {
				t.Errorf("hullctl images import printed:\n%s\nwant %q", out, wantLine)
			}
			if got := imageDigests(t, ctr2, d.Address, ns+"-hullctl"); !slices.Equal(got, want) {
				t.Errorf("hullctl import into hulld: %v, containerd 2.4.2: %v", got, want)
			}
			// The host platform's blobs are kept once gc has run.
			c, ctx := newClient(t, d, ns+"-hullctl")
			if err := c.GarbageCollect(ctx); err != nil {
				t.Fatal(err)
			}
			for _, b := range host.Blobs() {
				if !has(ctx, c, b.Desc.Digest) {
					t.Errorf("host blob %s missing after hullctl import and gc", b.Desc.Digest)
				}
			}
		})
	}
}

// TestArchive2ExportDockerManifest checks that hullctl images export
// writes a manifest.json docker and podman load: RepoTags in docker's
// short form, and Config and Layers paths of the host's manifest that are
// files of the archive. skopeo's docker-archive transport, which reads
// only manifest.json, reads the image back; containerd 2.4.2 imports the
// archive with the image's index digest.
func TestArchive2ExportDockerManifest(t *testing.T) {
	hulltest.RequireTools(t, "skopeo")
	d := hulltest.Start(t, hulltest.Options{})
	hullctl := hulltest.Build(t, "hullctl", "github.com/hullrt/hull/cmd/hullctl")
	dir := t.TempDir()
	idx, host, src := twoPlatformArchive(t, dir, "docker.io/library/multi:1")
	runTool(t, hullctl, "--address", d.Address, "-n", "exp", "images", "import", "--all-platforms", src)
	archive := filepath.Join(dir, "export.tar")
	runTool(t, hullctl, "--address", d.Address, "-n", "exp", "images", "export", archive, "docker.io/library/multi:1")

	files := readArchive(t, archive)
	var entries []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &entries); err != nil {
		t.Fatalf("manifest.json of hull's export: %v\n%s", err, files["manifest.json"])
	}
	if len(entries) != 1 {
		t.Fatalf("manifest.json has %d entries, want 1:\n%s", len(entries), files["manifest.json"])
	}
	e := entries[0]
	blobPath := func(d ocispec.Descriptor) string { return "blobs/sha256/" + d.Digest.Encoded() }
	if len(e.RepoTags) != 1 || e.RepoTags[0] != "multi:1" {
		t.Errorf("RepoTags %v, want [multi:1]", e.RepoTags)
	}
	if e.Config != blobPath(host.Config.Desc) {
		t.Errorf("Config %s, want the host's config %s", e.Config, blobPath(host.Config.Desc))
	}
	if len(e.Layers) != len(host.Layers) {
		t.Fatalf("Layers %v, want %d", e.Layers, len(host.Layers))
	}
	for i, l := range host.Layers {
		if e.Layers[i] != blobPath(l.Desc) {
			t.Errorf("Layers[%d] %s, want %s", i, e.Layers[i], blobPath(l.Desc))
		}
	}
	for _, p := range append([]string{e.Config}, e.Layers...) {
		if files[p] == nil {
			t.Errorf("manifest.json names %s, which the archive lacks", p)
		}
	}
	// skopeo's docker-archive transport reads the image by manifest.json.
	var cfg ocispec.Image
	out := runTool(t, "skopeo", "inspect", "--config", "docker-archive:"+archive+":multi:1")
	if err := json.Unmarshal([]byte(out), &cfg); err != nil {
		t.Fatalf("skopeo inspect --config: %v\n%s", err, out)
	}
	if cfg.Architecture != runtime.GOARCH || len(cfg.RootFS.DiffIDs) != len(host.Layers) {
		t.Errorf("skopeo read the image as %s with %d layers, want %s with %d", cfg.Architecture, len(cfg.RootFS.DiffIDs), runtime.GOARCH, len(host.Layers))
	}
	// The OCI side still names the index: containerd keeps its digest.
	cd := hulltest.StartContainerdWith(t, "", hulltest.ContainerdOptions{Binary: hulltest.Containerd2Bin(t, "containerd")})
	ctr2 := hulltest.Containerd2Bin(t, "ctr")
	runTool(t, ctr2, "--address", cd.Address, "-n", "imp", "images", "import", "--no-unpack", archive)
	if got, want := imageDigests(t, ctr2, cd.Address, "imp"), "docker.io/library/multi:1 "+idx.Index.Desc.Digest.String(); !slices.Contains(got, want) {
		t.Errorf("containerd 2.4.2 imported hull's export as %v, want %q", got, want)
	}
}

// exportWhole runs export, which writes path with ctr 2.4.2 through
// Transfer, until the file is whole (at most 5 times). ctr copies the
// daemon's stream into the file on a goroutine that nothing waits for
// (core/transfer/archive/exporter.go, MarshalAny) and exits when the
// daemon's call returns, which can be before the last chunk reached the
// file: with containerd and with hulld alike, since the protocol has the
// client send nothing once it has the last byte. The race is the client's.
func exportWhole(t *testing.T, path string, export func()) {
	t.Helper()
	export()
	for try := 1; try < 5 && testimage.WholeExport(testimage.ReadArchiveFile(path)) != nil; try++ {
		t.Logf("ctr 2.4.2 exited before writing its whole export %s (try %d); exporting again", path, try)
		export()
	}
}
