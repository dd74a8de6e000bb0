package tasks

import (
	"fmt"
	"github.com/hullrt/hull/internal/servicetest"
	"strings"
	"testing"

	api "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"

	"github.com/hullrt/hull/core/runtime"
	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/plugins/services"
)

// newClient serves the tasks adapter, built by its registration over a
// tasks service plugin made of Local over rt, and returns a client.
func newClient(t *testing.T, rt *fakeRuntime) api.TasksClient {
	t.Helper()
	l, _, _ := newLocal(t, rt)
	set := &plugin.Set{}
	set.Add(&plugin.Plugin{Registration: &plugin.Registration{Type: plugin.ServicePlugin, ID: services.TasksService}, Instance: l})
	reg := &plugin.Registry{}
	Register(reg)
	var svc services.GRPCService
	for _, r := range reg.Graph(func(r *plugin.Registration) bool { return r.Type != plugin.GRPCPlugin }) {
		p := set.Init(r, &plugin.InitContext{Context: t.Context()})
		if p.Err != nil {
			t.Fatal(p.Err)
		}
		svc = p.Instance.(services.GRPCService)
	}
	if svc == nil {
		t.Fatal("no tasks gRPC plugin registered")
	}
	return api.NewTasksClient(servicetest.Serve(t, svc))
}

func TestServiceOverGRPC(t *testing.T) {
	client := newClient(t, newFakeRuntime())
	ctx := servicetest.ClientCtx(t, "ns1")

	// The header's namespace reaches the service: c1 lives in ns1.
	cr, err := client.Create(ctx, &api.CreateTaskRequest{ContainerID: "c1"})
	if err != nil || cr.ContainerID != "c1" || cr.Pid != 4242 {
		t.Fatalf("Create: %v, %v", cr, err)
	}
	_, err = client.Create(servicetest.ClientCtx(t, "ns2"), &api.CreateTaskRequest{ContainerID: "c1"})
	servicetest.WantCode(t, err, codes.NotFound, `"c1"`)

	get, err := client.Get(ctx, &api.GetRequest{ContainerID: "c1"})
	if err != nil || get.Process.Pid != 4242 || get.Process.Status != tasktypes.Status_CREATED {
		t.Fatalf("Get: %v, %v", get, err)
	}
	list, err := client.List(ctx, &api.ListTasksRequest{Filter: "status==created"})
	if err != nil || len(list.Tasks) != 1 || list.Tasks[0].ID != "c1" {
		t.Fatalf("List: %v, %v", list, err)
	}
	_, err = client.List(ctx, &api.ListTasksRequest{Filter: "id~=["})
	servicetest.WantCode(t, err, codes.InvalidArgument, "id~=[")
	_, err = client.Create(ctx, &api.CreateTaskRequest{ContainerID: "c1"})
	servicetest.WantCode(t, err, codes.AlreadyExists, `"c1"`)

	_, err = client.Exec(ctx, &api.ExecProcessRequest{ContainerID: "c1", Spec: specAny})
	servicetest.WantCode(t, err, codes.InvalidArgument, `"c1"`)
	_, err = client.Checkpoint(ctx, &api.CheckpointTaskRequest{ContainerID: "c1"})
	servicetest.WantCode(t, err, codes.Unimplemented, `"c1"`)
}

func TestServiceErrorCodes(t *testing.T) {
	// Every errdefs class a task returns reaches the client as its gRPC
	// code, with the message naming the value and ending in errdefs'
	// words for the class exactly once, as containerd's messages do.
	for _, tc := range []struct {
		class error
		code  codes.Code
	}{
		{errdefs.ErrNotFound, codes.NotFound},
		{errdefs.ErrAlreadyExists, codes.AlreadyExists},
		{errdefs.ErrInvalidArgument, codes.InvalidArgument},
		{errdefs.ErrFailedPrecondition, codes.FailedPrecondition},
		{errdefs.ErrConflict, codes.FailedPrecondition},
		{errdefs.ErrUnavailable, codes.Unavailable},
		{errdefs.ErrNotImplemented, codes.Unimplemented},
		{fmt.Errorf("plain"), codes.Unknown},
	} {
		task := taskWith("c1", "", runtime.State{})
		task.errs = map[string]error{"Start": fmt.Errorf("start of process %q: %w", "ex7", tc.class)}
		client := newClient(t, newFakeRuntime(task))
		_, err := client.Start(servicetest.ClientCtx(t, "ns1"), &api.StartRequest{ContainerID: "c1", ExecID: "ex7"})
		servicetest.WantCode(t, err, tc.code, `start of process "ex7"`)
		if tc.code != codes.Unknown {
			msg := err.Error()
			if !strings.HasSuffix(msg, ": "+tc.class.Error()) || strings.Count(msg, tc.class.Error()) != 1 {
				t.Errorf("message %q does not end in %q exactly once", msg, tc.class.Error())
			}
		}
	}
}

