package task

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/api/types/runc/options"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/shim/events"
	"github.com/hullrt/hull/shim/reaper"
	"github.com/hullrt/hull/shim/runc"
	"github.com/hullrt/hull/shim/stdio"
)

// Publisher is where the container's events go.
type Publisher interface {
	Publish(topic string, event any)
}

// CreateConfig is what creating a container needs.
type CreateConfig struct {
	ID, Bundle, Namespace string
	Rootfs                []mount.Mount
	Stdio                 stdio.Config
	// Options are the runc options of the request (or of the shim's start).
	Options *options.Options
	// MinOOMScoreAdj is the lowest oom_score_adj the shim may give a
	// process; lower values in the spec are raised to it.
	MinOOMScoreAdj int
	// Reaper starts runc; Monitor receives the container's exits.
	Reaper  *reaper.Reaper
	Monitor *Monitor
	Events  Publisher
	Log     *slog.Logger
}

// Container is one container task: its init process and its execs.
type Container struct {
	ID, Bundle, Namespace string

	runc    *runc.Runc
	init    *Process
	monitor *Monitor
	events  Publisher
	log     *slog.Logger

	// runcOps orders runc's kill of the container and its delete: runc
	// kill --all (cgroup v1) freezes the container while it signals, and
	// an init that dies meanwhile has its exit handled, and the delete
	// asked for, before the kill thaws it; runc refuses to delete a
	// frozen ("paused") container.
	runcOps sync.Mutex

	mu     sync.Mutex
	execs  map[string]*Process
	paused bool
	rootfs string // the mounted rootfs, "" when none was mounted
	oom    func() // stops the OOM watcher
}

// DefaultRuncRoot is the runc state root used when the options name none:
// beside the runtime's task directory of the bundle, per namespace, so a
// test daemon on its own state directory never touches /run/containerd.
// A bundle <state>/io.containerd.runtime.v2.task/<ns>/<id> gives
// <state>/runc/<ns>.
func DefaultRuncRoot(bundle, namespace string) string {
	return filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(filepath.Clean(bundle)))), "runc", namespace)
}

// Create mounts the rootfs, runs runc create and returns the container
// with its init process created (not started).
func Create(ctx context.Context, c CreateConfig) (_ *Container, retErr error) {
	began := time.Now()
	opts := c.Options
	if opts == nil {
		opts = &options.Options{}
	}
	root := opts.Root
	if root == "" {
		root = DefaultRuncRoot(c.Bundle, c.Namespace)
	} else {
		root = filepath.Join(root, c.Namespace)
	}
	ct := &Container{
		ID: c.ID, Bundle: c.Bundle, Namespace: c.Namespace,
		runc: &runc.Runc{Binary: opts.BinaryName, Root: root, Log: filepath.Join(c.Bundle, "log.json"),
			SystemdCgroup: opts.SystemdCgroup, Reaper: c.Reaper,
			// Beside the namespaces' roots: every later shim of this
			// runtime root reads the probed version instead of running
			// `runc --version` again.
			VersionCache: filepath.Dir(root)},
		monitor: c.Monitor, events: c.Events, log: c.Log, execs: map[string]*Process{},
	}
	if err := os.MkdirAll(root, 0o711); err != nil {
		return nil, fmt.Errorf("runc root %q: %w", root, err)
	}
	if err := saveRecord(c.Bundle, RuntimeRecord{Binary: opts.BinaryName, Root: root, SystemdCgroup: opts.SystemdCgroup}); err != nil {
		return nil, err
	}
	spec, err := ClampOOMScoreAdj(filepath.Join(c.Bundle, "config.json"), c.MinOOMScoreAdj, c.Log)
	if err != nil {
		return nil, err
	}
	// The idmapped sources are needed only while runc create mounts
	// them into the container's own mount namespace.
	detachIDMapped, err := ct.idmapMounts(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("idmapped mounts of %s: %w", c.ID, err)
	}
	if detachIDMapped != nil {
		defer detachIDMapped()
	}
	if len(c.Rootfs) > 0 {
		rootfs := filepath.Join(c.Bundle, "rootfs")
		if err := os.MkdirAll(rootfs, 0o711); err != nil {
			return nil, err
		}
		if err := mount.All(c.Rootfs, rootfs); err != nil {
			return nil, fmt.Errorf("mount rootfs of %s at %s: %w", c.ID, rootfs, err)
		}
		ct.rootfs = rootfs
		defer func() {
			if retErr != nil {
				mount.UnmountAll(rootfs)
			}
		}()
	}
	cfg := c.Stdio
	cfg.UID, cfg.GID = int(opts.IoUid), int(opts.IoGid)
	ct.init = newProcess("", cfg, nil, ct.exited)
	prepared := time.Now()
	var runcTook time.Duration
	if err := ct.startProcess(ctx, ct.init, func(pidFile, console string, s runc.Stdio) error {
		began := time.Now()
		defer func() { runcTook = time.Since(began) }()
		return ct.runc.Create(ctx, c.ID, c.Bundle, runc.CreateOpts{Stdio: s, PidFile: pidFile,
			ConsoleSocket: console, NoPivot: opts.NoPivotRoot})
	}); err != nil {
		return nil, fmt.Errorf("OCI runtime create failed: %w", err)
	}
	created := time.Now()
	ct.oom = watchOOM(ct)
	if c.Log != nil {
		c.Log.Debug("create timings", "id", c.ID, "prepare", prepared.Sub(began), "runc_create", runcTook,
			"stdio", created.Sub(prepared)-runcTook, "oom_watch", time.Since(created))
	}
	return ct, nil
}

