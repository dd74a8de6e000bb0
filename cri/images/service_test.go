package images

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/registrytest"
	"github.com/hullrt/hull/internal/testimage"
)

// userImage builds a one-layer image whose config runs as user.
func userImage(t *testing.T, user, marker string) *testimage.Image {
	t.Helper()
	l := testimage.MakeLayer([]testimage.File{{Name: "marker", Data: []byte(marker)}}, testimage.Gzip)
	cfg := ocispec.Image{
		Platform: testimage.HostPlatform(),
		Config:   ocispec.ImageConfig{User: user, Cmd: []string{"/bin/sh"}, Env: []string{"MARKER=" + marker}},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{l.DiffID}},
	}
	mk := func(mt string, v any) testimage.Blob {
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return testimage.Blob{Desc: ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(data), Size: int64(len(data))}, Data: data}
	}
	img := &testimage.Image{Config: mk(ocispec.MediaTypeImageConfig, cfg), Layers: []testimage.Blob{l.Blob}}
	img.Manifest = mk(ocispec.MediaTypeImageManifest, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: img.Config.Desc, Layers: []ocispec.Descriptor{l.Blob.Desc},
	})
	return img
}

// writeHosts makes registry's hosts.toml in dir send it to server.
func writeHosts(t *testing.T, dir, registry, server string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, registry), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, registry, "hosts.toml"), []byte(fmt.Sprintf("server = %q\n", server)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func pullReq(ref string, auth *runtime.AuthConfig) *runtime.PullImageRequest {
	return &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}, Auth: auth}
}

func spec(ref string) *runtime.ImageSpec { return &runtime.ImageSpec{Image: ref} }

