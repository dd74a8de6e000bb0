package shims

import (
	"github.com/hullrt/hull/core/runtime"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/hullrt/hull/core/events"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/internal/crashpoint"
	"github.com/hullrt/hull/internal/fsfull"
	"github.com/hullrt/hull/internal/protoconv"
	"github.com/hullrt/hull/shim/launch"
)

// RuntimeConfig configures one runtime name.
type RuntimeConfig struct {
	// Binary is the shim to run for the runtime, instead of the binary
	// derived from its name.
	Binary string
}

// Config is what a Manager needs.
type Config struct {
	// Root and State are the manager's directories: bundles live under
	// State/<namespace>/<id>, their work directories under Root.
	Root, State string
	// Address is hulld's gRPC socket and TTRPCAddress its ttrpc socket,
	// passed to shims (the latter for events).
	Address, TTRPCAddress string
	// PublishBinary is passed as -publish-binary; hulld's own executable.
	PublishBinary string
	// DaemonVersion is the daemon's version, which shims of containerd
	// 2.3+ are told in their bootstrap parameters; hull's when empty.
	DaemonVersion string
	// Debug starts shims with -debug.
	Debug bool
	// DefaultRuntime is used when a task names none.
	DefaultRuntime string
	Runtimes       map[string]RuntimeConfig
	// SocketDir is the directory shims put their sockets in, private to
	// hulld's uid. Empty means <hulld's state>/s, hulld's state being
	// the parent of State (as containerd 2.x puts them in <state>/s), or
	// the temporary directory's hull-shim when that is too long for a
	// socket's path.
	SocketDir string
	// RuncRoot is the runc state root given to the runc and hull shims
	// when the task's options set none, so that their containers' state
	// lives under hulld's state directory rather than containerd's.
	RuncRoot string
	// StartTimeout bounds a shim's start and delete commands.
	StartTimeout time.Duration
	// ReconcileInterval is how often shims and tasks are checked against
	// each other; 0 disables the timer.
	ReconcileInterval time.Duration
	// Publisher receives the events the manager itself publishes (exits
	// of tasks whose shim died or that ended while hulld was down).
	Publisher events.Publisher
	// ContainerExists reports whether the container record of a task is
	// still there; a task without one is removed by the reconciler. Nil
	// skips that check.
	ContainerExists func(ctx context.Context, id string) (bool, error)
	// Containers, when set, delivers the daemon's events: a task whose
	// container is deleted is removed at once (see ContainerDeleted).
	Containers events.Subscriber
	Log        *slog.Logger
}

// Manager runs tasks through shims.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	tasks    map[string]*Task // by namespace/id
	creating map[string]bool  // namespace/id being created or deleted
	// draining holds, by namespace/id, deleted tasks whose shim is still
	// exiting and whose bundle is still being removed: Delete answers
	// without waiting for either, and a new task of the same id waits
	// for the channel to close (see drain).
	draining map[string]chan struct{}
	conns    map[string]*shimConn // by shim address
	logs     map[string]*os.File  // log FIFOs by namespace/id
	// failures holds the last reason each thing could not be cleaned
	// up, so that each is logged once (see cleanupFailed).
	failures map[string]string
	// pidfds are the shims hulld launched and waits to reap (reapShim).
	pidfds map[*os.File]struct{}
	// startInputs remembers, per shim binary file, which stdin its start
	// command took (see startShim).
	startInputs map[binaryKey]startInput

	stop      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

func key(ns, id string) string { return ns + "/" + id }

// New makes a manager, loads the tasks of a previous run from the state
// directory (reconnecting to their shims or cleaning up after them) and
// starts the reconciler.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if cfg.DefaultRuntime == "" {
		cfg.DefaultRuntime = "io.containerd.hull.v2"
	}
	for _, dir := range []string{cfg.Root, cfg.State} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, err
		}
	}
	if cfg.SocketDir == "" {
		cfg.SocketDir = launch.SocketDirIn(filepath.Dir(cfg.State), shimSocketNameLen)
	}
	// Said now rather than at every task's start: a directory others
	// may write (another daemon's, or hulld's state itself) would let
	// them replace a shim's socket.
	if err := launch.PrivateDir(cfg.SocketDir); err != nil {
		return nil, fmt.Errorf("shim socket directory: %w", err)
	}
	m := &Manager{
		cfg: cfg, log: cfg.Log,
		tasks: map[string]*Task{}, creating: map[string]bool{}, draining: map[string]chan struct{}{}, conns: map[string]*shimConn{}, logs: map[string]*os.File{}, failures: map[string]string{},
		pidfds: map[*os.File]struct{}{}, startInputs: map[binaryKey]startInput{}, stop: make(chan struct{}),
	}
	m.load(ctx)
	if cfg.Containers != nil {
		m.wg.Add(1)
		go m.watchContainerDeletes()
	}
	if cfg.ReconcileInterval > 0 {
		m.wg.Add(1)
		go m.reconcileLoop()
	}
	return m, nil
}

