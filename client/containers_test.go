package client_test

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/client/oci"
	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/testimage"
)

// importImage imports a small two-layer image as ref, without unpacking.
func importImage(t *testing.T, ctx context.Context, c *client.Client, ref string) *testimage.Image {
	t.Helper()
	img := testimage.New([]string{"/bin/app", "--serve"},
		[]testimage.File{{Name: "etc/", Type: '5'}, {Name: "etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")}, {Name: "etc/group", Data: []byte("root:x:0:\napp:x:1000:\n")}},
		[]testimage.File{{Name: "bin/", Type: '5'}, {Name: "bin/app", Mode: 0o755, Data: []byte("#!/bin/sh\n")}},
	)
	var archive bytes.Buffer
	if err := testimage.WriteOCIArchive(&archive, ref, img); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Import(ctx, &archive); err != nil {
		t.Fatal(err)
	}
	return img
}

func TestImage(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	c := newClient(t, d)
	ctx := testCtx(t)
	ti := importImage(t, ctx, c, "example.test/app:1")
	img, err := c.GetImage(ctx, "example.test/app:1")
	if err != nil {
		t.Fatal(err)
	}
	var _ oci.Image = img // what spec options read
	if img.Name() != "example.test/app:1" || img.Target().Digest != ti.Manifest.Desc.Digest {
		t.Fatalf("image %s -> %v", img.Name(), img.Target())
	}
	cfg, err := img.Config(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Config.Cmd) != 2 || cfg.Config.Cmd[0] != "/bin/app" || len(cfg.RootFS.DiffIDs) != 2 {
		t.Fatalf("config %+v", cfg)
	}
	chain, err := img.ChainID(ctx)
	if err != nil || chain == "" || chain == cfg.RootFS.DiffIDs[1] {
		t.Fatalf("chain id %q %v", chain, err)
	}
	if ok, err := img.IsUnpacked(ctx, ""); err != nil || ok {
		t.Fatalf("IsUnpacked before Unpack: %v %v", ok, err)
	}
	got, err := img.Unpack(ctx, "")
	if err != nil || got != chain {
		t.Fatalf("Unpack = %q, %v; want %s", got, err, chain)
	}
	if ok, err := img.IsUnpacked(ctx, ""); err != nil || !ok {
		t.Fatalf("IsUnpacked after Unpack: %v %v", ok, err)
	}
	_, err = c.GetImage(ctx, "example.test/none:1")
	wantErr(t, err, errdefs.IsNotFound, "NotFound", "example.test/none:1")
}