func TestServiceEveryMethod(t *testing.T) {
	// Each adapter method reaches Local and maps its error: with no task,
	// every call is NotFound naming the container.
	rt := newFakeRuntime()
	rt.getErr = fmt.Errorf("task %q: %w", "c9", errdefs.ErrNotFound)
	rt.deleteErr = rt.getErr
	rt.tasksErr = fmt.Errorf("runtime %q: %w", "task", errdefs.ErrUnavailable)
	client := newClient(t, rt)
	ctx := servicetest.ClientCtx(t, "ns1")
	for name, call := range map[string]func() error{
		"Create": func() error { _, err := client.Create(ctx, &api.CreateTaskRequest{ContainerID: "c9"}); return err },
		"Start":  func() error { _, err := client.Start(ctx, &api.StartRequest{ContainerID: "c9"}); return err },
		"Delete": func() error { _, err := client.Delete(ctx, &api.DeleteTaskRequest{ContainerID: "c9"}); return err },
		"DeleteProcess": func() error {
			_, err := client.DeleteProcess(ctx, &api.DeleteProcessRequest{ContainerID: "c9"})
			return err
		},
		"Get":  func() error { _, err := client.Get(ctx, &api.GetRequest{ContainerID: "c9"}); return err },
		"Kill": func() error { _, err := client.Kill(ctx, &api.KillRequest{ContainerID: "c9"}); return err },
		"Exec": func() error {
			_, err := client.Exec(ctx, &api.ExecProcessRequest{ContainerID: "c9", ExecID: "e", Spec: specAny})
			return err
		},
		"ResizePty": func() error { _, err := client.ResizePty(ctx, &api.ResizePtyRequest{ContainerID: "c9"}); return err },
		"CloseIO":   func() error { _, err := client.CloseIO(ctx, &api.CloseIORequest{ContainerID: "c9"}); return err },
		"Pause":     func() error { _, err := client.Pause(ctx, &api.PauseTaskRequest{ContainerID: "c9"}); return err },
		"Resume":    func() error { _, err := client.Resume(ctx, &api.ResumeTaskRequest{ContainerID: "c9"}); return err },
		"ListPids":  func() error { _, err := client.ListPids(ctx, &api.ListPidsRequest{ContainerID: "c9"}); return err },
		"Checkpoint": func() error {
			_, err := client.Checkpoint(ctx, &api.CheckpointTaskRequest{ContainerID: "c9"})
			return err
		},
		"Update": func() error { _, err := client.Update(ctx, &api.UpdateTaskRequest{ContainerID: "c9"}); return err },
		"Wait":   func() error { _, err := client.Wait(ctx, &api.WaitRequest{ContainerID: "c9"}); return err },
	} {
		t.Run(name, func(t *testing.T) { servicetest.WantCode(t, call(), codes.NotFound, `"c9"`) })
	}
	_, err := client.List(ctx, &api.ListTasksRequest{})
	servicetest.WantCode(t, err, codes.Unavailable, `"task"`)
	_, err = client.Metrics(ctx, &api.MetricsRequest{})
	servicetest.WantCode(t, err, codes.Unavailable, `"task"`)
}

func TestRegisterServicePlugin(t *testing.T) {
	// The service plugin is Local over the runtime plugin "task", the
	// containers service and the snapshots service.
	l, _, _ := newLocal(t, newFakeRuntime())
	set := &plugin.Set{}
	set.Add(&plugin.Plugin{Registration: &plugin.Registration{Type: plugin.RuntimePluginV2, ID: "task"}, Instance: l.runtime})
	set.Add(&plugin.Plugin{Registration: &plugin.Registration{Type: plugin.ServicePlugin, ID: services.ContainersService}, Instance: l.containers})
	set.Add(&plugin.Plugin{Registration: &plugin.Registration{Type: plugin.ServicePlugin, ID: services.SnapshotsService}, Instance: l.snapshotters})
	reg := &plugin.Registry{}
	Register(reg)
	for _, r := range reg.Graph(func(r *plugin.Registration) bool { return r.Type != plugin.ServicePlugin }) {
		p := set.Init(r, &plugin.InitContext{Context: t.Context()})
		if p.Err != nil {
			t.Fatal(p.Err)
		}
		got, ok := p.Instance.(*Local)
		if !ok || got.runtime != l.runtime || got.containers != l.containers || got.snapshotters != l.snapshotters {
			t.Errorf("service plugin instance %#v, want Local over the three plugins", p.Instance)
		}
	}
	// Without the runtime plugin the service does not start.
	set = &plugin.Set{}
	for _, r := range reg.Graph(func(r *plugin.Registration) bool { return r.Type != plugin.ServicePlugin }) {
		if p := set.Init(r, &plugin.InitContext{Context: t.Context()}); !errdefs.IsNotFound(p.Err) {
			t.Errorf("init without a runtime: %v, want NotFound", p.Err)
		}
	}
}