// Close stops the reconciler and the log copying. Shims and their
// containers keep running: that is the point of shims.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() { close(m.stop) })
	m.closePidfds()
	m.wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, f := range m.logs {
		f.Close()
		delete(m.logs, k)
	}
	for _, c := range m.conns {
		c.mu.Lock()
		c.shuttingDown = true // our own close is no crash
		c.mu.Unlock()
		c.client.Close()
	}
	return nil
}

// Create starts a shim for a new task and creates the task in it; the
// task's init process is created but not started.
func (m *Manager) Create(ctx context.Context, id string, opts runtime.CreateOpts) (_ runtime.Task, retErr error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	if err := validateSpec(id, opts.Spec); err != nil {
		return nil, err
	}
	k := key(ns, id)
	m.mu.Lock()
	for m.draining[k] != nil {
		// The last task of this id is gone for its client, but its
		// shim may still answer on the socket the new one would use.
		ch := m.draining[k]
		m.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		m.mu.Lock()
	}
	if _, ok := m.tasks[k]; ok || m.creating[k] {
		m.mu.Unlock()
		return nil, fmt.Errorf("task %q in namespace %q: %w", id, ns, errdefs.ErrAlreadyExists)
	}
	m.creating[k] = true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.creating, k)
		m.mu.Unlock()
	}()

	rtName := opts.Runtime
	if rtName == "" {
		rtName = m.cfg.DefaultRuntime
	}
	binary, err := m.resolveBinary(rtName, opts.RuntimePath)
	if err != nil {
		return nil, err
	}
	options, err := m.runtimeOptions(rtName, opts.Options)
	if err != nil {
		return nil, err
	}
	b := bundlePaths(m.cfg.State, m.cfg.Root, ns, id)
	if err := b.create(opts.Spec); err != nil {
		return nil, fsfull.Wrap(err, "task bundles", m.cfg.State)
	}
	started := false
	defer func() {
		if retErr == nil {
			return
		}
		m.closeLog(k)
		rec, _ := b.readRecord()
		if !started {
			rec.Binary = "" // no shim ran: nothing for its delete to do
		}
		// A shim that failed the create has been asked to go; one that
		// did not answer may still run (a create stuck in runc).
		if _, err := m.teardown(context.WithoutCancel(ctx), b, rec, true); err != nil {
			m.log.Warn("clean up after failed create", "namespace", ns, "id", id, "error", err)
		}
	}()
	logf, err := openShimLog(b, m.log)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.logs[k] = logf
	m.mu.Unlock()

	// The record exists before the shim does, so that a restart after a
	// crash at any later point finds the shim to remove.
	rec := shimRecord{Runtime: rtName, Binary: binary, State: recordStarting}
	if err := b.writeRecord(rec); err != nil {
		return nil, fsfull.Wrap(err, "task bundles", m.cfg.State)
	}
	began := time.Now()
	started = true
	boot, err := m.startShim(ctx, binary, b, options)
	if err != nil {
		return nil, err
	}
	shimStarted := time.Since(began)
	crashpoint.Hit(crashpoint.TaskShimStarted)
	rec.Address, rec.Version = boot.Address, boot.Version
	if err := b.writeRecord(rec); err != nil {
		return nil, err
	}
	m.mu.Lock()
	c, shared := m.conns[boot.Address]
	shared = shared && !c.isClosed()
	m.mu.Unlock()
	if shared {
		// The group's shim, serving already, logs to the FIFO of the
		// bundle it was started in; nothing comes through this one, so
		// it need not hold a reader, a buffer and a goroutine for the
		// task's life.
		m.closeLog(k)
	}
	conn, err := m.connect(ctx, boot)
	if err != nil {
		return nil, err
	}
	t := newTask(ns, id, rtName, b, binary, conn)
	crashpoint.Hit(crashpoint.TaskCreating)
	var resp taskv2.CreateTaskResponse
	err = conn.call(ctx, ns, "Create", &taskv2.CreateTaskRequest{
		ID: id, Bundle: b.Path, Rootfs: protoconv.MountsToProto(opts.Rootfs),
		Terminal: opts.IO.Terminal, Stdin: opts.IO.Stdin, Stdout: opts.IO.Stdout, Stderr: opts.IO.Stderr,
		Options: options,
	}, &resp)
	if err == nil {
		// A shim that said v3 but serves v2 only is spoken to in v2.
		rec.State, rec.Version = recordCreated, conn.version()
		err = b.writeRecord(rec)
	}
	if err != nil {
		conn.shutdown(context.WithoutCancel(ctx), ns, id)
		return nil, err
	}
	t.pid = resp.Pid
	m.mu.Lock()
	m.tasks[k] = t
	m.mu.Unlock()
	crashpoint.Hit(crashpoint.TaskRecorded)
	m.log.Debug("task created", "namespace", ns, "id", id, "runtime", rtName, "pid", t.pid,
		"shim_start", shimStarted, "create", time.Since(began)-shimStarted)
	return t, nil
}

