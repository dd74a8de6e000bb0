package integration

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	mountsapi "github.com/containerd/containerd/api/services/mounts/v1"
	"github.com/containerd/containerd/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/client/cio"
	"github.com/hullrt/hull/client/oci"
	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/internal/errgrpc"
	"github.com/hullrt/hull/internal/hulltest"
)

// mountsDir is where hulld's mount manager mounts.
func mountsDir(d *hulltest.Daemon) string {
	return filepath.Join(d.State, "io.containerd.mount-manager.v1.bolt", "t")
}

// wantGRPCCode checks an error that came through the client library,
// which turns gRPC codes back into errdefs classes.
func wantGRPCCode(t *testing.T, err error, code codes.Code, words ...string) {
	t.Helper()
	if got := errgrpc.ToGRPC(err); status.Code(got) != code {
		t.Fatalf("error %v, want %s", err, code)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %q", err, w)
		}
	}
}

func listActivations(t *testing.T, ctx context.Context, mc mountsapi.MountsClient, filters ...string) []string {
	t.Helper()
	st, err := mc.List(ctx, &mountsapi.ListRequest{Filters: filters})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, m.Info.Name)
	}
}

// TestMountsService drives hulld's Mounts service over gRPC: an ext4 image
// on a loop device, kept over a restart of hulld and freed by Deactivate;
// the errors of bad input; and a task whose rootfs is a formatted mount
// over its snapshot, activated before the shim sees it and deactivated
// with the task.
func TestMountsService(t *testing.T) {
	hulltest.RequireTools(t, "mkfs.ext4", "losetup")
	dir := t.TempDir()
	d := startForTasks(t, hulltest.Options{Dir: dir})
	c, ctx := newClient(t, d, "mnt")
	mc := mountsapi.NewMountsClient(c.Conn())

	content := t.TempDir()
	os.WriteFile(filepath.Join(content, "hello"), []byte("from ext4"), 0o644)
	img := filepath.Join(t.TempDir(), "fs.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-d", content, img, "4M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	ar, err := mc.Activate(ctx, &mountsapi.ActivateRequest{
		Name: "img", Temporary: true, Labels: map[string]string{"purpose": "test"},
		Mounts: []*types.Mount{{Type: "ext4", Source: img, Options: []string{"ro", "loop"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	info := ar.Info
	if len(info.Active) != 1 || !strings.HasPrefix(info.Active[0].MountPoint, mountsDir(d)+"/") || len(info.System) != 1 || info.System[0].Source != info.Active[0].MountPoint {
		t.Fatalf("activation %v", info)
	}
	if b, err := os.ReadFile(filepath.Join(info.Active[0].MountPoint, "hello")); err != nil || string(b) != "from ext4" {
		t.Errorf("the image through its mount point: %q %v", b, err)
	}
	wantGRPCCode(t, func() error {
		_, err := mc.Activate(ctx, &mountsapi.ActivateRequest{Name: "img", Temporary: true, Mounts: []*types.Mount{{Type: "tmpfs", Source: "tmpfs"}}})
		return err
	}(), codes.AlreadyExists, `"img"`)

	// A restart keeps the activation and its mount.
	d.Stop()
	d = startForTasks(t, hulltest.Options{Dir: dir})
	c, ctx = newClient(t, d, "mnt")
	mc = mountsapi.NewMountsClient(c.Conn())
	ir, err := mc.Info(ctx, &mountsapi.InfoRequest{Name: "img"})
	if err != nil || ir.Info.Active[0].MountPoint != info.Active[0].MountPoint || ir.Info.Labels["purpose"] != "test" {
		t.Fatalf("info after a restart: %v %v", ir, err)
	}
	if got := listActivations(t, ctx, mc, "labels.purpose==test"); !slices.Equal(got, []string{"img"}) {
		t.Errorf("list: %v", got)
	}
	if _, err := mc.Deactivate(ctx, &mountsapi.DeactivateRequest{Name: "img"}); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("losetup", "-j", img).Output(); len(out) != 0 {
		t.Errorf("loop device left after deactivate: %s", out)
	}

	// Bad input.
	_, err = mc.Activate(ctx, &mountsapi.ActivateRequest{Name: "bad", Temporary: true, Mounts: []*types.Mount{{Type: "nosuchfs", Source: "x"}}})
	wantGRPCCode(t, err, codes.InvalidArgument, `"nosuchfs"`)
	_, err = mc.Activate(ctx, &mountsapi.ActivateRequest{Name: "idx", Mounts: []*types.Mount{{Type: "tmpfs", Source: "tmpfs"}, {Type: "format/bind", Source: "{{ mount 5 }}"}}})
	wantGRPCCode(t, err, codes.InvalidArgument, "index 5")
	_, err = mc.Activate(ctx, &mountsapi.ActivateRequest{Name: "plain", Mounts: []*types.Mount{{Type: "tmpfs", Source: "tmpfs"}}})
	wantGRPCCode(t, err, codes.Unimplemented)
	_, err = mc.Deactivate(ctx, &mountsapi.DeactivateRequest{Name: "nosuch"})
	wantGRPCCode(t, err, codes.NotFound, `"nosuch"`)

	// A task over a formatted rootfs: hulld mounts the snapshot's
	// overlay and gives the shim a bind of it.
	ref := "example.test/busybox:mounts"
	importWithCtr(t, d, "mnt", ref, busyboxImage(t))
	image, err := c.GetImage(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range taskRuntimes(t) {
		t.Run(rt, func(t *testing.T) { formattedRootfsTask(t, ctx, c, mc, image, rt, mountsDir(d)) })
	}
	assertNoLeaks(t, d)
}

// formattedRootfsTask runs a task under runtime rt whose rootfs is the
// snapshot's overlay followed by a formatted bind of it: hulld mounts the
// overlay, the shim gets the bind.
func formattedRootfsTask(t *testing.T, ctx context.Context, c *client.Client, mc mountsapi.MountsClient, image *client.Image, rt, dir string) {
	id := "fmt-" + strings.ReplaceAll(rt, ".", "-")
	ct, err := c.NewContainer(ctx, id, client.WithImage(image), client.WithNewSnapshot(id, image), client.WithRuntime(rt, nil),
		client.WithNewSpec(oci.WithImageConfig(image), oci.WithProcessArgs("sh", "-c", "test -x /bin/sh && exit 7")))
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Delete(ctx, client.WithSnapshotCleanup)
	ms, err := c.SnapshotService("overlayfs").Mounts(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	rootfs := append(ms, mount.Mount{Type: "format/bind", Source: "{{ mount 0 }}", Options: []string{"rbind"}})
	task, err := ct.NewTask(ctx, cio.NullIO, client.WithRootFS(rootfs))
	if err != nil {
		t.Fatal(err)
	}
	ir, err := mc.Info(ctx, &mountsapi.InfoRequest{Name: id})
	if err != nil {
		t.Fatalf("the task's activation: %v", err)
	}
	if ir.Info.Labels["containerd.io/gc.bref.container"] != id || len(ir.Info.Active) != 1 || ir.Info.Active[0].Mount.Type != "overlay" {
		t.Errorf("the task's activation: %v", ir.Info)
	}
	exitc := mustWait(t, ctx, "task "+id, task)
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if st := waitExit(t, "task "+id, exitc); st.Code != 7 {
		t.Errorf("task over the formatted rootfs exited %d (%v), want 7", st.Code, st.Err)
	}
	if _, err := task.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = mc.Info(ctx, &mountsapi.InfoRequest{Name: id})
	wantGRPCCode(t, err, codes.NotFound, `"`+id+`"`)
	if left, _ := mount.MountedUnder(dir); len(left) != 0 {
		t.Errorf("mounted after the task's delete: %v", left)
	}
}