// startProcess sets up p's streams and runs create or exec through run,
// then registers the pid runc wrote.
func (ct *Container) startProcess(ctx context.Context, p *Process, run func(pidFile, console string, s runc.Stdio) error) error {
	pio, err := stdio.New(p.cfg)
	if err != nil {
		return err
	}
	pidFile := filepath.Join(ct.Bundle, "init.pid")
	if p.ID != "" {
		pidFile = filepath.Join(ct.Bundle, p.ID+".pid")
	}
	end := ct.monitor.begin()
	defer end()
	if err := run(pidFile, pio.ConsoleSocketPath(), pio.Child); err != nil {
		pio.Close()
		return err
	}
	if err := pio.Started(); err != nil {
		pio.Close()
		return err
	}
	pid, err := readPid(pidFile)
	if err != nil {
		pio.Close()
		return err
	}
	p.mu.Lock()
	p.io = pio
	p.mu.Unlock()
	ct.monitor.register(pid, p)
	return nil
}

func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s holds %q: %w", path, b, errdefs.ErrInvalidArgument)
	}
	return pid, nil
}

// exited publishes a process's exit and releases its streams.
func (ct *Container) exited(p *Process) {
	status, at, _ := p.Exit()
	id := p.ID
	if id == "" {
		id = ct.ID
	}
	ct.log.Debug("process exited", "id", ct.ID, "exec", p.ID, "pid", p.Pid(), "status", status)
	ct.events.Publish(events.TopicExit, &eventstypes.TaskExit{ContainerID: ct.ID, ID: id,
		Pid: uint32(p.Pid()), ExitStatus: uint32(status), ExitedAt: timestamppb.New(at)})
}

// Init is the container's init process.
func (ct *Container) Init() *Process { return ct.init }

// Process returns the init process for execID "" or the exec; NotFound
// otherwise.
func (ct *Container) Process(execID string) (*Process, error) {
	if execID == "" {
		return ct.init, nil
	}
	ct.mu.Lock()
	defer ct.mu.Unlock()
	p, ok := ct.execs[execID]
	if !ok {
		return nil, fmt.Errorf("exec %q of container %q: %w", execID, ct.ID, errdefs.ErrNotFound)
	}
	return p, nil
}

// Status is the process's status, with the container's pause applied.
func (ct *Container) Status(p *Process) tasktypes.Status {
	s := p.Status()
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if s == tasktypes.Status_RUNNING && ct.paused {
		return tasktypes.Status_PAUSED
	}
	return s
}