// connect returns the connection to the shim at boot's address, sharing
// one with other tasks of the same (group) shim.
func (m *Manager) connect(ctx context.Context, boot bootstrap) (*shimConn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.conns[boot.Address]; ok && !c.isClosed() {
		c.mu.Lock()
		c.users++
		c.mu.Unlock()
		return c, nil
	}
	var conn *shimConn
	conn, err := dialShim(ctx, boot, func() { go m.connClosed(conn) })
	if err != nil {
		return nil, err
	}
	conn.users = 1
	m.conns[boot.Address] = conn
	return conn, nil
}

// validateSpec checks the few spec fields without which runc fails in
// ways that do not say what is wrong.
func validateSpec(id string, data []byte) error {
	if len(data) == 0 {
		return fmt.Errorf("container %q has no OCI spec: %w", id, errdefs.ErrInvalidArgument)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("OCI spec of container %q: %v: %w", id, err, errdefs.ErrInvalidArgument)
	}
	switch {
	case s.Process == nil:
		return fmt.Errorf("OCI spec of container %q: field process is missing: %w", id, errdefs.ErrInvalidArgument)
	case len(s.Process.Args) == 0 && s.Process.CommandLine == "":
		return fmt.Errorf("OCI spec of container %q: field process.args is empty: %w", id, errdefs.ErrInvalidArgument)
	case s.Process.Cwd == "" || !filepath.IsAbs(s.Process.Cwd):
		return fmt.Errorf("OCI spec of container %q: field process.cwd %q is not an absolute path: %w", id, s.Process.Cwd, errdefs.ErrInvalidArgument)
	case s.Root == nil || s.Root.Path == "":
		return fmt.Errorf("OCI spec of container %q: field root.path is missing: %w", id, errdefs.ErrInvalidArgument)
	}
	for i, mnt := range s.Mounts {
		if mnt.Destination == "" {
			return fmt.Errorf("OCI spec of container %q: field mounts[%d].destination is empty: %w", id, i, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// runtimeOptions gives the runc and hull shims a runc root under hulld's
// state when the caller set none, so that containers of hulld and of a
// containerd on the same host never share runc state.
func (m *Manager) runtimeOptions(rtName string, given typeurl.Any) (*anypb.Any, error) {
	runcLike := rtName == "io.containerd.runc.v2" || rtName == "io.containerd.hull.v2"
	if given == nil || given.GetTypeUrl() == "" {
		if !runcLike || m.cfg.RuncRoot == "" {
			return nil, nil
		}
		return runcOptionsAny(&runcoptions.Options{Root: m.cfg.RuncRoot})
	}
	a := &anypb.Any{TypeUrl: given.GetTypeUrl(), Value: given.GetValue()}
	var o runcoptions.Options
	if a.MessageIs(&o) && m.cfg.RuncRoot != "" {
		if err := a.UnmarshalTo(&o); err != nil {
			return nil, fmt.Errorf("runtime options of type %s: %v: %w", a.TypeUrl, err, errdefs.ErrInvalidArgument)
		}
		if o.Root == "" {
			o.Root = m.cfg.RuncRoot
			return runcOptionsAny(&o)
		}
	}
	return a, nil
}

// runcOptionsAny encodes runc options under the bare type name, as
// containerd does: shims built with typeurl v1 (Debian's 1.6 runc shim)
// know no "type.googleapis.com/" prefix.
func runcOptionsAny(o *runcoptions.Options) (*anypb.Any, error) {
	data, err := proto.Marshal(o)
	if err != nil {
		return nil, err
	}
	return &anypb.Any{TypeUrl: string(o.ProtoReflect().Descriptor().FullName()), Value: data}, nil
}

// Get returns the task id of the namespace in ctx.
func (m *Manager) Get(ctx context.Context, id string) (runtime.Task, error) {
	t, err := m.get(ctx, id)
	if err != nil {
		return nil, err
	}
	return t, nil
}

func (m *Manager) get(ctx context.Context, id string) (*Task, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tasks[key(ns, id)]
	if !ok {
		return nil, fmt.Errorf("task %q in namespace %q: %w", id, ns, errdefs.ErrNotFound)
	}
	return t, nil
}

// Tasks lists the tasks of the namespace in ctx, by id.
func (m *Manager) Tasks(ctx context.Context) ([]runtime.Task, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	var out []runtime.Task
	for _, t := range m.tasks {
		if t.ns == ns {
			out = append(out, t)
		}
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID() < out[j].ID() })
	return out, nil
}

// All lists the tasks of every namespace.
func (m *Manager) All() []*Task {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Task, 0, len(m.tasks))
	for _, t := range m.tasks {
		out = append(out, t)
	}
	return out
}

// ShimPIDs returns the pid of every live shim, for debug dumps.
func (m *Manager) ShimPIDs(ctx context.Context) map[string]uint32 {
	out := map[string]uint32{}
	for _, t := range m.All() {
		if exit, _ := t.deadExit(); exit != nil {
			continue
		}
		if resp, err := t.shim.connect(ctx, t.ns, t.id, 2*time.Second); err == nil {
			out[key(t.ns, t.id)] = resp.ShimPid
		}
	}
	return out
}

// Delete deletes a stopped task: the shim removes the container, the
// bundle goes, and the shim exits once it serves no task. It answers once
// the shim deleted the container; the shim's exit and the bundle's
// removal finish in the background (see drain).
func (m *Manager) Delete(ctx context.Context, id string) (runtime.Exit, error) {
	t, err := m.get(ctx, id)
	if err != nil {
		return runtime.Exit{}, err
	}
	k := key(t.ns, id)
	m.mu.Lock()
	if m.creating[k] {
		m.mu.Unlock()
		return runtime.Exit{}, fmt.Errorf("task %q is being deleted: %w", id, errdefs.ErrFailedPrecondition)
	}
	m.creating[k] = true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.creating, k)
		m.mu.Unlock()
	}()
	if exit, _ := t.deadExit(); exit != nil {
		m.forget(t)
		m.publishDelete(t.ns, id, runtime.Exit{Pid: t.pid, Status: exit.Status, ExitedAt: exit.ExitedAt})
		return *exit, nil
	}
	began := time.Now()
	var resp taskv2.DeleteResponse
	if err := t.shim.call(ctx, t.ns, "Delete", &taskv2.DeleteRequest{ID: id}, &resp); err != nil {
		if errdefs.IsNotFound(err) && !t.shim.isClosed() {
			// The shim lost the task (it was never created there, or
			// deleted before a crash of hulld): nothing is left to stop,
			// so the delete finishes by removing what hulld holds.
			m.log.Warn("shim has no such task; removing its bundle", "namespace", t.ns, "id", id, "error", err)
			exit := m.dropLost(ctx, t)
			return exit, nil
		}
		if !t.shim.isClosed() {
			return runtime.Exit{}, err
		}
		// The shim died under us: its crash handling records the exit.
		if exit := t.waitDead(ctx); exit != nil {
			return m.Delete(ctx, id)
		}
		return runtime.Exit{}, err
	}
	exit := runtime.Exit{Pid: resp.Pid, Status: resp.ExitStatus, ExitedAt: protoconv.FromTime(resp.ExitedAt)}
	crashpoint.Hit(crashpoint.TaskDeleting)
	m.forget(t)
	m.log.Debug("task deleted", "namespace", t.ns, "id", id, "shim_delete", time.Since(began))
	m.drain(context.WithoutCancel(ctx), t)
	return exit, nil
}

