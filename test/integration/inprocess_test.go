package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/client/cio"
	"github.com/hullrt/hull/client/oci"
	"github.com/hullrt/hull/config"
	"github.com/hullrt/hull/daemon"
	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/testimage"
)

// TestClientInProcess runs hulld inside the test process and drives it
// with the client library built over its service plugins
// (client.NewInProcess), the way the CRI plugin will: import, unpack, a
// container whose task prints and exits, events, introspection. A client
// over the daemon's socket then sees the same objects, so both paths reach
// the same services.
func TestClientInProcess(t *testing.T) {
	hulltest.RequireTools(t, "runc")
	shim := hulltest.Build(t, "containerd-shim-hull-v2", "github.com/hullrt/hull/cmd/containerd-shim-hull-v2")
	dir := t.TempDir()
	cfgText := fmt.Sprintf(`version = 3
root = %q
state = %q
[grpc]
address = %q
[plugins."io.containerd.runtime.v2.task".runtimes."io.containerd.hull.v2"]
binary = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), filepath.Join(dir, "state", "hull.sock"), shim)
	cfg, _, err := config.Parse([]byte(cfgText), filepath.Join(dir, "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dctx, stop := context.WithCancel(context.Background())
	d, err := daemon.New(dctx, cfg, daemon.Registry(), log)
	if err != nil {
		stop()
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- d.Serve(dctx, 5*time.Second) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() {
			t.Logf("hulld log:\n%s", logs.String())
		}
	})

	c, err := client.NewInProcess(d.Plugins())
	if err != nil {
		t.Fatal(err)
	}
	if c.Conn() != nil {
		t.Fatal("an in-process client has a connection")
	}
	const ns = "inprocess"
	ctx, cancel := context.WithTimeout(client.WithNamespace(context.Background(), ns), 2*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		cctx := client.WithNamespace(context.Background(), ns)
		cs, _ := c.Containers(cctx)
		for _, ct := range cs {
			if task, err := ct.Task(cctx, nil); err == nil {
				task.Delete(cctx, client.WithProcessKill)
			}
			ct.Delete(cctx, client.WithSnapshotCleanup)
		}
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", ns))
		for _, d := range dirs {
			os.Remove(d)
		}
	})

	// Without a namespace in the context there is no header to fall back
	// on: the service layer refuses, as it does over the socket.
	if _, err := c.ImageService().List(context.Background()); err == nil {
		t.Error("listing images without a namespace succeeded in process")
	}

	if v, err := c.Version(ctx); err != nil || v.Version == "" {
		t.Fatalf("version in process: %+v %v", v, err)
	}
	ps, err := c.Plugins(ctx, "type==io.containerd.service.v1")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) < 9 {
		t.Errorf("introspection in process lists %d service plugins, want the 9 core services: %+v", len(ps), ps)
	}

	var archive bytes.Buffer
	const ref = "example.test/busybox:inprocess"
	if err := testimage.WriteOCIArchive(&archive, ref, busyboxImage(t)); err != nil {
		t.Fatal(err)
	}
	imgs, err := c.Import(ctx, &archive)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].Name != ref {
		t.Fatalf("imported %+v, want %s", imgs, ref)
	}
	if _, err := c.Unpack(ctx, ref); err != nil {
		t.Fatal(err)
	}
	img, err := c.GetImage(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}

	evs, errs := hulltest.SubscribeReady(t, ctx, c.EventService(), `topic=="/tasks/exit"`)
	ct, err := c.NewContainer(ctx, "hello",
		client.WithImage(img),
		client.WithNewSnapshot("hello-rootfs", img),
		client.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("sh", "-c", "echo in process; exit 7")),
	)
	if err != nil {
		t.Fatal(err)
	}
	var stdout lockedBuffer
	task, err := ct.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, &stdout, io.Discard), cio.WithFIFODir(filepath.Join(dir, "fifo"))))
	if err != nil {
		t.Fatal(err)
	}
	exitc := mustWait(t, ctx, "in-process task", task)
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if st := waitExit(t, "in-process task", exitc); st.Code != 7 {
		t.Errorf("exit code %d, want 7", st.Code)
	}
	select {
	case env := <-evs:
		if env.Namespace != ns || env.Topic != "/tasks/exit" {
			t.Errorf("event %s in %q, want /tasks/exit in %q", env.Topic, env.Namespace, ns)
		}
	case err := <-errs:
		t.Fatalf("event subscription: %v", err)
	case <-ctx.Done():
		t.Fatal("no /tasks/exit event in process")
	}
	if _, err := task.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(stdout.String()); got != "in process" {
		t.Errorf("stdout %q, want %q", got, "in process")
	}

	// The socket serves the same services.
	remote, err := client.New(d.Address(), client.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	if _, err := remote.GetImage(ctx, ref); err != nil {
		t.Errorf("image imported in process, over the socket: %v", err)
	}
	rc, err := remote.LoadContainer(ctx, "hello")
	if err != nil {
		t.Fatalf("container created in process, over the socket: %v", err)
	}
	if err := rc.Delete(ctx, client.WithSnapshotCleanup); err != nil {
		t.Fatal(err)
	}
	if _, err := c.LoadContainer(ctx, "hello"); err == nil {
		t.Error("a container deleted over the socket is still there in process")
	}
}