// Start starts the init process (runc start) or an exec (runc exec).
func (ct *Container) Start(ctx context.Context, execID string) (*Process, error) {
	p, err := ct.Process(execID)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	started := p.started
	p.mu.Unlock()
	if started {
		return nil, fmt.Errorf("process %q of %q already started: %w", execID, ct.ID, errdefs.ErrFailedPrecondition)
	}
	done := p.beginStart()
	defer done()
	if execID == "" {
		if _, _, ok := p.Exit(); ok {
			return nil, fmt.Errorf("container %q has exited: %w", ct.ID, errdefs.ErrFailedPrecondition)
		}
		if err := ct.runc.Start(ctx, ct.ID); err != nil {
			return nil, fmt.Errorf("OCI runtime start failed: %w", err)
		}
		p.mu.Lock()
		p.started = true
		p.mu.Unlock()
		ct.events.Publish(events.TopicStart, &eventstypes.TaskStart{ContainerID: ct.ID, Pid: uint32(p.Pid())})
		return p, nil
	}
	if ct.init.isGone() {
		return nil, fmt.Errorf("exec %q in container %q: the container's init process is not running: %w", execID, ct.ID, errdefs.ErrFailedPrecondition)
	}
	specFile := filepath.Join(ct.Bundle, execID+".process.json")
	if err := os.WriteFile(specFile, p.spec, 0o600); err != nil {
		return nil, err
	}
	defer os.Remove(specFile)
	err = ct.startProcess(ctx, p, func(pidFile, console string, s runc.Stdio) error {
		return ct.runc.Exec(ctx, ct.ID, specFile, runc.ExecOpts{Stdio: s, PidFile: pidFile, ConsoleSocket: console})
	})
	if err != nil {
		// The init process may have exited after the check above and
		// before its exit was reaped: runc then refuses the exec, and
		// the caller must hear that the task is stopped, not Unknown.
		if _, _, ok := ct.init.Exit(); ok || strings.Contains(err.Error(), "stopped container") {
			return nil, fmt.Errorf("exec %q in container %q: the container has exited: %w", execID, ct.ID, errdefs.ErrFailedPrecondition)
		}
		return nil, fmt.Errorf("OCI runtime exec failed: %w", err)
	}
	if ct.init.isGone() {
		// The init was killed or ended while runc joined the exec to
		// the container: in a container without a PID namespace of
		// its own nothing else would end the exec, which would
		// outlive its container (containerd issue 10589). Its exit
		// follows as any exec's does.
		if pid := p.Pid(); pid > 0 {
			unix.Kill(pid, unix.SIGKILL)
		}
		return nil, fmt.Errorf("exec %q in container %q: the container's init process ended while the exec started: %w", execID, ct.ID, errdefs.ErrFailedPrecondition)
	}
	p.mu.Lock()
	p.started = true
	p.mu.Unlock()
	ct.events.Publish(events.TopicExecStarted, &eventstypes.TaskExecStarted{ContainerID: ct.ID, ExecID: execID, Pid: uint32(p.Pid())})
	return p, nil
}

// Exec adds an exec process; runc runs it at Start.
func (ct *Container) Exec(execID string, cfg stdio.Config, spec []byte) error {
	if execID == "" {
		return fmt.Errorf("exec id is empty: %w", errdefs.ErrInvalidArgument)
	}
	if ct.init.isGone() {
		// Refused here, not only at start as containerd's runc shim
		// does: a client learns it before it sets up the exec's I/O.
		return fmt.Errorf("exec %q in container %q: the container's init process is not running: %w", execID, ct.ID, errdefs.ErrFailedPrecondition)
	}
	spec, err := withTerminal(spec, cfg.Terminal)
	if err != nil {
		return fmt.Errorf("process spec of exec %q in container %q: %w", execID, ct.ID, err)
	}
	ct.mu.Lock()
	if _, ok := ct.execs[execID]; ok {
		ct.mu.Unlock()
		return fmt.Errorf("exec %q of container %q: %w", execID, ct.ID, errdefs.ErrAlreadyExists)
	}
	cfg.UID, cfg.GID = ct.init.cfg.UID, ct.init.cfg.GID
	ct.execs[execID] = newProcess(execID, cfg, spec, ct.exited)
	ct.mu.Unlock()
	ct.events.Publish(events.TopicExecAdded, &eventstypes.TaskExecAdded{ContainerID: ct.ID, ExecID: execID})
	return nil
}

// withTerminal sets the exec's process spec's terminal to what its
// request asked for, as containerd's runc shim does: the request decides
// whether there is a console, and runc refuses a console socket for a
// process without a terminal (and a terminal without one). Other fields,
// known or not, are kept as they are; every spelling of "terminal" that
// runc's JSON decoder would take (it ignores case) is replaced.
func withTerminal(spec []byte, terminal bool) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(spec, &fields); err != nil || fields == nil {
		return nil, fmt.Errorf("not a JSON object (%v): %w", err, errdefs.ErrInvalidArgument)
	}
	for k := range fields {
		if strings.EqualFold(k, "terminal") {
			delete(fields, k)
		}
	}
	fields["terminal"] = json.RawMessage(strconv.FormatBool(terminal))
	return json.Marshal(fields)
}