// drain lets the shim of deleted task t exit and removes its bundle, in
// the background: the client has its answer once the container is
// deleted, and waiting for a process to exit and a directory tree to go
// would only delay it. The bundle is first renamed out of the way
// (trashName), so that a hulld that stops before the drain ends finds no
// task there on its next start, only trash to remove. A new task of the
// same id waits for the drain, since until the old shim has exited its
// socket answers where the new shim's would.
func (m *Manager) drain(ctx context.Context, t *Task) {
	k := key(t.ns, t.id)
	b := t.bundle
	trash := trashName(b.Path)
	if err := os.Rename(b.Path, trash); err == nil {
		b = &bundle{Namespace: b.Namespace, ID: b.ID, Path: trash, Work: b.Work}
	} else {
		m.log.Warn("move deleted task's bundle aside", "namespace", t.ns, "id", t.id, "error", err)
	}
	done := make(chan struct{})
	m.mu.Lock()
	m.draining[k] = done
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		began := time.Now()
		t.shim.shutdown(ctx, t.ns, t.id)
		exited := time.Since(began)
		m.closeLog(k)
		if err := b.remove(); err != nil {
			m.log.Warn("remove bundle", "namespace", t.ns, "id", t.id, "error", err)
		}
		m.mu.Lock()
		if m.draining[k] == done {
			delete(m.draining, k)
		}
		m.mu.Unlock()
		close(done)
		m.log.Debug("task drained", "namespace", t.ns, "id", t.id, "shim_exit", exited, "bundle_remove", time.Since(began)-exited)
	}()
}

