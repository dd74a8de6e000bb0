package tasks

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"

	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/core/runtime"
	"github.com/hullrt/hull/core/snapshots"
)

// fakeRuntime is an in-memory runtime.Runtime: tasks are set up by the
// test, Create records what it was asked for, and every method can be made
// to fail.
type fakeRuntime struct {
	mu        sync.Mutex
	tasks     map[string]*fakeTask
	created   []createCall
	createErr error
	getErr    error
	tasksErr  error
	deleteErr error
	deleted   []string
	exit      runtime.Exit
}

type createCall struct {
	ns, id string
	opts   runtime.CreateOpts
}

func newFakeRuntime(ts ...*fakeTask) *fakeRuntime {
	r := &fakeRuntime{tasks: map[string]*fakeTask{}}
	for _, t := range ts {
		r.tasks[t.id] = t
	}
	return r
}

func (r *fakeRuntime) Create(ctx context.Context, id string, opts runtime.CreateOpts) (runtime.Task, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ns, _ := namespaces.Namespace(ctx)
	r.created = append(r.created, createCall{ns: ns, id: id, opts: opts})
	if r.createErr != nil {
		return nil, r.createErr
	}
	if _, ok := r.tasks[id]; ok {
		return nil, fmt.Errorf("task %q: %w", id, errdefs.ErrAlreadyExists)
	}
	t := &fakeTask{id: id, ns: ns, runtime: opts.Runtime, pid: 4242, states: map[string]runtime.State{
		"": {ID: id, Pid: 4242, Status: runtime.StatusCreated},
	}}
	r.tasks[id] = t
	return t, nil
}

func (r *fakeRuntime) Get(ctx context.Context, id string) (runtime.Task, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.getErr != nil {
		return nil, r.getErr
	}
	t, ok := r.tasks[id]
	if !ok {
		return nil, fmt.Errorf("task %q: %w", id, errdefs.ErrNotFound)
	}
	return t, nil
}

func (r *fakeRuntime) Tasks(ctx context.Context) ([]runtime.Task, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tasksErr != nil {
		return nil, r.tasksErr
	}
	ids := make([]string, 0, len(r.tasks))
	for id := range r.tasks {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]runtime.Task, 0, len(ids))
	for _, id := range ids {
		out = append(out, r.tasks[id])
	}
	return out, nil
}

func (r *fakeRuntime) Delete(ctx context.Context, id string) (runtime.Exit, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deleted = append(r.deleted, id)
	if r.deleteErr != nil {
		return runtime.Exit{}, r.deleteErr
	}
	delete(r.tasks, id)
	return r.exit, nil
}

// fakeTask is an in-memory runtime.Task. It records every call as a line
// naming the method and its arguments; errs makes a method fail; hang
// makes State block until its context ends, like a stuck shim.
type fakeTask struct {
	id, ns, runtime string
	pid             uint32

	mu     sync.Mutex
	calls  []string
	errs   map[string]error
	states map[string]runtime.State // by exec id
	hang   bool
	pids   []runtime.ProcessInfo
	stats  typeurl.Any
	exit   runtime.Exit
	// gotSpec and gotResources are the Any values Exec and Update received.
	gotSpec, gotResources typeurl.Any
}

func (t *fakeTask) record(method string, args ...any) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls = append(t.calls, strings.TrimSpace(method+" "+fmt.Sprint(args...)))
	return t.errs[method]
}

func (t *fakeTask) Calls() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.calls...)
}

func (t *fakeTask) ID() string          { return t.id }
func (t *fakeTask) Namespace() string   { return t.ns }
func (t *fakeTask) Pid() uint32         { return t.pid }
func (t *fakeTask) RuntimeName() string { return t.runtime }

func (t *fakeTask) Start(ctx context.Context, execID string) (uint32, error) {
	if err := t.record("Start", execID); err != nil {
		return 0, err
	}
	return t.pid + 1, nil
}