func TestImageService(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	a := userImage(t, "1000:1000", "a")
	b := userImage(t, "nobody", "b")
	cimg := userImage(t, "", "c")
	reg.Push(t, "test/a", "1", a)
	reg.Push(t, "test/a", "2", a)
	reg.Push(t, "library/busybox", "latest", b)
	reg.Push(t, "test/c", "1", cimg)
	hosts := t.TempDir()
	writeHosts(t, hosts, reg.Host(), reg.URL())
	// "busybox" is docker.io's: its hosts.toml sends it to the fixture.
	writeHosts(t, hosts, "docker.io", reg.URL())

	d := hulltest.Start(t, hulltest.Options{})
	c, err := client.New(d.Address, client.WithTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := New(c, Config{
		RegistryConfigPath: hosts,
		PinnedImages:       map[string]string{"sandbox": "busybox"},
		Stats: FsInfoSource{
			ImageDirs:     []string{filepath.Join(d.Root, "io.containerd.content.v1.content"), filepath.Join(d.Root, "io.containerd.snapshotter.v1.overlayfs")},
			ContainerDirs: []string{filepath.Join(d.Root, "io.containerd.snapshotter.v1.overlayfs")},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	nsctx := client.WithNamespace(ctx, "k8s.io")
	tag1, tag2 := reg.Host()+"/test/a:1", reg.Host()+"/test/a:2"
	repoDigestA := reg.Host() + "/test/a@" + a.Manifest.Desc.Digest.String()
	idA, idB := a.Config.Desc.Digest.String(), b.Config.Desc.Digest.String()
	chainA := identity.ChainID([]digest.Digest{testimage.MakeLayer([]testimage.File{{Name: "marker", Data: []byte("a")}}, testimage.Gzip).DiffID})
	sizeA := uint64(a.Manifest.Desc.Size + a.Config.Desc.Size + a.Layers[0].Desc.Size)

	sn, err := c.DefaultSnapshotter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	unpacked := func(chain digest.Digest) bool {
		_, err := c.SnapshotService(sn).Stat(nsctx, chain.String())
		if err != nil && !errdefs.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}

	t.Run("pull by tag", func(t *testing.T) {
		resp, err := s.PullImage(ctx, pullReq(tag1, nil))
		if err != nil {
			t.Fatal(err)
		}
		if resp.ImageRef != idA {
			t.Fatalf("image_ref %s; want the config digest %s", resp.ImageRef, idA)
		}
		if !unpacked(chainA) {
			t.Fatalf("snapshot %s not in %s after the pull", chainA, sn)
		}
		// The names containerd's CRI records, all labelled managed.
		recs, err := c.ImageService().List(nsctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range recs {
			names = append(names, r.Name)
			if r.Labels[ManagedLabel] != ManagedValue || r.Target.Digest != a.Manifest.Desc.Digest {
				t.Errorf("record %s: labels %v, target %s", r.Name, r.Labels, r.Target.Digest)
			}
		}
		slices.Sort(names)
		want := []string{repoDigestA, tag1, idA}
		slices.Sort(want)
		if !slices.Equal(names, want) {
			t.Fatalf("records %v; want %v", names, want)
		}
	})

	t.Run("resolve", func(t *testing.T) {
		hex := a.Config.Desc.Digest.Encoded()
		for _, ref := range []string{idA, "sha256:" + hex[:12], hex[:12], hex, tag1, repoDigestA} {
			img, err := s.Resolve(ctx, ref)
			if err != nil {
				t.Fatalf("Resolve(%q): %v", ref, err)
			}
			if img.ID != idA || img.ChainID != chainA || img.Size != sizeA || img.Config.Config.User != "1000:1000" ||
				img.Target.Digest != a.Manifest.Desc.Digest || img.Pinned || img.Name == "" {
				t.Fatalf("Resolve(%q) = %+v", ref, img)
			}
			if !slices.Equal(img.RepoTags, []string{tag1}) || !slices.Equal(img.RepoDigests, []string{repoDigestA}) {
				t.Fatalf("Resolve(%q): tags %v digests %v", ref, img.RepoTags, img.RepoDigests)
			}
		}
		if img, _ := s.Resolve(ctx, repoDigestA); img.Name != repoDigestA {
			t.Errorf("resolved by digest, named %q", img.Name)
		}
		if img, _ := s.Resolve(ctx, idA); img.Name != tag1 {
			t.Errorf("resolved by id, named %q; want the tag", img.Name)
		}
		for _, ref := range []string{"sha256:" + strings.Repeat("0", 64), reg.Host() + "/test/a:3", "nothing"} {
			if _, err := s.Resolve(ctx, ref); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), ref) {
				t.Errorf("Resolve(%q): %v; want NotFound naming it", ref, err)
			}
		}
	})

	t.Run("pull by digest and second tag", func(t *testing.T) {
		for _, ref := range []string{repoDigestA, tag2} {
			resp, err := s.PullImage(ctx, pullReq(ref, nil))
			if err != nil || resp.ImageRef != idA {
				t.Fatalf("pull %s: %v, %v", ref, resp, err)
			}
		}
		resp, err := s.PullImage(ctx, pullReq("busybox", nil))
		if err != nil || resp.ImageRef != idB {
			t.Fatalf("pull busybox: %v, %v", resp, err)
		}
		img, err := s.Resolve(ctx, "docker.io/library/busybox")
		if err != nil || img.ID != idB || !img.Pinned || img.Name != "docker.io/library/busybox:latest" {
			t.Fatalf("busybox by its long name: %+v, %v", img, err)
		}
	})

	t.Run("list", func(t *testing.T) {
		resp, err := s.ListImages(ctx, &runtime.ListImagesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Images) != 2 {
			t.Fatalf("%d images: %v", len(resp.Images), resp.Images)
		}
		byID := map[string]*runtime.Image{}
		for _, img := range resp.Images {
			byID[img.Id] = img
		}
		ia, ib := byID[idA], byID[idB]
		if ia == nil || ib == nil {
			t.Fatalf("images %v", resp.Images)
		}
		if !slices.Equal(ia.RepoTags, []string{tag1, tag2}) || !slices.Equal(ia.RepoDigests, []string{repoDigestA}) ||
			ia.Size != sizeA || ia.Uid.GetValue() != 1000 || ia.Uid == nil || ia.Username != "" || ia.Pinned || ia.Spec.GetImage() != idA {
			t.Errorf("image a: %v", ia)
		}
		if !slices.Equal(ib.RepoTags, []string{"docker.io/library/busybox:latest"}) ||
			!slices.Equal(ib.RepoDigests, []string{"docker.io/library/busybox@" + b.Manifest.Desc.Digest.String()}) ||
			ib.Uid != nil || ib.Username != "nobody" || !ib.Pinned {
			t.Errorf("image b: %v", ib)
		}
		filtered, err := s.ListImages(ctx, &runtime.ListImagesRequest{Filter: &runtime.ImageFilter{Image: spec("busybox")}})
		if err != nil || len(filtered.Images) != 1 || filtered.Images[0].Id != idB {
			t.Errorf("filtered by busybox: %v, %v", filtered, err)
		}
		filtered, err = s.ListImages(ctx, &runtime.ListImagesRequest{Filter: &runtime.ImageFilter{Image: spec("absent:1")}})
		if err != nil || len(filtered.Images) != 0 {
			t.Errorf("filtered by an absent image: %v, %v", filtered, err)
		}
	})

	t.Run("status", func(t *testing.T) {
		resp, err := s.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: spec(tag2), Verbose: true})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Image.GetId() != idA || resp.Image.Uid.GetValue() != 1000 || len(resp.Image.RepoTags) != 2 {
			t.Fatalf("status %v", resp.Image)
		}
		var info struct {
			ChainID   string        `json:"chainID"`
			ImageSpec ocispec.Image `json:"imageSpec"`
		}
		if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil || info.ChainID != chainA.String() || info.ImageSpec.Config.User != "1000:1000" {
			t.Fatalf("verbose info %q: %v", resp.Info["info"], err)
		}
		resp, err = s.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: spec(reg.Host() + "/test/a:9")})
		if err != nil || resp.Image != nil {
			t.Fatalf("status of a missing image: %v, %v", resp, err)
		}
	})

	t.Run("image fs info", func(t *testing.T) {
		resp, err := s.ImageFsInfo(ctx, &runtime.ImageFsInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.ImageFilesystems) != 1 || len(resp.ContainerFilesystems) != 1 {
			t.Fatalf("filesystems: %v", resp)
		}
		fs := resp.ImageFilesystems[0]
		if fs.Timestamp == 0 || fs.FsId.GetMountpoint() != filepath.Join(d.Root, "io.containerd.content.v1.content") ||
			fs.UsedBytes.GetValue() < sizeA || fs.InodesUsed.GetValue() < 4 {
			t.Fatalf("image filesystem %v", fs)
		}
	})

	t.Run("remove", func(t *testing.T) {
		if _, err := s.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: spec(tag1)}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Resolve(ctx, tag1); !errdefs.IsNotFound(err) {
			t.Fatalf("removed tag resolves: %v", err)
		}
		img, err := s.Resolve(ctx, tag2)
		if err != nil || img.ID != idA || !slices.Equal(img.RepoTags, []string{tag2}) {
			t.Fatalf("the other tag after removing one: %+v, %v", img, err)
		}
		if _, err := s.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: spec(idA[:20])}); err != nil {
			t.Fatal(err)
		}
		for _, ref := range []string{idA, tag2, repoDigestA} {
			if _, err := s.Resolve(ctx, ref); !errdefs.IsNotFound(err) {
				t.Errorf("%s after removing the id: %v", ref, err)
			}
		}
		recs, err := c.ImageService().List(nsctx, "target.digest=="+a.Manifest.Desc.Digest.String())
		if err != nil || len(recs) != 0 {
			t.Fatalf("records left: %v, %v", recs, err)
		}
		if _, err := c.ContentStore().Info(nsctx, a.Layers[0].Desc.Digest); !errdefs.IsNotFound(err) {
			t.Errorf("layer of the removed image: %v; want collected", err)
		}
		for _, ref := range []string{idA, "absent/image:1", "Not A Reference"} {
			if _, err := s.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: spec(ref)}); err != nil {
				t.Errorf("removing absent %q: %v", ref, err)
			}
		}
		// busybox is untouched.
		if img, err := s.Resolve(ctx, "busybox"); err != nil || img.ID != idB {
			t.Fatalf("busybox: %+v, %v", img, err)
		}
	})

	t.Run("errors", func(t *testing.T) {
		missing := reg.Host() + "/test/a:nope"
		_, err := s.PullImage(ctx, pullReq(missing, nil))
		if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), missing) {
			t.Errorf("missing tag: %v; want NotFound naming it", err)
		}
		for _, bad := range []string{"Bad Ref", "busybox@sha256:12", ""} {
			_, err := s.PullImage(ctx, pullReq(bad, nil))
			if !errdefs.IsInvalidArgument(err) || (bad != "" && !strings.Contains(err.Error(), fmt.Sprintf("%q", bad))) {
				t.Errorf("pull %q: %v; want InvalidArgument naming it", bad, err)
			}
		}
	})

	t.Run("ensure pulled", func(t *testing.T) {
		// Fetched but not unpacked, as hullctl pull --no-unpack leaves it.
		refC := reg.Host() + "/test/c:1"
		if _, err := c.Pull(nsctx, refC, client.WithHostsDir(hosts)); err != nil {
			t.Fatal(err)
		}
		chainC := identity.ChainID([]digest.Digest{testimage.MakeLayer([]testimage.File{{Name: "marker", Data: []byte("c")}}, testimage.Gzip).DiffID})
		if unpacked(chainC) {
			t.Fatalf("precondition: %s already unpacked", chainC)
		}
		img, err := s.EnsurePulled(ctx, refC, nil)
		if err != nil || img.ID != cimg.Config.Desc.Digest.String() || img.ChainID != chainC || img.Name != refC {
			t.Fatalf("EnsurePulled(%s) = %+v, %v", refC, img, err)
		}
		if !unpacked(chainC) {
			t.Fatalf("EnsurePulled did not unpack %s", chainC)
		}
		// Absent: pulled.
		img, err = s.EnsurePulled(ctx, tag2, nil)
		if err != nil || img.ID != idA || !unpacked(chainA) {
			t.Fatalf("EnsurePulled(%s) = %+v, %v", tag2, img, err)
		}
	})

	t.Run("concurrent ensure pulled", func(t *testing.T) {
		// Pods starting at once on a node without their image (the
		// pause image at boot) each ask for it.
		dimg := userImage(t, "", "d")
		reg.Push(t, "test/d", "1", dimg)
		refD := reg.Host() + "/test/d:1"
		const n = 8
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			go func() {
				img, err := s.EnsurePulled(ctx, refD, nil)
				if err == nil && img.ID != dimg.Config.Desc.Digest.String() {
					err = fmt.Errorf("image %+v", img)
				}
				errs <- err
			}()
		}
		for i := 0; i < n; i++ {
			if err := <-errs; err != nil {
				t.Errorf("concurrent EnsurePulled(%s): %v", refD, err)
			}
		}
	})

	t.Run("auth", func(t *testing.T) {
		basic := registrytest.Start(t, registrytest.Options{Htpasswd: map[string]string{"alice": "s3cret"}})
		basic.Push(t, "priv/app", "1", a)
		tok := registrytest.Start(t, registrytest.Options{Token: &registrytest.TokenOptions{Users: map[string]string{"bob": "pw"}}})
		tok.Push(t, "priv/app", "1", b)
		writeHosts(t, hosts, basic.Host(), basic.URL())
		writeHosts(t, hosts, tok.Host(), tok.URL())
		// "priv.test" is served by the basic registry: credentials for
		// the reference's registry go to the host its hosts.toml names.
		writeHosts(t, hosts, "priv.test", basic.URL())
		refBasic, refTok := basic.Host()+"/priv/app:1", tok.Host()+"/priv/app:1"

		if _, err := s.PullImage(ctx, pullReq(refBasic, nil)); err == nil || !strings.Contains(err.Error(), "401") {
			t.Fatalf("anonymous pull from a basic-auth registry: %v", err)
		}
		if _, err := s.PullImage(ctx, pullReq(refBasic, &runtime.AuthConfig{Username: "alice", Password: "wrong"})); err == nil {
			t.Fatal("a wrong password pulled")
		}
		enc := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
		for _, tc := range []struct {
			ref  string
			auth *runtime.AuthConfig
		}{
			{refBasic, &runtime.AuthConfig{Username: "alice", Password: "s3cret", ServerAddress: basic.Host()}},
			{refBasic, &runtime.AuthConfig{Auth: enc}},
			{"priv.test/priv/app:1", &runtime.AuthConfig{Auth: enc, ServerAddress: "https://priv.test"}},
		} {
			if resp, err := s.PullImage(ctx, pullReq(tc.ref, tc.auth)); err != nil || resp.ImageRef != idA {
				t.Fatalf("pull %s with %v: %v, %v", tc.ref, tc.auth, resp, err)
			}
		}
		// Credentials the kubelet found for another registry are not sent.
		if _, err := s.PullImage(ctx, pullReq(refBasic, &runtime.AuthConfig{Username: "alice", Password: "s3cret", ServerAddress: "elsewhere.example"})); err == nil {
			t.Fatal("credentials for another server were sent")
		}

		tok.ResetTokenRequests()
		if resp, err := s.PullImage(ctx, pullReq(refTok, &runtime.AuthConfig{Username: "bob", Password: "pw"})); err != nil || resp.ImageRef != idB {
			t.Fatalf("pull with a token server: %v, %v", resp, err)
		}
		var users []string
		for _, r := range tok.TokenRequests() {
			users = append(users, r.User)
		}
		if !slices.Contains(users, "bob") {
			t.Fatalf("token requests by %v; want bob's", users)
		}
	})

	t.Run("progress timeout", func(t *testing.T) {
		stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/" {
				return
			}
			<-r.Context().Done()
		}))
		t.Cleanup(stall.Close)
		writeHosts(t, hosts, "stall.test", stall.URL)
		st, err := New(c, Config{RegistryConfigPath: hosts, PullProgressTimeout: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		_, err = st.PullImage(ctx, pullReq("stall.test/x:1", nil))
		if err == nil || !strings.Contains(err.Error(), "no progress for 300ms") || !strings.Contains(err.Error(), "stall.test/x:1") {
			t.Fatalf("stalled pull: %v", err)
		}
	})
}