// trashPrefix starts the names of deleted bundles being removed. Task ids
// start with a letter or digit, so no bundle of a live task has it.
const trashPrefix = ".deleted-"

// trashName is where the bundle at path goes while it is removed.
func trashName(path string) string {
	return filepath.Join(filepath.Dir(path), trashPrefix+filepath.Base(path))
}

// dropLost removes a task its live shim does not know: the shim is asked
// to go (it stays if it serves others), its delete command cleans what
// runc may have left, and the bundle goes. The task's end is published, as
// nobody else will.
func (m *Manager) dropLost(ctx context.Context, t *Task) runtime.Exit {
	m.forget(t)
	t.shim.shutdown(context.WithoutCancel(ctx), t.ns, t.id)
	m.closeLog(key(t.ns, t.id))
	exit, err := m.teardown(context.WithoutCancel(ctx), t.bundle, shimRecord{Binary: t.binary, Address: t.shim.address}, false)
	if err != nil {
		m.log.Warn("clean up a task its shim lost", "namespace", t.ns, "id", t.id, "error", err)
	}
	exit.Pid = t.pid
	m.publishDelete(t.ns, t.id, exit)
	return exit
}

func (m *Manager) forget(t *Task) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tasks[key(t.ns, t.id)] == t {
		delete(m.tasks, key(t.ns, t.id))
	}
	c := t.shim
	if c != nil && m.conns[c.address] == c && c.isClosed() {
		delete(m.conns, c.address)
	}
}

func (m *Manager) closeLog(k string) {
	m.mu.Lock()
	f := m.logs[k]
	delete(m.logs, k)
	m.mu.Unlock()
	if f != nil {
		f.Close()
	}
}

func (m *Manager) publish(ns, topic string, ev any) {
	if m.cfg.Publisher == nil {
		return
	}
	ctx := namespaces.WithNamespace(context.Background(), ns)
	if err := m.cfg.Publisher.Publish(ctx, topic, ev); err != nil {
		m.log.Warn("publish event", "topic", topic, "namespace", ns, "error", err)
	}
}

// publishExit and publishDelete publish, for a task's init process, the
// events its shim would have, when the shim could not: it died, or the
// task ended while hulld was down.
func (m *Manager) publishExit(ns, id string, exit runtime.Exit) {
	m.publish(ns, "/tasks/exit", &eventtypes.TaskExit{
		ContainerID: id, ID: id, Pid: exit.Pid, ExitStatus: exit.Status, ExitedAt: protoconv.ToTime(exit.ExitedAt),
	})
}

func (m *Manager) publishDelete(ns, id string, exit runtime.Exit) {
	m.publish(ns, "/tasks/delete", &eventtypes.TaskDelete{
		ContainerID: id, ID: id, Pid: exit.Pid, ExitStatus: exit.Status, ExitedAt: protoconv.ToTime(exit.ExitedAt),
	})
}

// connClosed handles a shim connection that ended. Unless the manager
// asked the shim to go, the shim crashed or was killed: every task it
// served is cleaned up with the shim binary's delete command, recorded as
// exited with what that command reports, and its exit published.
func (m *Manager) connClosed(c *shimConn) {
	if c == nil || c.expectedClose() {
		return
	}
	m.mu.Lock()
	if m.conns[c.address] == c {
		delete(m.conns, c.address)
	}
	var victims []*Task
	for _, t := range m.tasks {
		if t.shim == c {
			victims = append(victims, t)
		}
	}
	m.mu.Unlock()
	for _, t := range victims {
		m.cleanupDead(t, "shim exited unexpectedly")
	}
}

