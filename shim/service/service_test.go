package service

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/runc/options"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/hullrt/hull/shim/events"
	"github.com/hullrt/hull/shim/reaper"
	"github.com/hullrt/hull/shim/task"
)

// fakeRunc stands in for runc, so that the service's paths run without
// root, namespaces or cgroups. It keeps each container in <root>/<id>:
// create leaves a process (reparented to the test, the subreaper, as a
// container's init is to the shim) that waits on the start FIFO and then
// exits with the bundle's exit-code file, or sleeps until killed; start
// opens the FIFO; exec leaves a sleeping process; kill, delete and ps act
// on the recorded pids. Every call is appended to <root>/calls. It does
// not call itself runc, so the shim uses the CLI for start and delete.
const fakeRunc = `#!/bin/sh
set -e
while [ $# -gt 0 ]; do
	case "$1" in
	--root) root=$2; shift 2;;
	--log|--log-format) shift 2;;
	--systemd-cgroup) shift;;
	--version) echo "fake-runc version 0.0.1"; exit 0;;
	*) break;;
	esac
done
cmd=$1; shift
echo "$cmd $*" >> "$root/calls"
force=; all=; bundle=; pidfile=
while [ $# -gt 1 ]; do
	case "$1" in
	--bundle) bundle=$2; shift 2;;
	--pid-file) pidfile=$2; shift 2;;
	--process|--console-socket) shift 2;;
	--force) force=1; shift;;
	--all) all=1; shift;;
	--detach|--no-pivot) shift;;
	--format) shift 2;;
	*) break;;
	esac
done
id=$1; d=$root/$id
case $cmd in
create)
	[ ! -e "$d" ] || { echo "container with id $id already exists" >&2; exit 1; }
	mkdir -p "$d"; mkfifo "$d/start"
	(
		read x < "$d/start"
		if [ -f "$bundle/exit-code" ]; then exit "$(cat "$bundle/exit-code")"; fi
		exec sleep 1000
	) </dev/null >/dev/null 2>&1 &
	echo $! > "$d/pid"; echo $! > "$pidfile";;
start)
	echo go > "$d/start";;
exec)
	sleep 1000 </dev/null >/dev/null 2>&1 &
	echo $! > "$pidfile";;
kill)
	[ -e "$d" ] || { echo "container $id does not exist" >&2; exit 1; }
	kill -s "$2" "$(cat "$d/pid")" 2>/dev/null || { echo "container not running" >&2; exit 1; };;
delete)
	[ -z "$force" ] || kill -9 "$(cat "$d/pid")" 2>/dev/null || true
	rm -rf "$d";;
ps)
	echo "[$(cat "$d/pid")]";;
*)
	echo "fake runc: $cmd not faked" >&2; exit 1;;
esac
`

// recorder is the service's event publisher: it keeps the topics in order
// and signals each one.
type recorder struct {
	mu     sync.Mutex
	topics []string
	evs    []any
	added  chan struct{}
}

func (r *recorder) Publish(topic string, ev any) {
	r.mu.Lock()
	r.topics = append(r.topics, topic)
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
	select {
	case r.added <- struct{}{}:
	default:
	}
}

// waitFor returns the first event of topic, waiting for it to arrive.
func (r *recorder) waitFor(t *testing.T, topic string, match func(any) bool) any {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		for i, tp := range r.topics {
			if tp == topic && (match == nil || match(r.evs[i])) {
				ev := r.evs[i]
				r.mu.Unlock()
				return ev
			}
		}
		r.mu.Unlock()
		select {
		case <-r.added:
		case <-deadline:
			t.Fatalf("no %s event; got %v", topic, r.snapshot())
		}
	}
}

func (r *recorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.topics...)
}

type fixture struct {
	svc    *Service
	events *recorder
	root   string // the fake runc's state
	opts   *anypb.Any
}

