package tasks

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	api "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/core/runtime"
)

var (
	specAny    = &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", Value: []byte(`{"ociVersion":"1.1.0"}`)}
	optionsAny = &anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: []byte("record options")}
	rootMounts = []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/l", "upperdir=/u"}}}
)

// newLocal returns the tasks service over rt, with container "c1" in
// namespace "ns1" whose rootfs is snapshot "c1-snap" of the fake
// snapshotter.
func newLocal(t *testing.T, rt *fakeRuntime) (*Local, *fakeSnapshotters, context.Context) {
	t.Helper()
	ctx := namespaces.WithNamespace(t.Context(), "ns1")
	cs := &fakeContainers{}
	if _, err := cs.Create(ctx, containers.Container{
		ID: "c1", Runtime: containers.RuntimeInfo{Name: "io.containerd.runc.v2", Options: optionsAny},
		Spec: specAny, Snapshotter: "fake", SnapshotKey: "c1-snap",
	}); err != nil {
		t.Fatal(err)
	}
	sn := &fakeSnapshotters{mounts: map[string][]mount.Mount{"c1-snap": rootMounts}}
	return NewLocal(rt, cs, sn), sn, ctx
}

func TestCreateFromContainerRecord(t *testing.T) {
	rt := newFakeRuntime()
	l, sn, ctx := newLocal(t, rt)
	resp, err := l.Create(ctx, &api.CreateTaskRequest{
		ContainerID: "c1", RuntimePath: "/opt/shim", Stdin: "/fifo/in", Stdout: "/fifo/out", Stderr: "/fifo/err", Terminal: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.ContainerID != "c1" || resp.Pid != 4242 {
		t.Errorf("response %v, want container c1 and the runtime's pid 4242", resp)
	}
	if len(rt.created) != 1 {
		t.Fatalf("runtime got %d creates, want 1", len(rt.created))
	}
	got := rt.created[0]
	if got.ns != "ns1" || got.id != "c1" {
		t.Errorf("created %s/%s, want ns1/c1", got.ns, got.id)
	}
	o := got.opts
	if o.Runtime != "io.containerd.runc.v2" || o.RuntimePath != "/opt/shim" || string(o.Spec) != `{"ociVersion":"1.1.0"}` {
		t.Errorf("runtime %q path %q spec %q: want the record's runtime and spec and the request's path", o.Runtime, o.RuntimePath, o.Spec)
	}
	if want := (runtime.IO{Stdin: "/fifo/in", Stdout: "/fifo/out", Stderr: "/fifo/err", Terminal: true}); o.IO != want {
		t.Errorf("io %+v, want %+v", o.IO, want)
	}
	// No rootfs in the request: the container's snapshot gives it.
	if !reflect.DeepEqual(o.Rootfs, rootMounts) || !slices.Equal(sn.asked, []string{"c1-snap"}) {
		t.Errorf("rootfs %v from snapshots %v, want %v from c1-snap", o.Rootfs, sn.asked, rootMounts)
	}
	if !proto.Equal(o.Options.(*anypb.Any), optionsAny) {
		t.Errorf("options %v, want the record's %v", o.Options, optionsAny)
	}
}

func TestCreateRequestOverridesRootfsAndOptions(t *testing.T) {
	rt := newFakeRuntime()
	l, sn, ctx := newLocal(t, rt)
	reqOpts := &anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: []byte("request options")}
	_, err := l.Create(ctx, &api.CreateTaskRequest{
		ContainerID: "c1",
		Rootfs:      []*types.Mount{{Type: "bind", Source: "/src", Target: "/t", Options: []string{"rbind"}}},
		Options:     reqOpts,
	})
	if err != nil {
		t.Fatal(err)
	}
	o := rt.created[0].opts
	want := []mount.Mount{{Type: "bind", Source: "/src", Target: "/t", Options: []string{"rbind"}}}
	if !reflect.DeepEqual(o.Rootfs, want) {
		t.Errorf("rootfs %v, want the request's %v", o.Rootfs, want)
	}
	if len(sn.asked) != 0 {
		t.Errorf("snapshotter asked for %v although the request has a rootfs", sn.asked)
	}
	if !proto.Equal(o.Options.(*anypb.Any), reqOpts) {
		t.Errorf("options %v, want the request's", o.Options)
	}
}

func TestCreateErrors(t *testing.T) {
	t.Run("checkpoint", func(t *testing.T) {
		rt := newFakeRuntime()
		l, _, ctx := newLocal(t, rt)
		_, err := l.Create(ctx, &api.CreateTaskRequest{ContainerID: "c1", Checkpoint: &types.Descriptor{Digest: "sha256:aa"}})
		wantClass(t, err, errdefs.ErrNotImplemented, `"c1"`, "checkpoint")
		if len(rt.created) != 0 {
			t.Error("runtime asked to create a task restored from a checkpoint")
		}
	})
	t.Run("no container", func(t *testing.T) {
		l, _, ctx := newLocal(t, newFakeRuntime())
		_, err := l.Create(ctx, &api.CreateTaskRequest{ContainerID: "nope"})
		wantClass(t, err, errdefs.ErrNotFound, `"nope"`)
	})
	t.Run("other namespace", func(t *testing.T) {
		// The record lives in ns1: ns2 has no container c1.
		l, _, _ := newLocal(t, newFakeRuntime())
		_, err := l.Create(namespaces.WithNamespace(t.Context(), "ns2"), &api.CreateTaskRequest{ContainerID: "c1"})
		wantClass(t, err, errdefs.ErrNotFound, `"c1"`)
	})
	t.Run("unknown snapshotter", func(t *testing.T) {
		l, _, ctx := newLocal(t, newFakeRuntime())
		if _, err := l.containers.Create(ctx, containers.Container{ID: "c2", Snapshotter: "zfs", SnapshotKey: "k", Spec: specAny}); err != nil {
			t.Fatal(err)
		}
		_, err := l.Create(ctx, &api.CreateTaskRequest{ContainerID: "c2"})
		wantClass(t, err, errdefs.ErrNotFound, `"c2"`, `"zfs"`)
	})
	t.Run("missing snapshot", func(t *testing.T) {
		l, _, ctx := newLocal(t, newFakeRuntime())
		if _, err := l.containers.Create(ctx, containers.Container{ID: "c3", Snapshotter: "fake", SnapshotKey: "gone", Spec: specAny}); err != nil {
			t.Fatal(err)
		}
		_, err := l.Create(ctx, &api.CreateTaskRequest{ContainerID: "c3"})
		wantClass(t, err, errdefs.ErrNotFound, `"c3"`, `"gone"`, "fake")
	})
	t.Run("runtime", func(t *testing.T) {
		rt := newFakeRuntime()
		rt.createErr = fmt.Errorf("task %q exists: %w", "c1", errdefs.ErrAlreadyExists)
		l, _, ctx := newLocal(t, rt)
		_, err := l.Create(ctx, &api.CreateTaskRequest{ContainerID: "c1"})
		wantClass(t, err, errdefs.ErrAlreadyExists, `"c1"`)
	})
}

func TestCreateWithoutSnapshotOrSpec(t *testing.T) {
	// A record with neither a snapshot key nor a spec: no rootfs is looked
	// up, and the runtime gets an empty spec rather than a panic.
	rt := newFakeRuntime()
	l, sn, ctx := newLocal(t, rt)
	if _, err := l.containers.Create(ctx, containers.Container{ID: "bare", Runtime: containers.RuntimeInfo{Name: "io.containerd.hull.v2"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Create(ctx, &api.CreateTaskRequest{ContainerID: "bare"}); err != nil {
		t.Fatal(err)
	}
	o := rt.created[0].opts
	if o.Spec != nil || len(o.Rootfs) != 0 || len(sn.asked) != 0 || o.Runtime != "io.containerd.hull.v2" {
		t.Errorf("opts %+v (snapshots asked %v), want no spec, no rootfs, runtime io.containerd.hull.v2", o, sn.asked)
	}
}

// taskWith returns a task whose init process has state st.
func taskWith(id, rt string, st runtime.State) *fakeTask {
	st.ID = id
	return &fakeTask{id: id, runtime: rt, pid: st.Pid, states: map[string]runtime.State{"": st}}
}

func TestGetProcess(t *testing.T) {
	exited := time.Date(2024, 5, 6, 7, 8, 9, 10, time.UTC)
	task := taskWith("c1", "io.containerd.runc.v2", runtime.State{
		Pid: 10, Status: runtime.StatusStopped, ExitStatus: 3, ExitedAt: exited,
		IO: runtime.IO{Stdin: "i", Stdout: "o", Stderr: "e", Terminal: true},
	})
	task.states["ex1"] = runtime.State{ID: "c1", ExecID: "ex1", Pid: 11, Status: runtime.StatusRunning}
	l, _, ctx := newLocal(t, newFakeRuntime(task))

	resp, err := l.Get(ctx, &api.GetRequest{ContainerID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	want := &tasktypes.Process{
		ContainerID: "c1", ID: "c1", Pid: 10, Status: tasktypes.Status_STOPPED,
		Stdin: "i", Stdout: "o", Stderr: "e", Terminal: true, ExitStatus: 3, ExitedAt: resp.Process.ExitedAt,
	}
	if !proto.Equal(resp.Process, want) || !resp.Process.ExitedAt.AsTime().Equal(exited) {
		t.Errorf("init process %v, want %v exited at %v", resp.Process, want, exited)
	}

	resp, err = l.Get(ctx, &api.GetRequest{ContainerID: "c1", ExecID: "ex1"})
	if err != nil {
		t.Fatal(err)
	}
	// An exec'd process is named by its exec id; a running one has no
	// exit time.
	if p := resp.Process; p.ID != "ex1" || p.ContainerID != "c1" || p.Pid != 11 || p.Status != tasktypes.Status_RUNNING || p.ExitedAt != nil {
		t.Errorf("exec process %v", p)
	}

	_, err = l.Get(ctx, &api.GetRequest{ContainerID: "c1", ExecID: "nope"})
	wantClass(t, err, errdefs.ErrNotFound, `"nope"`)
	_, err = l.Get(ctx, &api.GetRequest{ContainerID: "none"})
	wantClass(t, err, errdefs.ErrNotFound, `"none"`)
}

func TestStatusToProto(t *testing.T) {
	for st, want := range map[runtime.Status]tasktypes.Status{
		runtime.StatusCreated: tasktypes.Status_CREATED, runtime.StatusRunning: tasktypes.Status_RUNNING,
		runtime.StatusStopped: tasktypes.Status_STOPPED, runtime.StatusPaused: tasktypes.Status_PAUSED,
		runtime.StatusPausing: tasktypes.Status_PAUSING, runtime.StatusUnknown: tasktypes.Status_UNKNOWN,
		"weird": tasktypes.Status_UNKNOWN,
	} {
		if got := statusToProto(st); got != want {
			t.Errorf("statusToProto(%q) = %v, want %v", st, got, want)
		}
	}
}

// listRuntime has three tasks of two runtimes in different states, and one
// that disappears between the listing and its state.
func listRuntime() *fakeRuntime {
	return newFakeRuntime(
		taskWith("a", "io.containerd.runc.v2", runtime.State{Pid: 10, Status: runtime.StatusRunning}),
		taskWith("b", "io.containerd.hull.v2", runtime.State{Pid: 20, Status: runtime.StatusStopped, ExitStatus: 1}),
		taskWith("c", "io.containerd.runc.v2", runtime.State{Pid: 30, Status: runtime.StatusPaused}),
		&fakeTask{id: "gone", runtime: "io.containerd.runc.v2", pid: 40}, // no state: NotFound
	)
}

func listIDs(ps []*tasktypes.Process) []string {
	var ids []string
	for _, p := range ps {
		ids = append(ids, p.ID)
	}
	return ids
}

func TestListFilters(t *testing.T) {
	l, _, ctx := newLocal(t, listRuntime())
	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{"", []string{"a", "b", "c"}}, // the vanished task is not listed
		{"   ", []string{"a", "b", "c"}},
		{"id==b", []string{"b"}},
		{"container_id==c", []string{"c"}},
		{"runtime==io.containerd.runc.v2", []string{"a", "c"}},
		{"status==stopped", []string{"b"}},
		{"status==paused", []string{"c"}},
		{"pid==20", []string{"b"}},
		{"pid==40", nil},
		{"runtime==io.containerd.runc.v2,status==running", []string{"a"}},
		{"nosuchfield==x", nil},
	} {
		resp, err := l.List(ctx, &api.ListTasksRequest{Filter: tc.filter})
		if err != nil {
			t.Fatalf("filter %q: %v", tc.filter, err)
		}
		if got := listIDs(resp.Tasks); !slices.Equal(got, tc.want) {
			t.Errorf("filter %q listed %v, want %v", tc.filter, got, tc.want)
		}
	}
	resp, err := l.List(ctx, &api.ListTasksRequest{Filter: "id==b"})
	if err != nil {
		t.Fatal(err)
	}
	if p := resp.Tasks[0]; p.ContainerID != "b" || p.Pid != 20 || p.Status != tasktypes.Status_STOPPED || p.ExitStatus != 1 {
		t.Errorf("listed %v, want b's state", p)
	}

	_, err = l.List(ctx, &api.ListTasksRequest{Filter: "id~=["})
	wantClass(t, err, errdefs.ErrInvalidArgument, "id~=[")
}

func TestListRuntimeError(t *testing.T) {
	rt := listRuntime()
	rt.tasksErr = fmt.Errorf("runtime %q: %w", "task", errdefs.ErrUnavailable)
	l, _, ctx := newLocal(t, rt)
	_, err := l.List(ctx, &api.ListTasksRequest{})
	wantClass(t, err, errdefs.ErrUnavailable, `"task"`)
}

func TestListHungShimIsUnknown(t *testing.T) {
	// A shim that does not answer State must not hold up the listing: its
	// task is listed as unknown with the pid the runtime knows, and the
	// others normally. A failing State that is not NotFound is unknown too.
	rt := listRuntime()
	rt.tasks["hung"] = &fakeTask{id: "hung", runtime: "io.containerd.runc.v2", pid: 50, hang: true}
	rt.tasks["broken"] = &fakeTask{id: "broken", pid: 60, errs: map[string]error{"State": errors.New("ttrpc: closed")}}
	l, _, ctx := newLocal(t, rt)

	start := time.Now()
	resp, err := l.List(ctx, &api.ListTasksRequest{})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if took < listStateTimeout || took > listStateTimeout+5*time.Second {
		t.Errorf("List took %v, want about listStateTimeout (%v)", took, listStateTimeout)
	}
	if got := listIDs(resp.Tasks); !slices.Equal(got, []string{"a", "b", "broken", "c", "hung"}) {
		t.Fatalf("listed %v", got)
	}
	for _, p := range resp.Tasks {
		switch p.ID {
		case "hung", "broken":
			if p.Status != tasktypes.Status_UNKNOWN || p.Pid != map[string]uint32{"hung": 50, "broken": 60}[p.ID] {
				t.Errorf("%s listed as %v, want unknown with its pid", p.ID, p)
			}
		default:
			if p.Status == tasktypes.Status_UNKNOWN {
				t.Errorf("%s listed as unknown", p.ID)
			}
		}
	}
}

func TestMetrics(t *testing.T) {
	rt := listRuntime()
	stats := &anypb.Any{TypeUrl: "io.containerd.cgroups.v2.Metrics", Value: []byte("stats")}
	for _, id := range []string{"a", "b", "c"} {
		rt.tasks[id].stats = stats
	}
	rt.tasks["gone"].errs = map[string]error{"Stats": fmt.Errorf("task gone: %w", errdefs.ErrNotFound)}
	l, _, ctx := newLocal(t, rt)

	before := time.Now()
	resp, err := l.Metrics(ctx, &api.MetricsRequest{Filters: []string{"runtime==io.containerd.runc.v2"}})
	if err != nil {
		t.Fatal(err)
	}
	// Metrics filter without state: a and c (gone has no stats).
	var ids []string
	for _, m := range resp.Metrics {
		ids = append(ids, m.ID)
		if !proto.Equal(m.Data, stats) {
			t.Errorf("metric of %s has data %v, want %v", m.ID, m.Data, stats)
		}
		if m.Timestamp.AsTime().Before(before.Add(-time.Second)) {
			t.Errorf("metric of %s stamped %v, before the call", m.ID, m.Timestamp.AsTime())
		}
	}
	if !slices.Equal(ids, []string{"a", "c"}) {
		t.Errorf("metrics of %v, want a and c", ids)
	}
	// status is not a metrics field (no state is read): nothing matches.
	resp, err = l.Metrics(ctx, &api.MetricsRequest{Filters: []string{"status==running"}})
	if err != nil || len(resp.Metrics) != 0 {
		t.Errorf("status filter gave %v, %v; want no metrics", resp, err)
	}

	rt.tasks["b"].errs = map[string]error{"Stats": fmt.Errorf("stats of %q: %w", "b", errdefs.ErrUnavailable)}
	_, err = l.Metrics(ctx, &api.MetricsRequest{})
	wantClass(t, err, errdefs.ErrUnavailable, `"b"`)
	_, err = l.Metrics(ctx, &api.MetricsRequest{Filters: []string{"id~=["}})
	wantClass(t, err, errdefs.ErrInvalidArgument)
	rt.tasksErr = errdefs.ErrUnavailable
	_, err = l.Metrics(ctx, &api.MetricsRequest{})
	wantClass(t, err, errdefs.ErrUnavailable)
}

func TestProcessCalls(t *testing.T) {
	exited := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	task := taskWith("c1", "io.containerd.runc.v2", runtime.State{Pid: 10, Status: runtime.StatusRunning})
	task.exit = runtime.Exit{Pid: 11, Status: 137, ExitedAt: exited}
	task.pids = []runtime.ProcessInfo{{Pid: 10}, {Pid: 11, Info: &anypb.Any{TypeUrl: "containerd.runc.v1.ProcessDetails", Value: []byte("ex1")}}}
	rt := newFakeRuntime(task)
	rt.exit = runtime.Exit{Pid: 10, Status: 2, ExitedAt: exited}
	l, _, ctx := newLocal(t, rt)

	start, err := l.Start(ctx, &api.StartRequest{ContainerID: "c1", ExecID: "ex1"})
	if err != nil || start.Pid != 11 {
		t.Errorf("Start: %v, %v; want the task's pid 11", start, err)
	}
	if _, err := l.Kill(ctx, &api.KillRequest{ContainerID: "c1", ExecID: "ex1", Signal: 9, All: true}); err != nil {
		t.Error(err)
	}
	if _, err := l.ResizePty(ctx, &api.ResizePtyRequest{ContainerID: "c1", ExecID: "ex1", Width: 80, Height: 24}); err != nil {
		t.Error(err)
	}
	if _, err := l.CloseIO(ctx, &api.CloseIORequest{ContainerID: "c1", ExecID: "ex1", Stdin: true}); err != nil {
		t.Error(err)
	}
	if _, err := l.Pause(ctx, &api.PauseTaskRequest{ContainerID: "c1"}); err != nil {
		t.Error(err)
	}
	if _, err := l.Resume(ctx, &api.ResumeTaskRequest{ContainerID: "c1"}); err != nil {
		t.Error(err)
	}
	res := &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources", Value: []byte("{}")}
	if _, err := l.Update(ctx, &api.UpdateTaskRequest{ContainerID: "c1", Resources: res, Annotations: map[string]string{"k": "v"}}); err != nil {
		t.Error(err)
	}
	spec := &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: []byte(`{"cwd":"/"}`)}
	if _, err := l.Exec(ctx, &api.ExecProcessRequest{ContainerID: "c1", ExecID: "ex2", Spec: spec, Stdout: "/o", Terminal: true}); err != nil {
		t.Error(err)
	}
	wait, err := l.Wait(ctx, &api.WaitRequest{ContainerID: "c1", ExecID: "ex1"})
	if err != nil || wait.ExitStatus != 137 || !wait.ExitedAt.AsTime().Equal(exited) {
		t.Errorf("Wait: %v, %v; want 137 at %v", wait, err, exited)
	}
	pids, err := l.ListPids(ctx, &api.ListPidsRequest{ContainerID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pids.Processes) != 2 || pids.Processes[0].Pid != 10 || pids.Processes[0].Info != nil ||
		pids.Processes[1].Pid != 11 || !proto.Equal(pids.Processes[1].Info, task.pids[1].Info.(*anypb.Any)) {
		t.Errorf("ListPids: %v", pids.Processes)
	}
	dp, err := l.DeleteProcess(ctx, &api.DeleteProcessRequest{ContainerID: "c1", ExecID: "ex1"})
	if err != nil || dp.ID != "ex1" || dp.Pid != 11 || dp.ExitStatus != 137 || !dp.ExitedAt.AsTime().Equal(exited) {
		t.Errorf("DeleteProcess: %v, %v; want ex1's exit", dp, err)
	}

	want := []string{
		"Start ex1", "Kill ex1 9 true", "ResizePty ex1 80x24", "CloseIO ex1 true", "Pause", "Resume",
		"Update map[k:v]", "Exec ex2 {Stdin: Stdout:/o Stderr: Terminal:true}", "Wait ex1", "Pids", "DeleteProcess ex1",
	}
	if got := task.Calls(); !slices.Equal(got, want) {
		t.Errorf("task calls\n%q\nwant\n%q", got, want)
	}
	if !proto.Equal(task.gotSpec.(*anypb.Any), spec) || !proto.Equal(task.gotResources.(*anypb.Any), res) {
		t.Errorf("task got spec %v and resources %v", task.gotSpec, task.gotResources)
	}

	del, err := l.Delete(ctx, &api.DeleteTaskRequest{ContainerID: "c1"})
	if err != nil || del.ID != "c1" || del.Pid != 10 || del.ExitStatus != 2 || !del.ExitedAt.AsTime().Equal(exited) {
		t.Errorf("Delete: %v, %v; want c1's exit", del, err)
	}
	if !slices.Equal(rt.deleted, []string{"c1"}) {
		t.Errorf("runtime deleted %v", rt.deleted)
	}
}

func TestExecValidation(t *testing.T) {
	task := taskWith("c1", "", runtime.State{})
	l, _, ctx := newLocal(t, newFakeRuntime(task))
	_, err := l.Exec(ctx, &api.ExecProcessRequest{ContainerID: "c1", Spec: specAny})
	wantClass(t, err, errdefs.ErrInvalidArgument, `"c1"`, "exec id")
	_, err = l.Exec(ctx, &api.ExecProcessRequest{ContainerID: "c1", ExecID: "ex1"})
	wantClass(t, err, errdefs.ErrInvalidArgument, `"c1"`, `"ex1"`, "spec")
	if calls := task.Calls(); len(calls) != 0 {
		t.Errorf("invalid execs reached the task: %v", calls)
	}
	_, err = l.Exec(ctx, &api.ExecProcessRequest{ContainerID: "none", ExecID: "ex1", Spec: specAny})
	wantClass(t, err, errdefs.ErrNotFound, `"none"`)
}

func TestCheckpointNotImplemented(t *testing.T) {
	l, _, ctx := newLocal(t, newFakeRuntime(taskWith("c1", "", runtime.State{})))
	_, err := l.Checkpoint(ctx, &api.CheckpointTaskRequest{ContainerID: "c1"})
	wantClass(t, err, errdefs.ErrNotImplemented, `"c1"`)
	// Without a task, NotFound comes first.
	_, err = l.Checkpoint(ctx, &api.CheckpointTaskRequest{ContainerID: "none"})
	wantClass(t, err, errdefs.ErrNotFound, `"none"`)
}

func TestTaskErrorsPassThrough(t *testing.T) {
	// Each call returns the task's own error unchanged, so that its class
	// reaches the adapter.
	boom := fmt.Errorf("process %q: %w", "ex9", errdefs.ErrFailedPrecondition)
	task := taskWith("c1", "", runtime.State{})
	task.errs = map[string]error{}
	for _, m := range []string{"Start", "State", "Kill", "Exec", "ResizePty", "CloseIO", "Pause", "Resume", "Pids", "Update", "Wait", "DeleteProcess"} {
		task.errs[m] = boom
	}
	rt := newFakeRuntime(task)
	rt.deleteErr = boom
	l, _, ctx := newLocal(t, rt)
	calls := map[string]func() error{
		"Start": func() error { _, err := l.Start(ctx, &api.StartRequest{ContainerID: "c1"}); return err },
		"Get":   func() error { _, err := l.Get(ctx, &api.GetRequest{ContainerID: "c1"}); return err },
		"Kill":  func() error { _, err := l.Kill(ctx, &api.KillRequest{ContainerID: "c1"}); return err },
		"Exec": func() error {
			_, err := l.Exec(ctx, &api.ExecProcessRequest{ContainerID: "c1", ExecID: "e", Spec: specAny})
			return err
		},
		"ResizePty": func() error { _, err := l.ResizePty(ctx, &api.ResizePtyRequest{ContainerID: "c1"}); return err },
		"CloseIO":   func() error { _, err := l.CloseIO(ctx, &api.CloseIORequest{ContainerID: "c1"}); return err },
		"Pause":     func() error { _, err := l.Pause(ctx, &api.PauseTaskRequest{ContainerID: "c1"}); return err },
		"Resume":    func() error { _, err := l.Resume(ctx, &api.ResumeTaskRequest{ContainerID: "c1"}); return err },
		"ListPids":  func() error { _, err := l.ListPids(ctx, &api.ListPidsRequest{ContainerID: "c1"}); return err },
		"Update":    func() error { _, err := l.Update(ctx, &api.UpdateTaskRequest{ContainerID: "c1"}); return err },
		"Wait":      func() error { _, err := l.Wait(ctx, &api.WaitRequest{ContainerID: "c1"}); return err },
		"DeleteProcess": func() error {
			_, err := l.DeleteProcess(ctx, &api.DeleteProcessRequest{ContainerID: "c1", ExecID: "e"})
			return err
		},
		"Delete": func() error { _, err := l.Delete(ctx, &api.DeleteTaskRequest{ContainerID: "c1"}); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, boom) {
			t.Errorf("%s: got %v, want the task's error", name, err)
		}
	}
	// Every call first finds the task: none exists → NotFound naming it.
	rt.getErr = fmt.Errorf("task %q: %w", "c1", errdefs.ErrNotFound)
	for name, call := range calls {
		if name == "Delete" {
			continue // goes to the runtime directly
		}
		if err := call(); !errdefs.IsNotFound(err) {
			t.Errorf("%s without a task: got %v, want NotFound", name, err)
		}
	}
}