func (m *Manager) cleanupDead(t *Task, reason string) {
	t.mu.Lock()
	if t.cleaning { // the connection closing and the reconciler may both come
		t.mu.Unlock()
		return
	}
	t.cleaning = true
	t.mu.Unlock()
	ctx := namespaces.WithNamespace(context.Background(), t.ns)
	// A shim that is alive but does not answer (stopped, stuck) is
	// killed by teardown with whatever else works on the bundle: its
	// task is being cleaned up without it.
	m.closeLog(key(t.ns, t.id))
	exit, err := m.teardown(ctx, t.bundle, shimRecord{Binary: t.binary, Address: t.shim.address}, true)
	if err != nil {
		m.log.Warn("clean up after the shim", "namespace", t.ns, "id", t.id, "error", err)
	}
	if exit.Pid == 0 {
		exit.Pid = t.pid
	}
	t.mu.Lock()
	t.dead, t.deadReason = &exit, reason
	close(t.deadc)
	t.mu.Unlock()
	m.log.Warn("task's shim is gone: task marked exited", "namespace", t.ns, "id", t.id, "reason", reason, "exit_status", exit.Status)
	m.publishExit(t.ns, t.id, exit)
}

// load reattaches the tasks found in the state directory.
func (m *Manager) load(ctx context.Context) {
	nsDirs, err := os.ReadDir(m.cfg.State)
	if err != nil {
		m.log.Warn("read runtime state", "dir", m.cfg.State, "error", err)
		return
	}
	for _, nsd := range nsDirs {
		if !nsd.IsDir() || nsd.Name() == "runc" {
			continue
		}
		ns := nsd.Name()
		ids, _ := os.ReadDir(filepath.Join(m.cfg.State, ns))
		for _, idd := range ids {
			if !idd.IsDir() {
				continue
			}
			if name, ok := strings.CutPrefix(idd.Name(), trashPrefix); ok {
				// A drain cut short: its task was already deleted.
				b := bundlePaths(m.cfg.State, m.cfg.Root, ns, name)
				b.Path = filepath.Join(m.cfg.State, ns, idd.Name())
				if err := b.remove(); err != nil {
					m.log.Warn("remove a deleted task's bundle", "bundle", b.Path, "error", err)
				}
				continue
			}
			b := bundlePaths(m.cfg.State, m.cfg.Root, ns, idd.Name())
			if err := m.loadTask(namespaces.WithNamespace(ctx, ns), b); err != nil {
				m.log.Warn("could not reattach task; cleaned it up", "namespace", ns, "id", b.ID, "error", err)
			}
		}
		// Bundles leave their namespace's directory behind (see
		// bundle.remove); nothing is being created yet, so the empty
		// ones can go now.
		os.Remove(filepath.Join(m.cfg.State, ns))
	}
	// runc containers of hulld's runc root that no task reattached are
	// what a create or delete cut short left; nothing is being created
	// yet, so they all go.
	m.sweepRunc(ctx, m.known, 0)
	m.sweepSockets()
	// Work directories whose bundle is gone are leftovers.
	nsDirs, _ = os.ReadDir(m.cfg.Root)
	for _, nsd := range nsDirs {
		ids, _ := os.ReadDir(filepath.Join(m.cfg.Root, nsd.Name()))
		for _, idd := range ids {
			if _, err := os.Stat(filepath.Join(m.cfg.State, nsd.Name(), idd.Name())); errors.Is(err, os.ErrNotExist) {
				os.RemoveAll(filepath.Join(m.cfg.Root, nsd.Name(), idd.Name()))
			}
		}
		os.Remove(filepath.Join(m.cfg.Root, nsd.Name()))
	}
}