// Kill signals the init process (through runc, so that all reaches every
// process of the container) or an exec.
func (ct *Container) Kill(ctx context.Context, execID string, sig int, all bool) error {
	p, err := ct.Process(execID)
	if err != nil {
		return err
	}
	if _, _, ok := p.Exit(); ok && !all {
		if execID == "" {
			return fmt.Errorf("container %q has exited: %w", ct.ID, errdefs.ErrNotFound)
		}
		return fmt.Errorf("exec %q of %q has exited: %w", execID, ct.ID, errdefs.ErrNotFound)
	}
	if execID == "" {
		ct.runcOps.Lock()
		err := ct.runc.Kill(ctx, ct.ID, sig, all)
		ct.runcOps.Unlock()
		if err != nil {
			return err
		}
		if sig == int(unix.SIGKILL) {
			// The init cannot survive it: from now on no exec may
			// join the container, though its exit is not reaped yet.
			ct.init.markGone()
		}
		return nil
	}
	pid := p.Pid()
	if pid == 0 {
		return fmt.Errorf("exec %q of %q is not started: %w", execID, ct.ID, errdefs.ErrFailedPrecondition)
	}
	if err := unix.Kill(pid, unix.Signal(sig)); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("exec %q of %q (pid %d): %w", execID, ct.ID, pid, errdefs.ErrNotFound)
		}
		return fmt.Errorf("signal %d to exec %q (pid %d): %w", sig, execID, pid, err)
	}
	return nil
}

// DeleteExec removes a stopped (or never started) exec.
func (ct *Container) DeleteExec(execID string) (*Process, error) {
	p, err := ct.Process(execID)
	if err != nil {
		return nil, err
	}
	if p.Status() == tasktypes.Status_RUNNING {
		return nil, fmt.Errorf("exec %q of %q is running: %w", execID, ct.ID, errdefs.ErrFailedPrecondition)
	}
	ct.mu.Lock()
	delete(ct.execs, execID)
	ct.mu.Unlock()
	p.mu.Lock()
	io := p.io
	p.mu.Unlock()
	if io != nil {
		io.Close()
	}
	return p, nil
}

// Delete removes the container: runc delete, the rootfs unmounted, the
// streams closed. A running init is refused; a created one is killed.
func (ct *Container) Delete(ctx context.Context) (*Process, error) {
	p := ct.init
	if p.Status() == tasktypes.Status_RUNNING {
		return nil, fmt.Errorf("container %q is running: %w", ct.ID, errdefs.ErrFailedPrecondition)
	}
	_, _, exited := p.Exit()
	ct.runcOps.Lock()
	err := ct.runc.Delete(ctx, ct.ID, !exited)
	ct.runcOps.Unlock()
	if err != nil && !runc.IsNotFound(err) {
		return nil, fmt.Errorf("OCI runtime delete failed: %w", err)
	}
	if !exited {
		// runc delete --force killed the created process; its exit
		// follows shortly.
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		p.Wait(wctx)
		cancel()
	}
	ct.release()
	return p, nil
}

// release undoes what Create set up, once.
func (ct *Container) release() {
	ct.mu.Lock()
	rootfs, stopOOM := ct.rootfs, ct.oom
	ct.rootfs, ct.oom = "", nil
	execs := ct.execs
	ct.mu.Unlock()
	if stopOOM != nil {
		stopOOM()
	}
	for _, e := range execs {
		if e.io != nil {
			e.io.Close()
		}
	}
	ct.init.mu.Lock()
	io := ct.init.io
	ct.init.mu.Unlock()
	if io != nil {
		io.Close()
	}
	if rootfs != "" {
		if err := mount.UnmountAll(rootfs); err != nil {
			ct.log.Warn("unmount rootfs", "id", ct.ID, "path", rootfs, "error", err)
		}
	}
}

// Pause freezes the container.
func (ct *Container) Pause(ctx context.Context) error {
	if err := ct.runc.Pause(ctx, ct.ID); err != nil {
		return err
	}
	ct.mu.Lock()
	ct.paused = true
	ct.mu.Unlock()
	ct.events.Publish(events.TopicPaused, &eventstypes.TaskPaused{ContainerID: ct.ID})
	return nil
}

// Resume thaws the container.
func (ct *Container) Resume(ctx context.Context) error {
	if err := ct.runc.Resume(ctx, ct.ID); err != nil {
		return err
	}
	ct.mu.Lock()
	ct.paused = false
	ct.mu.Unlock()
	ct.events.Publish(events.TopicResumed, &eventstypes.TaskResumed{ContainerID: ct.ID})
	return nil
}

// Update applies new resources (runtime-spec LinuxResources in JSON).
func (ct *Container) Update(ctx context.Context, resources []byte) error {
	return ct.runc.Update(ctx, ct.ID, resources)
}

// Pids lists the container's processes, with the exec ID of those that
// are execs.
func (ct *Container) Pids(ctx context.Context) ([]int, map[int]string, error) {
	pids, err := ct.runc.Ps(ctx, ct.ID)
	if err != nil {
		return nil, nil, err
	}
	execs := map[int]string{}
	ct.mu.Lock()
	for id, e := range ct.execs {
		if pid := e.Pid(); pid != 0 {
			execs[pid] = id
		}
	}
	ct.mu.Unlock()
	return pids, execs, nil
}