func (t *fakeTask) State(ctx context.Context, execID string) (runtime.State, error) {
	if err := t.record("State", execID); err != nil {
		return runtime.State{}, err
	}
	if t.hang {
		<-ctx.Done()
		return runtime.State{}, ctx.Err()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.states[execID]
	if !ok {
		return runtime.State{}, fmt.Errorf("process %q of task %q: %w", execID, t.id, errdefs.ErrNotFound)
	}
	return st, nil
}

func (t *fakeTask) Kill(ctx context.Context, execID string, signal uint32, all bool) error {
	return t.record("Kill", execID, " ", signal, " ", all)
}

func (t *fakeTask) Exec(ctx context.Context, execID string, io runtime.IO, spec typeurl.Any) error {
	t.mu.Lock()
	t.gotSpec = spec
	t.mu.Unlock()
	return t.record("Exec", fmt.Sprintf("%s %+v", execID, io))
}

func (t *fakeTask) ResizePty(ctx context.Context, execID string, width, height uint32) error {
	return t.record("ResizePty", execID, " ", width, "x", height)
}

func (t *fakeTask) CloseIO(ctx context.Context, execID string, stdin bool) error {
	return t.record("CloseIO", execID, " ", stdin)
}

func (t *fakeTask) Pause(ctx context.Context) error  { return t.record("Pause") }
func (t *fakeTask) Resume(ctx context.Context) error { return t.record("Resume") }

func (t *fakeTask) Pids(ctx context.Context) ([]runtime.ProcessInfo, error) {
	if err := t.record("Pids"); err != nil {
		return nil, err
	}
	return t.pids, nil
}

func (t *fakeTask) Update(ctx context.Context, resources typeurl.Any, annotations map[string]string) error {
	t.mu.Lock()
	t.gotResources = resources
	t.mu.Unlock()
	return t.record("Update", annotations)
}

func (t *fakeTask) Stats(ctx context.Context) (typeurl.Any, error) {
	if err := t.record("Stats"); err != nil {
		return nil, err
	}
	return t.stats, nil
}

func (t *fakeTask) Wait(ctx context.Context, execID string) (runtime.Exit, error) {
	if err := t.record("Wait", execID); err != nil {
		return runtime.Exit{}, err
	}
	return t.exit, nil
}

func (t *fakeTask) DeleteProcess(ctx context.Context, execID string) (runtime.Exit, error) {
	if err := t.record("DeleteProcess", execID); err != nil {
		return runtime.Exit{}, err
	}
	return t.exit, nil
}

// fakeContainers is a containers.Store holding records by namespace and id;
// only Get matters to the tasks service.
type fakeContainers struct {
	mu sync.Mutex
	m  map[string]containers.Container // "<ns>/<id>"
}

func (s *fakeContainers) key(ctx context.Context, id string) string {
	ns, _ := namespaces.Namespace(ctx)
	return ns + "/" + id
}

func (s *fakeContainers) Get(ctx context.Context, id string) (containers.Container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.m[s.key(ctx, id)]
	if !ok {
		return containers.Container{}, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

func (s *fakeContainers) List(ctx context.Context, filters ...string) ([]containers.Container, error) {
	return nil, errdefs.ErrNotImplemented
}

func (s *fakeContainers) Create(ctx context.Context, c containers.Container) (containers.Container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]containers.Container{}
	}
	s.m[s.key(ctx, c.ID)] = c
	return c, nil
}

func (s *fakeContainers) Update(ctx context.Context, c containers.Container, fieldpaths ...string) (containers.Container, error) {
	return containers.Container{}, errdefs.ErrNotImplemented
}

func (s *fakeContainers) Delete(ctx context.Context, id string) error {
	return errdefs.ErrNotImplemented
}

// fakeSnapshotters serves one snapshotter, "fake", whose Mounts answers
// from a map of keys; Mounts of an unknown key is NotFound.
type fakeSnapshotters struct {
	mounts map[string][]mount.Mount
	asked  []string
	mu     sync.Mutex
}

func (s *fakeSnapshotters) Snapshotter(name string) (snapshots.Snapshotter, error) {
	if name != "fake" {
		return nil, fmt.Errorf("snapshotter %q: %w", name, errdefs.ErrNotFound)
	}
	return fakeSnapshotter{s}, nil
}

// fakeSnapshotter implements only Mounts; the tasks service needs nothing
// else, and the embedded nil interface makes any other call fail loudly.
type fakeSnapshotter struct{ s *fakeSnapshotters }

var _ snapshots.Snapshotter = fakeSnapshotter{}

func (f fakeSnapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	f.s.asked = append(f.s.asked, key)
	ms, ok := f.s.mounts[key]
	if !ok {
		return nil, fmt.Errorf("snapshot %q: %w", key, errdefs.ErrNotFound)
	}
	return ms, nil
}

func (fakeSnapshotter) Stat(context.Context, string) (snapshots.Info, error) {
	return snapshots.Info{}, errdefs.ErrNotImplemented
}
func (fakeSnapshotter) Update(context.Context, snapshots.Info, ...string) (snapshots.Info, error) {
	return snapshots.Info{}, errdefs.ErrNotImplemented
}
func (fakeSnapshotter) Usage(context.Context, string) (snapshots.Usage, error) {
	return snapshots.Usage{}, errdefs.ErrNotImplemented
}
func (fakeSnapshotter) Prepare(context.Context, string, string, ...snapshots.Opt) ([]mount.Mount, error) {
	return nil, errdefs.ErrNotImplemented
}
func (fakeSnapshotter) View(context.Context, string, string, ...snapshots.Opt) ([]mount.Mount, error) {
	return nil, errdefs.ErrNotImplemented
}
func (fakeSnapshotter) Commit(context.Context, string, string, ...snapshots.Opt) error {
	return errdefs.ErrNotImplemented
}
func (fakeSnapshotter) Remove(context.Context, string) error { return errdefs.ErrNotImplemented }
func (fakeSnapshotter) Walk(context.Context, snapshots.WalkFunc, ...string) error {
	return errdefs.ErrNotImplemented
}
func (fakeSnapshotter) Close() error { return nil }

// wantClass fails unless err wraps class and names every one of names.
func wantClass(t *testing.T, err, class error, names ...string) {
	t.Helper()
	if !errors.Is(err, class) {
		t.Fatalf("got error %v, want %v", err, class)
	}
	for _, n := range names {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error %q does not name %q", err, n)
		}
	}
}