func (m *Manager) loadTask(ctx context.Context, b *bundle) error {
	rec, err := b.readRecord()
	if err != nil {
		// hulld died before it started the shim; anything a newer
		// shim wrote into the bundle goes with it.
		if _, terr := m.teardown(ctx, b, shimRecord{}, true); terr != nil {
			m.log.Warn("remove bundle", "bundle", b.Path, "error", terr)
		}
		return fmt.Errorf("no shim record: %w", err)
	}
	if rec.State == recordStarting {
		// The client never heard of this task: hulld died before the
		// shim created it. Whatever the shim got to, it goes.
		if _, terr := m.teardown(ctx, b, rec, true); terr != nil {
			m.log.Warn("clean up a half-created task", "namespace", b.Namespace, "id", b.ID, "error", terr)
		}
		return errors.New("hulld stopped while it was creating the task; its shim, container and bundle were removed")
	}
	k := key(b.Namespace, b.ID)
	t := newTask(b.Namespace, b.ID, rec.Runtime, b, rec.Binary, nil)
	conn, err := m.connect(ctx, bootstrap{Version: rec.Version, Address: rec.Address})
	var st runtime.State
	if err == nil {
		t.shim = conn
		if _, err = conn.connect(ctx, b.Namespace, b.ID, 5*time.Second); err == nil {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			st, err = t.State(sctx, "")
			cancel()
		}
	}
	if err != nil && errdefs.IsNotFound(err) && conn != nil && !conn.isClosed() {
		// The shim answers but has no such task: deleted just before
		// hulld died, with the bundle not yet removed.
		exit := m.dropLost(ctx, t)
		m.publishExit(b.Namespace, b.ID, exit)
		return fmt.Errorf("its shim no longer has it: %w", err)
	}
	if err != nil {
		if conn != nil {
			conn.mu.Lock()
			conn.shuttingDown = true
			conn.mu.Unlock()
			conn.client.Close()
		}
		exit, terr := m.teardown(ctx, b, rec, true)
		if terr != nil {
			m.log.Warn("clean up after the shim", "namespace", b.Namespace, "id", b.ID, "error", terr)
		}
		m.publishExit(b.Namespace, b.ID, exit)
		m.publishDelete(b.Namespace, b.ID, exit)
		return err
	}
	t.pid = st.Pid
	if logf, err := openShimLog(b, m.log); err == nil {
		m.mu.Lock()
		m.logs[k] = logf
		m.mu.Unlock()
	}
	m.mu.Lock()
	m.tasks[k] = t
	m.mu.Unlock()
	// An exit while hulld was down reached no one: say it now.
	if st.Status == runtime.StatusStopped {
		m.publishExit(b.Namespace, b.ID, runtime.Exit{Pid: st.Pid, Status: st.ExitStatus, ExitedAt: st.ExitedAt})
	}
	m.log.Info("reattached task", "namespace", b.Namespace, "id", b.ID, "runtime", rec.Runtime, "pid", t.pid)
	return nil
}

func (m *Manager) reconcileLoop() {
	defer m.wg.Done()
	tick := time.NewTicker(m.cfg.ReconcileInterval)
	defer tick.Stop()
	// Close cancels a pass in progress: the shims it waits on bound
	// each call, and shutdown must not wait for all of them.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-m.stop
		cancel()
	}()
	for {
		select {
		case <-m.stop:
			return
		case <-tick.C:
			m.Reconcile(ctx)
		}
	}
}

// watchContainerDeletes removes the task of every container deleted
// while the manager runs.
func (m *Manager) watchContainerDeletes() {
	defer m.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, errs := m.cfg.Containers.Subscribe(ctx, `topic=="/containers/delete"`)
	for {
		select {
		case <-m.stop:
			return
		case err := <-errs:
			if err != nil {
				m.log.Warn("watch container deletions", "error", err)
			}
			return
		case env := <-ch:
			if env == nil {
				return
			}
			v, err := typeurl.UnmarshalAny(env.Event)
			ev, ok := v.(*eventtypes.ContainerDelete)
			if err != nil || !ok {
				continue
			}
			// Removing a task waits on its shim: off the event
			// stream's path.
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				m.ContainerDeleted(namespaces.WithNamespace(ctx, env.Namespace), ev.ID)
			}()
		}
	}
}

// known reports whether a task of that namespace and id is loaded or
// being created or deleted.
func (m *Manager) known(ns, id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := key(ns, id)
	_, ok := m.tasks[k]
	return ok || m.creating[k] || m.draining[k] != nil
}

// shimCallTimeout bounds each call the reconciler makes to one shim, so
// that a stuck shim delays a pass by that much at most.
const shimCallTimeout = 5 * time.Second