// newFixture serves the task API the way the shim does (a subreaper whose
// reaper routes exits to the monitor), over the fake runc.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	if err := reaper.SetSubreaper(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
	dir := t.TempDir()
	bin := filepath.Join(dir, "fake-runc")
	if err := os.WriteFile(bin, []byte(fakeRunc), 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "state")
	opts, err := anypb.New(&options.Options{BinaryName: bin, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	mon := task.NewMonitor()
	rp := reaper.New(mon.Exit)
	t.Cleanup(rp.Background())
	ev := &recorder{added: make(chan struct{}, 1)}
	svc := New(Config{Namespace: "ns", Events: ev, Reaper: rp, Monitor: mon,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return &fixture{svc: svc, events: ev, root: filepath.Join(root, "ns"), opts: opts}
}

// bundle makes a bundle whose container exits with code (or, with
// code < 0, runs until killed).
func (f *fixture) bundle(t *testing.T, code int) string {
	t.Helper()
	b := t.TempDir()
	if err := os.WriteFile(filepath.Join(b, "config.json"), []byte(`{"process":{"args":["sh"]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if code >= 0 {
		if err := os.WriteFile(filepath.Join(b, "exit-code"), []byte(strconv.Itoa(code)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func (f *fixture) calls(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.root, "calls"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// create, start, exec (start, kill, delete), kill, delete of a long-running
// container, with the events in the order the daemon must see them.
func TestServiceLifecycleOverFakeRunc(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	b := f.bundle(t, -1)
	cr, err := f.svc.Create(ctx, &taskv2.CreateTaskRequest{ID: "c1", Bundle: b, Options: f.opts})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if cr.Pid == 0 {
		t.Fatal("create returned no pid")
	}
	if _, err := f.svc.Create(ctx, &taskv2.CreateTaskRequest{ID: "c1", Bundle: b, Options: f.opts}); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("second create of c1: %v, want AlreadyExists", err)
	}
	st, err := f.svc.State(ctx, &taskv2.StateRequest{ID: "c1"})
	if err != nil || st.Status != tasktypes.Status_CREATED || st.Pid != cr.Pid {
		t.Fatalf("state after create: %v %v", st, err)
	}
	sr, err := f.svc.Start(ctx, &taskv2.StartRequest{ID: "c1"})
	if err != nil || sr.Pid != cr.Pid {
		t.Fatalf("start: %v %v", sr, err)
	}
	if _, err := f.svc.Start(ctx, &taskv2.StartRequest{ID: "c1"}); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("second start: %v, want FailedPrecondition", err)
	}
	if st, _ := f.svc.State(ctx, &taskv2.StateRequest{ID: "c1"}); st.Status != tasktypes.Status_RUNNING {
		t.Fatalf("state after start: %v", st.Status)
	}

	spec := &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: []byte(`{"args":["sleep","1000"],"cwd":"/"}`)}
	if _, err := f.svc.Exec(ctx, &taskv2.ExecProcessRequest{ID: "c1", ExecID: "e1", Spec: spec}); err != nil {
		t.Fatalf("exec: %v", err)
	}
	if _, err := f.svc.Exec(ctx, &taskv2.ExecProcessRequest{ID: "c1", ExecID: "e1", Spec: spec}); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("second exec e1: %v, want AlreadyExists", err)
	}
	er, err := f.svc.Start(ctx, &taskv2.StartRequest{ID: "c1", ExecID: "e1"})
	if err != nil || er.Pid == 0 || er.Pid == cr.Pid {
		t.Fatalf("start exec: %v %v", er, err)
	}
	if _, err := f.svc.Delete(ctx, &taskv2.DeleteRequest{ID: "c1", ExecID: "e1"}); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("delete of a running exec: %v, want FailedPrecondition", err)
	}
	if _, err := f.svc.Kill(ctx, &taskv2.KillRequest{ID: "c1", ExecID: "e1", Signal: uint32(unix.SIGKILL)}); err != nil {
		t.Fatalf("kill exec: %v", err)
	}
	wr, err := f.svc.Wait(ctx, &taskv2.WaitRequest{ID: "c1", ExecID: "e1"})
	if err != nil || wr.ExitStatus != 137 {
		t.Fatalf("wait exec: %v %v, want 137", wr, err)
	}
	if _, err := f.svc.Kill(ctx, &taskv2.KillRequest{ID: "c1", ExecID: "e1", Signal: uint32(unix.SIGKILL)}); !errdefs.IsNotFound(err) {
		t.Fatalf("kill of an exited exec: %v, want NotFound", err)
	}
	if dr, err := f.svc.Delete(ctx, &taskv2.DeleteRequest{ID: "c1", ExecID: "e1"}); err != nil || dr.ExitStatus != 137 {
		t.Fatalf("delete exec: %v %v", dr, err)
	}

	if _, err := f.svc.Delete(ctx, &taskv2.DeleteRequest{ID: "c1"}); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("delete of a running container: %v, want FailedPrecondition", err)
	}
	if _, err := f.svc.Kill(ctx, &taskv2.KillRequest{ID: "c1", Signal: uint32(unix.SIGTERM)}); err != nil {
		t.Fatalf("kill: %v", err)
	}
	exit := f.events.waitFor(t, events.TopicExit, func(ev any) bool { return ev.(*eventstypes.TaskExit).ID == "c1" }).(*eventstypes.TaskExit)
	if exit.ExitStatus != 143 || exit.Pid != cr.Pid {
		t.Fatalf("exit event %v, want status 143 of pid %d", exit, cr.Pid)
	}
	dr, err := f.svc.Delete(ctx, &taskv2.DeleteRequest{ID: "c1"})
	if err != nil || dr.ExitStatus != 143 || dr.Pid != cr.Pid {
		t.Fatalf("delete: %v %v", dr, err)
	}
	if _, err := f.svc.State(ctx, &taskv2.StateRequest{ID: "c1"}); !errdefs.IsNotFound(err) {
		t.Fatalf("state after delete: %v, want NotFound", err)
	}
	if _, err := os.Stat(filepath.Join(f.root, "c1")); !os.IsNotExist(err) {
		t.Fatalf("the runtime's state of c1 is left: %v", err)
	}

	want := []string{events.TopicCreate, events.TopicStart, events.TopicExecAdded, events.TopicExecStarted,
		events.TopicExit, events.TopicExit, events.TopicDelete}
	if got := f.events.snapshot(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("events %v, want %v", got, want)
	}
	// The fake is not runc: start and delete went through its CLI.
	var cmds []string
	for _, c := range f.calls(t) {
		cmds = append(cmds, strings.Fields(c)[0])
	}
	if got := strings.Join(cmds, " "); got != "create start exec kill delete" {
		t.Fatalf("runtime calls %q", got)
	}
}

// A container whose process exits by itself: the exit event (after the
// start event) carries its status, Wait returns it, and a created one that
// is deleted before its start is killed by the runtime's delete --force.
func TestServiceExitEventsOverFakeRunc(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cr, err := f.svc.Create(ctx, &taskv2.CreateTaskRequest{ID: "c2", Bundle: f.bundle(t, 7), Options: f.opts})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := f.svc.Start(ctx, &taskv2.StartRequest{ID: "c2"}); err != nil {
		t.Fatalf("start: %v", err)
	}
	wr, err := f.svc.Wait(ctx, &taskv2.WaitRequest{ID: "c2"})
	if err != nil || wr.ExitStatus != 7 {
		t.Fatalf("wait: %v %v, want 7", wr, err)
	}
	exit := f.events.waitFor(t, events.TopicExit, nil).(*eventstypes.TaskExit)
	if exit.ExitStatus != 7 || exit.Pid != cr.Pid || exit.ContainerID != "c2" {
		t.Fatalf("exit event %v", exit)
	}
	got := f.events.snapshot()
	if len(got) < 3 || got[1] != events.TopicStart || got[2] != events.TopicExit {
		t.Fatalf("events %v: the start must precede the exit", got)
	}
	if _, err := f.svc.Kill(ctx, &taskv2.KillRequest{ID: "c2", Signal: uint32(unix.SIGKILL)}); !errdefs.IsNotFound(err) {
		t.Fatalf("kill of an exited container: %v, want NotFound", err)
	}
	if _, err := f.svc.Delete(ctx, &taskv2.DeleteRequest{ID: "c2"}); err != nil {
		t.Fatalf("delete: %v", err)
	}

	// Created, never started: delete kills it and reports its end.
	if _, err := f.svc.Create(ctx, &taskv2.CreateTaskRequest{ID: "c3", Bundle: f.bundle(t, -1), Options: f.opts}); err != nil {
		t.Fatalf("create c3: %v", err)
	}
	dr, err := f.svc.Delete(ctx, &taskv2.DeleteRequest{ID: "c3"})
	if err != nil || dr.ExitStatus != 137 {
		t.Fatalf("delete of a created container: %v %v, want 137", dr, err)
	}
	last := f.calls(t)
	if c := last[len(last)-1]; c != "delete --force c3" {
		t.Fatalf("last runtime call %q, want delete --force c3", c)
	}
}
