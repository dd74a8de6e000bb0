package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
)

// shimRunFloor runs one container through a shim binary the way any
// daemon using that shim must, and nothing else: the bundle with its spec,
// the shim's start with containerd 2.4's bootstrap parameters, then
// Create (the rootfs an overlay over a prepared busybox tree, as a
// snapshotter gives it), Start, Wait, Delete and Shutdown over ttrpc. No
// records, no snapshots, no stdio, no events kept (a ttrpc server takes
// the shim's and drops them). It is the floor under `run --rm` with that
// shim: what is left above it is the daemon's and the client's.
type shimRunFloor struct {
	shim, dir, lower, runcRoot, events, sockets string
	spec                                        []byte
	n                                           int
	// phases are the times of the last run's steps, by name: "start"
	// (the shim's start command), "create", "start+wait" (Start and the
	// Wait that returns at the exit) and "delete".
	phases map[string]time.Duration
}

// newShimRunFloor prepares the floor for shim (a binary path), with a
// busybox tree from runcPodFloor's bundle, whose spec runs args.
func newShimRunFloor(b *testing.B, shim string, args ...string) *shimRunFloor {
	b.Helper()
	rf := newRuncPodFloor(b)
	if err := rf.writeSpec(rf.ctr, func(ns []specs.LinuxNamespace) []specs.LinuxNamespace { return ns }, args...); err != nil {
		b.Fatal(err)
	}
	spec, err := os.ReadFile(filepath.Join(rf.ctr, "config.json"))
	if err != nil {
		b.Fatal(err)
	}
	f := &shimRunFloor{shim: shim, dir: b.TempDir(), lower: filepath.Join(rf.ctr, "rootfs"), spec: spec}
	f.runcRoot = filepath.Join(f.dir, "runc")
	// Short: a 2.3+ shim names its socket with 64 characters, which
	// sun_path's 108 bytes must hold with the directory.
	if f.sockets, err = os.MkdirTemp("/tmp", "sf"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(f.sockets) })
	f.events = filepath.Join(f.sockets, "ev")
	l, err := net.Listen("unix", f.events)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		b.Fatal(err)
	}
	eventsapi.RegisterTTRPCEventsService(srv, dropEvents{})
	go srv.Serve(context.Background(), l)
	b.Cleanup(func() { srv.Close() })
	return f
}

// dropEvents takes the shim's events and keeps none.
type dropEvents struct{}

func (dropEvents) Forward(context.Context, *eventsapi.ForwardRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

// once runs one container of the floor (the process newShimRunFloor was
// given) and returns the time from writing its spec to the shim's answer
// to Delete. The Shutdown after it and removing the bundle are not timed.
func (f *shimRunFloor) once() (took time.Duration, err error) {
	f.n++
	const ns = "floor"
	id := fmt.Sprintf("shimfloor-%d", f.n)
	bundle := filepath.Join(f.dir, id)
	upper, work := filepath.Join(f.dir, id+"-upper"), filepath.Join(f.dir, id+"-work")
	for _, d := range []string{bundle, filepath.Join(bundle, "rootfs"), upper, work} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return 0, err
		}
	}
	defer func() {
		syscall.Unmount(filepath.Join(bundle, "rootfs"), syscall.MNT_DETACH)
		for _, d := range []string{bundle, upper, work} {
			os.RemoveAll(d)
		}
	}()
	opts, err := proto.Marshal(&runcoptions.Options{Root: f.runcRoot})
	if err != nil {
		return 0, err
	}
	options := &anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: opts}
	params, err := proto.Marshal(&bootapi.BootstrapParams{
		InstanceID: id, Namespace: ns, LogLevel: bootapi.LogLevel_LOG_LEVEL_INFO, ContainerdVersion: "v2.4.2",
		ContainerdTtrpcAddress: f.events, ContainerdGrpcAddress: f.events, ContainerdBinary: "/bin/true",
		SocketDir: &f.sockets, Extensions: []*bootapi.Extension{{Value: options}},
	})
	if err != nil {
		return 0, err
	}
	begin := time.Now()
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), f.spec, 0o600); err != nil {
		return 0, err
	}
	// The shim logs to a FIFO in its bundle, which it needs a reader of.
	if err := syscall.Mkfifo(filepath.Join(bundle, "log"), 0o600); err != nil {
		return 0, err
	}
	logf, err := os.OpenFile(filepath.Join(bundle, "log"), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return 0, err
	}
	var shimLog bytes.Buffer
	logged := make(chan struct{})
	go func() { shimLog.ReadFrom(logf); close(logged) }()
	defer func() {
		logf.Close()
		<-logged
		if err != nil {
			err = fmt.Errorf("%w; the shim logged: %s", err, shimLog.String())
		}
	}()
	cmd := exec.Command(f.shim, "-namespace", ns, "-address", f.events, "-publish-binary", "/bin/true", "-id", id, "start")
	cmd.Dir = bundle
	cmd.Env = append(os.Environ(), "GOMAXPROCS=2", "MAX_SHIM_VERSION=2", "TTRPC_ADDRESS="+f.events,
		"GRPC_ADDRESS="+f.events, "NAMESPACE="+ns)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdin = bytes.NewReader(params)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("%s start: %v: %s", f.shim, err, stderr.String())
	}
	f.phases = map[string]time.Duration{"start": time.Since(begin)}
	mark := time.Now()
	var res bootapi.BootstrapResult
	if err := proto.Unmarshal(out, &res); err != nil || res.Version != 3 {
		return 0, fmt.Errorf("%s start answered %q (%v): the floor speaks task API v3 only", f.shim, out, err)
	}
	conn, err := net.Dial("unix", res.Address[len("unix://"):])
	if err != nil {
		return 0, err
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	task := taskapi.NewTTRPCTaskClient(client)
	ctx := ttrpc.WithMetadata(context.Background(), ttrpc.MD{"containerd-namespace-ttrpc": []string{ns}})
	defer func() {
		if err != nil { // nothing of the container may stay
			task.Delete(ctx, &taskapi.DeleteRequest{ID: id})
			task.Shutdown(ctx, &taskapi.ShutdownRequest{ID: id, Now: true})
		}
	}()
	rootfs := []*types.Mount{{Type: "overlay", Source: "overlay",
		Options: []string{"lowerdir=" + f.lower, "upperdir=" + upper, "workdir=" + work}}}
	if _, err := task.Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: bundle, Rootfs: rootfs, Options: options}); err != nil {
		return 0, fmt.Errorf("shim Create: %w", err)
	}
	f.phases["create"] = time.Since(mark)
	mark = time.Now()
	// Waiting from before Start, as ctr does.
	waited := make(chan error, 1)
	go func() {
		_, err := task.Wait(ctx, &taskapi.WaitRequest{ID: id})
		waited <- err
	}()
	if _, err := task.Start(ctx, &taskapi.StartRequest{ID: id}); err != nil {
		return 0, fmt.Errorf("shim Start: %w", err)
	}
	if err := <-waited; err != nil {
		return 0, fmt.Errorf("shim Wait: %w", err)
	}
	f.phases["start+wait"] = time.Since(mark)
	mark = time.Now()
	if _, err := task.Delete(ctx, &taskapi.DeleteRequest{ID: id}); err != nil {
		return 0, fmt.Errorf("shim Delete: %w", err)
	}
	f.phases["delete"] = time.Since(mark)
	took = time.Since(begin)
	// The shim exits on Shutdown and the connection ends with it. A
	// daemon can answer its client's Delete before, so this is not timed.
	task.Shutdown(ctx, &taskapi.ShutdownRequest{ID: id})
	return took, nil
}