// Reconcile removes tasks whose container record is gone, cleans up after
// shims that stopped answering, and removes bundles and runc containers no
// task owns. It runs on a timer; tests call it directly. What it cannot
// clean is logged once, with the reason, and retried on the next pass.
func (m *Manager) Reconcile(ctx context.Context) {
	for _, t := range m.All() {
		if ctx.Err() != nil {
			return
		}
		tctx := namespaces.WithNamespace(ctx, t.ns)
		if exit, _ := t.deadExit(); exit != nil {
			// Kept for its client to read the exit, unless the client
			// deleted the container meanwhile.
			if m.cfg.ContainerExists != nil {
				if ok, err := m.cfg.ContainerExists(tctx, t.id); err == nil && !ok {
					m.forget(t)
				}
			}
			continue
		}
		_, err := t.shim.connect(tctx, t.ns, t.id, shimCallTimeout)
		if err == nil {
			sctx, cancel := context.WithTimeout(tctx, shimCallTimeout)
			_, err = t.State(sctx, "")
			cancel()
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			return // Close: a deadline of the caller's bounds the calls instead
		}
		if err != nil && (errdefs.IsUnavailable(err) || errors.Is(err, context.DeadlineExceeded)) {
			m.log.Warn("reconcile: shim does not answer; cleaning up", "namespace", t.ns, "id", t.id, "error", err)
			m.cleanupDead(t, "shim stopped answering")
			continue
		}
		if err != nil && errdefs.IsNotFound(err) {
			m.log.Warn("reconcile: shim has no such task; removing it", "namespace", t.ns, "id", t.id)
			m.cleanupDead(t, "shim lost the task")
			continue
		}
		if m.cfg.ContainerExists == nil {
			continue
		}
		ok, err := m.cfg.ContainerExists(tctx, t.id)
		if err != nil || ok {
			continue
		}
		m.removeOrphan(tctx, t)
	}
	// Bundles without a task: a create or delete that died half way.
	nsDirs, _ := os.ReadDir(m.cfg.State)
	for _, nsd := range nsDirs {
		if !nsd.IsDir() || nsd.Name() == "runc" {
			continue
		}
		ids, _ := os.ReadDir(filepath.Join(m.cfg.State, nsd.Name()))
		for _, idd := range ids {
			if ctx.Err() != nil {
				return
			}
			if m.known(nsd.Name(), idd.Name()) || strings.HasPrefix(idd.Name(), trashPrefix) {
				// Trash is its drain's, or the next start's, to remove.
				continue
			}
			info, err := idd.Info()
			if err != nil || time.Since(info.ModTime()) < time.Minute {
				continue // may be a create that has not registered yet
			}
			b := bundlePaths(m.cfg.State, m.cfg.Root, nsd.Name(), idd.Name())
			rec, _ := b.readRecord()
			what := "bundle " + b.Path
			if _, err := m.teardown(namespaces.WithNamespace(ctx, b.Namespace), b, rec, true); err != nil {
				m.cleanupFailed(what, err)
				continue
			}
			m.cleanedUp(what)
			m.log.Warn("reconcile: removed a bundle no task owns", "bundle", b.Path)
		}
	}
	m.sweepRunc(ctx, m.known, time.Minute)
}

// removeOrphan kills and deletes a task whose container record is gone
// (its client deleted the container without deleting the task), so that
// its shim, rootfs mount and processes do not outlive it.
func (m *Manager) removeOrphan(ctx context.Context, t *Task) {
	what := "task " + key(t.ns, t.id) + " without a container"
	m.log.Warn("task has no container record; killing and removing it", "namespace", t.ns, "id", t.id)
	kctx, cancel := context.WithTimeout(ctx, shimCallTimeout)
	t.Kill(kctx, "", 9, true)
	cancel()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	t.Wait(wctx, "")
	cancel()
	dctx, cancel := context.WithTimeout(ctx, m.cfg.StartTimeout)
	defer cancel()
	if _, err := m.Delete(dctx, t.id); err != nil && !errdefs.IsNotFound(err) {
		m.cleanupFailed(what, err)
		return
	}
	m.cleanedUp(what)
}

// ContainerDeleted removes the task of a container whose record was just
// deleted, at once rather than at the next reconcile: a client that
// deleted the container after failing to delete the task (a failed exec,
// a crash) leaves nothing running.
func (m *Manager) ContainerDeleted(ctx context.Context, id string) {
	t, err := m.get(ctx, id)
	if err != nil {
		return
	}
	if exit, _ := t.deadExit(); exit != nil {
		m.forget(t)
		return
	}
	if m.cfg.ContainerExists != nil {
		if ok, err := m.cfg.ContainerExists(ctx, id); err != nil || ok {
			return // recreated meanwhile
		}
	}
	m.removeOrphan(ctx, t)
}

// The manager and its tasks are what the tasks service holds through the
// core interfaces.
var (
	_ runtime.Runtime = (*Manager)(nil)
	_ runtime.Task    = (*Task)(nil)
)
