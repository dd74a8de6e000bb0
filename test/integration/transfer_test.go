package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	leasesapi "github.com/containerd/containerd/api/services/leases/v1"
	streamingapi "github.com/containerd/containerd/api/services/streaming/v1"
	transferapi "github.com/containerd/containerd/api/services/transfer/v1"
	transfertypes "github.com/containerd/containerd/api/types/transfer"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/registrytest"
	"github.com/hullrt/hull/internal/testimage"
)

// tctr runs containerd v2.4.2's ctr against the daemon at address; its
// image commands go through the Transfer service.
func tctr(t *testing.T, address string, stdin []byte, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(hulltest.Containerd2Bin(t, "ctr"), append([]string{"-a", address, "--timeout", "120s"}, args...)...)
	if stdin != nil {
		cmd.Stdin = strings.NewReader(string(stdin))
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func tctrOK(t *testing.T, address string, stdin []byte, args ...string) string {
	t.Helper()
	out, err := tctr(t, address, stdin, args...)
	if err != nil {
		t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// imageList is `ctr images ls` reduced to "name digest" lines, sorted.
func imageList(t *testing.T, address, ns string) []string {
	t.Helper()
	out := tctrOK(t, address, nil, "-n", ns, "images", "ls")
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		// Skip the header and any warning ctr prints first.
		f := strings.Fields(l)
		if len(f) >= 3 && strings.HasPrefix(f[2], "sha256:") {
			lines = append(lines, f[0]+" "+f[2])
		}
	}
	sort.Strings(lines)
	return lines
}

// yardstick is a containerd v2.4.2 on its own root, to compare with.
func yardstick(t *testing.T) *hulltest.Containerd {
	t.Helper()
	return hulltest.StartContainerdWith(t, t.TempDir(), hulltest.ContainerdOptions{Binary: hulltest.Containerd2Bin(t, "containerd")})
}

func TestTransferPullWithCtr2(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	img := smallImage("transfer")
	reg.Push(t, "transfer/app", "1", img)
	ref := reg.Host() + "/transfer/app:1"
	d := hulltest.Start(t, hulltest.Options{})
	c := yardstick(t)

	for _, addr := range []string{d.Address, c.Address} {
		out := tctrOK(t, addr, nil, "-n", "tp", "images", "pull", "--plain-http", ref)
		if !strings.Contains(out, "saved") && !strings.Contains(out, "done") {
			t.Logf("pull output from %s:\n%s", addr, out)
		}
	}
	hull, ctd := imageList(t, d.Address, "tp"), imageList(t, c.Address, "tp")
	if strings.Join(hull, "\n") != strings.Join(ctd, "\n") || len(hull) != 1 || !strings.Contains(hull[0], img.Manifest.Desc.Digest.String()) {
		t.Fatalf("images after pull: hull %q, containerd %q (want %s)", hull, ctd, img.Manifest.Desc.Digest)
	}
	// Unpacked as containerd's ctr asks: a container can be made from it.
	tctrOK(t, d.Address, nil, "-n", "tp", "containers", "create", ref, "tp1")
	tctrOK(t, d.Address, nil, "-n", "tp", "containers", "rm", "tp1")

	// --hosts-dir: the hosts.toml of the registry says plain http, so no
	// --plain-http is needed.
	hostsDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(hostsDir, reg.Host()), 0o755); err != nil {
		t.Fatal(err)
	}
	toml := "server = \"http://" + reg.Host() + "\"\n[host.\"http://" + reg.Host() + "\"]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n"
	if err := os.WriteFile(filepath.Join(hostsDir, reg.Host(), "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	tctrOK(t, d.Address, nil, "-n", "tp2", "images", "pull", "--hosts-dir", hostsDir, ref)
	if got := imageList(t, d.Address, "tp2"); len(got) != 1 || got[0] != hull[0] {
		t.Fatalf("images after pull with --hosts-dir: %q, want %q", got, hull)
	}
	// A pull that fails (no such tag) records nothing and leaves no lease.
	if out, err := tctr(t, d.Address, nil, "-n", "tp3", "images", "pull", "--plain-http", reg.Host()+"/transfer/app:nosuch"); err == nil {
		t.Fatalf("pull of a missing tag succeeded:\n%s", out)
	}
	if got := imageList(t, d.Address, "tp3"); len(got) != 0 {
		t.Fatalf("failed pull left images %q", got)
	}
	if ls := tctrOK(t, d.Address, nil, "-n", "tp3", "leases", "ls"); strings.Count(strings.TrimSpace(ls), "\n") != 0 {
		t.Fatalf("failed pull left leases:\n%s", ls)
	}
}

// archiveNames lists the files of a tar archive.
func archiveNames(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("archive %s: %v", path, err)
		}
		names = append(names, h.Name)
	}
}

func TestTransferArchivesTagAndPushWithCtr2(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	img := smallImage("archive")
	reg.Push(t, "transfer/arch", "1", img)
	ref := reg.Host() + "/transfer/arch:1"
	d := hulltest.Start(t, hulltest.Options{})
	c := yardstick(t)
	dir := t.TempDir()

	// Export from hull: an OCI layout with a docker manifest.json.
	tctrOK(t, d.Address, nil, "-n", "ta", "images", "pull", "--plain-http", ref)
	hullTar := filepath.Join(dir, "hull.tar")
	tctrOK(t, d.Address, nil, "-n", "ta", "images", "export", hullTar, ref)
	if err := testimage.WholeExport(testimage.ReadArchiveFile(hullTar)); err != nil {
		t.Fatalf("hulld's export by ctr 2.4.2 is not whole: %v", err)
	}
	names := strings.Join(archiveNames(t, hullTar), " ")
	for _, want := range []string{"oci-layout", "index.json", "manifest.json", "blobs/sha256/" + img.Manifest.Desc.Digest.Encoded()} {
		if !strings.Contains(names, want) {
			t.Fatalf("hull's export lacks %s: %s", want, names)
		}
	}
	// containerd's own export of the same image, for the other direction.
	tctrOK(t, c.Address, nil, "-n", "ta", "images", "pull", "--plain-http", ref)
	ctdTar := filepath.Join(dir, "containerd.tar")
	exportWhole(t, ctdTar, func() { tctrOK(t, c.Address, nil, "-n", "ta", "images", "export", ctdTar, ref) })
	if err := testimage.WholeExport(testimage.ReadArchiveFile(ctdTar)); err != nil {
		t.Fatalf("containerd's export is not whole (%v): %s", err, strings.Join(archiveNames(t, ctdTar), " "))
	}

	// Each archive imports into both daemons with the same result.
	for i, archive := range []string{hullTar, ctdTar} {
		ns := fmt.Sprintf("ti%d", i)
		for _, addr := range []string{d.Address, c.Address} {
			tctrOK(t, addr, nil, "-n", ns, "images", "import", archive)
		}
		hull, ctd := imageList(t, d.Address, ns), imageList(t, c.Address, ns)
		if strings.Join(hull, "\n") != strings.Join(ctd, "\n") || len(hull) == 0 {
			t.Fatalf("import of %s: hull %q, containerd %q", archive, hull, ctd)
		}
		// --digests and --index-name: containerd's naming rules.
		ns += "n"
		for _, addr := range []string{d.Address, c.Address} {
			tctrOK(t, addr, nil, "-n", ns, "images", "import", "--digests", "--index-name", "example.com/idx:1", "--base-name", "example.com/base", archive)
		}
		hull, ctd = imageList(t, d.Address, ns), imageList(t, c.Address, ns)
		if strings.Join(hull, "\n") != strings.Join(ctd, "\n") || len(hull) == 0 {
			t.Fatalf("import --digests --index-name of %s: hull %q, containerd %q", archive, hull, ctd)
		}
	}
	// A docker save archive.
	dockerTar := filepath.Join(dir, "docker.tar")
	f, err := os.Create(dockerTar)
	if err != nil {
		t.Fatal(err)
	}
	if err := testimage.WriteDockerArchive(f, "example.com/dock:7", smallImage("docker")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, addr := range []string{d.Address, c.Address} {
		tctrOK(t, addr, nil, "-n", "tdock", "images", "import", dockerTar)
	}
	if hull, ctd := imageList(t, d.Address, "tdock"), imageList(t, c.Address, "tdock"); strings.Join(hull, "\n") != strings.Join(ctd, "\n") || len(hull) == 0 {
		t.Fatalf("docker archive import: hull %q, containerd %q", hull, ctd)
	}

	// Tag, then push the tag.
	for _, addr := range []string{d.Address, c.Address} {
		tctrOK(t, addr, nil, "-n", "ta", "images", "tag", ref, reg.Host()+"/transfer/copy:2")
	}
	if hull, ctd := imageList(t, d.Address, "ta"), imageList(t, c.Address, "ta"); strings.Join(hull, "\n") != strings.Join(ctd, "\n") || len(hull) != 2 {
		t.Fatalf("after tag: hull %q, containerd %q", hull, ctd)
	}
	tctrOK(t, d.Address, nil, "-n", "ta", "images", "push", "--plain-http", reg.Host()+"/transfer/copy:2")
	if mt, data := reg.Manifest(t, "transfer/copy", "2"); mt == "" || string(data) != string(img.Manifest.Data) {
		t.Fatalf("pushed manifest %s differs", mt)
	}
}

// ctr 2.4.2 exits as soon as Transfer answers, without waiting for its own
// copy of the stream into the file (containerd's own exports come out short
// now and then: see exportWhole). hulld answers an export only once ctr has
// taken the whole archive, so every export is whole, and the same bytes.
// The image has 40 small layers: an archive of two Data messages, the last
// short, which came out cut one time in three before.
func TestTransferExportsAreWholeWithCtr2(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	dir := t.TempDir()
	const ref = "example.test/whole/layers40:1"
	src := filepath.Join(dir, "src.tar")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := testimage.WriteOCIArchive(f, ref, testimage.NewFor(testimage.HostPlatform(), []string{"/bin/true"}, testimage.ManyLayers(40)...)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	tctrOK(t, d.Address, nil, "-n", "tw", "images", "import", "--no-unpack", src)
	out := filepath.Join(dir, "out.tar")
	var first []byte
	for i := 0; i < 20; i++ {
		tctrOK(t, d.Address, nil, "-n", "tw", "images", "export", out, ref)
		if err := testimage.WholeExport(testimage.ReadArchiveFile(out)); err != nil {
			t.Fatalf("export %d by ctr 2.4.2 is not whole: %v", i, err)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = data
		} else if !bytes.Equal(data, first) {
			t.Fatalf("export %d differs from the first", i)
		}
	}
}

// badArchive writes a tar of the given files.
func badArchive(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, data := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	tw.Close()
	return buf.Bytes()
}

func TestTransferBadInput(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	dir := t.TempDir()

	// A good archive to break.
	var good bytes.Buffer
	if err := testimage.WriteDockerArchive(&good, "example.com/bad:1", smallImage("bad")); err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"truncated":   good.Bytes()[:len(good.Bytes())/2],
		"path escape": badArchive(t, map[string][]byte{"../../etc/evil": []byte("x"), "oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`)}),
		"bad digest": badArchive(t, map[string][]byte{
			"oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`),
			"blobs/sha256/0000000000000000000000000000000000000000000000000000000000000000": []byte("not what the name says"),
			"index.json": []byte(`{"schemaVersion":2,"manifests":[]}`),
		}),
		"missing manifest": badArchive(t, map[string][]byte{
			"oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`),
			"index.json": []byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":10,"annotations":{"io.containerd.image.name":"example.com/x:1"}}]}`),
		}),
	}
	for name, data := range cases {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".tar")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := tctr(t, d.Address, nil, "-n", "bad", "images", "import", path); err == nil {
			t.Fatalf("import of a %s archive succeeded:\n%s", name, out)
		}
		if got := imageList(t, d.Address, "bad"); len(got) != 0 {
			t.Fatalf("import of a %s archive left images %q", name, got)
		}
	}
	if ls := tctrOK(t, d.Address, nil, "-n", "bad", "leases", "ls"); strings.Count(strings.TrimSpace(ls), "\n") != 0 {
		t.Fatalf("failed imports left leases:\n%s", ls)
	}

	// Unknown source or destination types are Unimplemented, naming both.
	tc := transferapi.NewTransferClient(dial(t, d))
	empty, _ := anypb.New(&emptypb.Empty{})
	store, _ := anypb.New(&transfertypes.ImageStore{Name: "example.com/x:1"})
	for _, pair := range [][2]*anypb.Any{{empty, store}, {store, empty}, {empty, empty}, {{TypeUrl: "example.com/NoSuchType"}, store}} {
		_, err := tc.Transfer(nsCtx("bad"), &transferapi.TransferRequest{Source: pair[0], Destination: pair[1]})
		wantCode(t, "transfer "+pair[0].GetTypeUrl()+" to "+pair[1].GetTypeUrl(), err, codes.Unimplemented, pair[0].GetTypeUrl(), pair[1].GetTypeUrl())
	}
	// A stream name nobody opened is NotFound.
	imp, _ := anypb.New(&transfertypes.ImageImportStream{Stream: "nosuch"})
	_, err := tc.Transfer(nsCtx("bad"), &transferapi.TransferRequest{Source: imp, Destination: store})
	wantCode(t, "transfer from an unopened stream", err, codes.NotFound, "nosuch")
}

// TestTransferImportClientDisconnects: a client that goes away in the
// middle of an import (its stream broken off, and in the second case its
// Transfer call too, as when ctr is killed) leaves no image, no lease and
// no ingest in hulld once the transfer has wound down.
func TestTransferImportClientDisconnects(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	conn := dial(t, d)
	// A layer gzip cannot shrink, so that half the archive is megabytes
	// into the layer's blob.
	big := make([]byte, 8<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	var arch bytes.Buffer
	img := testimage.New([]string{"/bin/sh"}, []testimage.File{{Name: "big", Data: big}})
	if err := testimage.WriteOCIArchive(&arch, "example.com/disconnect:1", img); err != nil {
		t.Fatal(err)
	}
	half := arch.Bytes()[:arch.Len()/2]

	for _, c := range []struct {
		ns       string
		killCall bool
	}{{"tdisc-stream", false}, {"tdisc-killed", true}} {
		t.Run(c.ns, func(t *testing.T) {
			ctx := nsCtx(c.ns)
			streamCtx, cancelStream := context.WithCancel(ctx)
			defer cancelStream()
			// The call's goroutine is waited for on every way out, once
			// its context is cancelled (deferred calls run last first).
			var calls sync.WaitGroup
			defer calls.Wait()
			callCtx, cancelCall := context.WithCancel(ctx)
			defer cancelCall()

			st, err := streamingapi.NewStreamingClient(conn).Stream(streamCtx)
			if err != nil {
				t.Fatal(err)
			}
			initMsg := wireAny(t, &streamingapi.StreamInit{ID: "disconnect"})
			if err := st.Send(initMsg); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Recv(); err != nil {
				t.Fatalf("stream ack: %v", err)
			}
			src := wireAny(t, &transfertypes.ImageImportStream{Stream: "disconnect"})
			dst := wireAny(t, &transfertypes.ImageStore{ExtraReferences: []*transfertypes.ImageReference{{Name: "import-disc", IsPrefix: true, AllowOverwrite: true}}})
			callErr := make(chan error, 1)
			calls.Add(1)
			go func() {
				defer calls.Done()
				_, err := transferapi.NewTransferClient(conn).Transfer(callCtx, &transferapi.TransferRequest{Source: src, Destination: dst})
				callErr <- err
			}()

			// Send half the archive within the windows hulld grants.
			var window int
			for sent := 0; sent < len(half); {
				for window == 0 {
					a, err := st.Recv()
					if err != nil {
						t.Fatalf("after %d bytes: %v (transfer: %v)", sent, err, drain(callErr))
					}
					if v, err := typeurl.UnmarshalAny(a); err == nil {
						if u, ok := v.(*transfertypes.WindowUpdate); ok {
							window += int(u.Update)
						}
					}
				}
				n := min(window, 32<<10, len(half)-sent)
				data := wireAny(t, &transfertypes.Data{Data: half[sent : sent+n]})
				if err := st.Send(data); err != nil {
					t.Fatalf("send after %d bytes: %v", sent, err)
				}
				sent += n
				window -= n
			}
			// hulld is storing the layer: its lease holds an ingest.
			hulltest.Eventually(t, 20*time.Second, "an ingest of the import", func() error {
				if ingests := activeIngests(t, conn, ctx); len(ingests) == 0 {
					return fmt.Errorf("no ingest")
				}
				if ls := leaseIDs(t, conn, ctx); len(ls) == 0 {
					return fmt.Errorf("no lease")
				}
				return nil
			})

			cancelStream()
			if c.killCall {
				cancelCall()
			}
			select {
			case err := <-callErr:
				if err == nil {
					t.Fatal("the transfer of half an archive succeeded")
				}
				t.Logf("transfer: %v", err)
			case <-time.After(30 * time.Second):
				t.Fatal("the transfer did not end after its stream broke off")
			}

			hulltest.Eventually(t, 30*time.Second, "no image, lease or ingest left", func() error {
				imgs, err := imagesapi.NewImagesClient(conn).List(ctx, &imagesapi.ListImagesRequest{})
				if err != nil {
					return err
				}
				if len(imgs.Images) != 0 {
					return fmt.Errorf("images %v", imgs.Images)
				}
				if ls := leaseIDs(t, conn, ctx); len(ls) != 0 {
					return fmt.Errorf("leases %q", ls)
				}
				if ingests := activeIngests(t, conn, ctx); len(ingests) != 0 {
					return fmt.Errorf("ingests %q", ingests)
				}
				return nil
			})
		})
	}
}

// wireAny marshals v as containerd's client does (typeurl's names, not
// anypb's type.googleapis.com ones, which the streaming service refuses
// for StreamInit as containerd's does).
func wireAny(t *testing.T, v any) *anypb.Any {
	t.Helper()
	a, err := typeurl.MarshalAny(v)
	if err != nil {
		t.Fatal(err)
	}
	return &anypb.Any{TypeUrl: a.GetTypeUrl(), Value: a.GetValue()}
}

// drain returns the transfer's error if the call has ended, else nil.
func drain(c <-chan error) error {
	select {
	case err := <-c:
		return err
	default:
		return nil
	}
}

// activeIngests lists the refs of the namespace's ingests in progress.
func activeIngests(t *testing.T, conn *grpc.ClientConn, ctx context.Context) []string {
	t.Helper()
	resp, err := contentapi.NewContentClient(conn).ListStatuses(ctx, &contentapi.ListStatusesRequest{})
	if err != nil {
		t.Fatalf("list ingests: %v", err)
	}
	var refs []string
	for _, s := range resp.Statuses {
		refs = append(refs, s.Ref)
	}
	return refs
}

// leaseIDs lists the namespace's leases.
func leaseIDs(t *testing.T, conn *grpc.ClientConn, ctx context.Context) []string {
	t.Helper()
	resp, err := leasesapi.NewLeasesClient(conn).List(ctx, &leasesapi.ListRequest{})
	if err != nil {
		t.Fatalf("list leases: %v", err)
	}
	var ids []string
	for _, l := range resp.Leases {
		ids = append(ids, l.ID)
	}
	return ids
}

// TestTransferConfigSection: the transfer plugin reads containerd 2.x's
// section: config_path is the hosts directory of pulls whose client names
// none (its hosts.toml says plain http, so ctr needs no --plain-http),
// chunked layer fetches are taken, and bad values stop hulld naming them.
func TestTransferConfigSection(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	img := smallImage("transfer-config")
	reg.Push(t, "transfer/config", "1", img)
	ref := reg.Host() + "/transfer/config:1"
	hostsDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(hostsDir, reg.Host()), 0o755); err != nil {
		t.Fatal(err)
	}
	toml := "server = \"http://" + reg.Host() + "\"\n[host.\"http://" + reg.Host() + "\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
	if err := os.WriteFile(filepath.Join(hostsDir, reg.Host(), "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	d := hulltest.Start(t, hulltest.Options{Config: fmt.Sprintf(`version = 3
[plugins."io.containerd.transfer.v1.local"]
  max_concurrent_downloads = 2
  concurrent_layer_fetch_buffer = 1048576
  max_concurrent_uploaded_layers = 2
  max_concurrent_unpacks = 1
  config_path = %q
`, hostsDir)})
	if strings.Contains(d.Log(), "transfer.v1.local") && strings.Contains(d.Log(), "unknown") {
		t.Errorf("hulld warned about the transfer section:\n%s", d.Log())
	}
	tctrOK(t, d.Address, nil, "-n", "tc", "images", "pull", ref)
	if got := imageList(t, d.Address, "tc"); len(got) != 1 || !strings.Contains(got[0], img.Manifest.Desc.Digest.String()) {
		t.Fatalf("images after a pull through config_path: %q, want %s", got, img.Manifest.Desc.Digest)
	}

	for _, bad := range []struct{ line, want string }{
		{"concurrent_layer_fetch_buffer = 100", `invalid value 100 for 'plugins."io.containerd.transfer.v1.local".concurrent_layer_fetch_buffer'`},
		{"max_concurrent_downloads = -1", `invalid value -1 for 'plugins."io.containerd.transfer.v1.local".max_concurrent_downloads'`},
		{`config_path = "certs.d"`, `invalid value "certs.d" for 'plugins."io.containerd.transfer.v1.local".config_path'`},
	} {
		cfg := filepath.Join(t.TempDir(), "config.toml")
		if err := os.WriteFile(cfg, []byte("version = 3\n[plugins.\"io.containerd.transfer.v1.local\"]\n  "+bad.line+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(hulltest.Binary(t), "config", "check", cfg).CombinedOutput()
		if err == nil || !strings.Contains(string(out), cfg+":3:3:") || !strings.Contains(string(out), bad.want) {
			t.Errorf("config check of %s: %v, want a failure at %s:3:3 naming %s\n%s", bad.line, err, cfg, bad.want, out)
		}
	}
}