func TestContainers(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	c := newClient(t, d)
	ctx := testCtx(t)
	importImage(t, ctx, c, "example.test/app:1")
	img, err := c.GetImage(ctx, "example.test/app:1")
	if err != nil {
		t.Fatal(err)
	}
	// WithNewSnapshot unpacks the image it is not; the spec resolves the
	// user from the snapshot's /etc/passwd.
	ext := containers.NewAny("example.test/hook", []byte(`{"path":"/ext"}`))
	ct, err := c.NewContainer(ctx, "app",
		client.WithImage(img),
		client.WithNewSnapshot("app-rootfs", img),
		client.WithNewSpec(oci.WithImageConfig(img), oci.WithUser("app")),
		client.WithRuntime("io.containerd.runc.v2", nil),
		client.WithContainerLabels(map[string]string{"tier": "web"}),
		client.WithContainerExtension("hook", ext),
	)
	if err != nil {
		t.Fatal(err)
	}
	info, err := ct.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Image != "example.test/app:1" || info.SnapshotKey != "app-rootfs" || info.Snapshotter == "" ||
		info.Runtime.Name != "io.containerd.runc.v2" || info.Labels["tier"] != "web" || info.Spec.GetTypeUrl() != containers.SpecTypeURL {
		t.Fatalf("record %+v", info)
	}
	spec, err := ct.Spec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.Process.Args) != 2 || spec.Process.Args[0] != "/bin/app" || spec.Process.User.UID != 1000 {
		t.Fatalf("spec process %+v", spec.Process)
	}
	exts, err := ct.Extensions(ctx)
	if err != nil || exts["hook"].GetTypeUrl() != ext.GetTypeUrl() {
		t.Fatalf("extensions %v %v", exts, err)
	}
	if got, err := ct.Image(ctx); err != nil || got.Name() != "example.test/app:1" {
		t.Fatalf("Image: %v %v", got, err)
	}
	labels, err := ct.SetLabels(ctx, map[string]string{"stage": "test", "tier": ""})
	if err != nil || labels["stage"] != "test" || labels["tier"] != "" || len(labels) != 1 {
		t.Fatalf("SetLabels: %v %v", labels, err)
	}

	// A container with the default runtime and an existing snapshot.
	// The lease keeps the garbage collector off the snapshot, before the
	// container record holds it and after its deletion: only the delete
	// itself could remove it then.
	lctx, release, err := c.WithLease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SnapshotService(info.Snapshotter).Prepare(lctx, "bare-rootfs", ""); err != nil {
		t.Fatal(err)
	}
	bare, err := c.NewContainer(ctx, "bare",
		client.WithContainerSnapshotter(info.Snapshotter), client.WithSnapshot("bare-rootfs"),
		client.WithSpec(&specs.Spec{Version: specs.Version, Process: &specs.Process{Args: []string{"/bin/true"}}}))
	if err != nil {
		t.Fatal(err)
	}
	if bi, _ := bare.Info(ctx); bi.Runtime.Name != client.DefaultRuntime || bi.Image != "" {
		t.Fatalf("bare record %+v", bi)
	}
	if _, err := bare.Image(ctx); !errdefs.IsNotFound(err) {
		t.Fatalf("Image of a container without one: %v", err)
	}

	_, err = c.NewContainer(ctx, "app", client.WithSpec(&specs.Spec{}))
	wantErr(t, err, errdefs.IsAlreadyExists, "AlreadyExists", `"app"`)
	_, err = c.NewContainer(ctx, "nospec")
	wantErr(t, err, errdefs.IsInvalidArgument, "InvalidArgument", "spec")
	_, err = c.NewContainer(ctx, "bad id", client.WithSpec(&specs.Spec{}))
	wantErr(t, err, errdefs.IsInvalidArgument, "InvalidArgument", `"bad id"`)
	_, err = c.NewContainer(ctx, "nosnap", client.WithSnapshot("missing"), client.WithSpec(&specs.Spec{}))
	wantErr(t, err, errdefs.IsNotFound, "NotFound", "missing")
	_, err = c.LoadContainer(ctx, "nope")
	wantErr(t, err, errdefs.IsNotFound, "NotFound", `"nope"`)

	list, err := c.Containers(ctx, "labels.stage==test")
	if err != nil || len(list) != 1 || list[0].ID() != "app" {
		t.Fatalf("Containers(labels.stage==test): %v %v", list, err)
	}
	if list, _ := c.Containers(ctx); len(list) != 2 {
		t.Fatalf("Containers(): %v", list)
	}
	loaded, err := c.LoadContainer(ctx, "bare")
	if err != nil {
		t.Fatal(err)
	}
	err = loaded.Update(ctx, func(_ context.Context, _ *client.Client, r *containers.Container) error {
		r.Image = "example.test/other:2"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if bi, _ := bare.Info(ctx); bi.Image != "example.test/other:2" || bi.SnapshotKey != "bare-rootfs" {
		t.Fatalf("after Update %+v", bi)
	}

	// hulld has no tasks service yet or no task for the container: the
	// delete goes ahead, and takes the snapshot along.
	if err := ct.Delete(ctx, client.WithSnapshotCleanup); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SnapshotService(info.Snapshotter).Stat(ctx, "app-rootfs"); !errdefs.IsNotFound(err) {
		t.Fatalf("snapshot after WithSnapshotCleanup: %v", err)
	}
	if err := bare.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	// Without cleanup the delete leaves the snapshot (for gc to take
	// once nothing holds it: here the lease still does).
	if _, err := c.SnapshotService(info.Snapshotter).Stat(ctx, "bare-rootfs"); err != nil {
		t.Fatalf("snapshot removed by a delete without cleanup: %v", err)
	}
	if err := release(ctx); err != nil {
		t.Fatal(err)
	}
	wantErr(t, ct.Delete(ctx), errdefs.IsNotFound, "NotFound", `"app"`)
}

// fakeTasks is a tasks service that answers like a daemon without
// checkpoint support, with a task that never exits, and lists tasks the
// way containerd 1.6 does.
type fakeTasks struct {
	tasksapi.UnimplementedTasksServer
}

func (fakeTasks) Wait(ctx context.Context, _ *tasksapi.WaitRequest) (*tasksapi.WaitResponse, error) {
	<-ctx.Done()
	return nil, status.FromContextError(ctx.Err()).Err()
}

func (fakeTasks) List(context.Context, *tasksapi.ListTasksRequest) (*tasksapi.ListTasksResponse, error) {
	return &tasksapi.ListTasksResponse{Tasks: []*task.Process{{ID: "c1", Pid: 42, Status: task.Status_RUNNING}}}, nil
}

func (fakeTasks) Get(_ context.Context, req *tasksapi.GetRequest) (*tasksapi.GetResponse, error) {
	return &tasksapi.GetResponse{Process: &task.Process{ID: req.ContainerID, Pid: 42, Status: task.Status_RUNNING}}, nil
}

func (fakeTasks) Kill(context.Context, *tasksapi.KillRequest) (*emptypb.Empty, error) {
	return nil, status.Error(codes.NotFound, "process already finished")
}

// TestTaskErrors checks error mapping and the Wait channel against a fake
// tasks service.
func TestTaskErrors(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "fake.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	tasksapi.RegisterTasksServer(srv, fakeTasks{})
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	c, err := client.New(sock, client.WithDefaultNamespace("test"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	// A container record is not needed to load a task over the raw API.
	ts, err := c.Tasks(ctx, "")
	if err != nil || len(ts) != 1 || ts[0].ContainerID != "c1" || ts[0].ExecID != "" || ts[0].Status.Status != client.Running {
		t.Fatalf("Tasks: %+v %v", ts, err)
	}
	task := loadFakeTask(t, c)
	_, err = task.Checkpoint(ctx)
	wantErr(t, err, errdefs.IsNotImplemented, "NotImplemented")
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	ch, err := task.Wait(wctx)
	if err != nil {
		t.Fatal(err)
	}
	st := <-ch
	if st.Code != client.UnknownExitStatus || st.Err == nil {
		t.Fatalf("Wait after its context ended: %+v", st)
	}
	if _, ok := <-ch; ok {
		t.Fatal("Wait channel not closed after the status")
	}
	wantErr(t, task.Kill(ctx, syscall.SIGTERM), errdefs.IsNotFound, "NotFound", "already finished")
	_, err = task.Delete(ctx)
	wantErr(t, err, errdefs.IsFailedPrecondition, "FailedPrecondition", "running")
}

// loadFakeTask loads task c1 through a container whose record the fake
// daemon does not have: Container.Task needs only the tasks service.
func loadFakeTask(t *testing.T, c *client.Client) *client.Task {
	t.Helper()
	ct := client.ContainerForID(c, "c1")
	task, err := ct.Task(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if task.Pid() != 42 || task.ID() != "c1" {
		t.Fatalf("loaded task %s pid %d", task.ID(), task.Pid())
	}
	return task
}
