package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/client/cio"
	"github.com/hullrt/hull/cri/containerio"
	"github.com/hullrt/hull/cri/spec"
)

// container is a CRI container of a pod.
type container struct {
	rec    containerRecord
	config *runtime.ContainerConfig
	// dir holds the status file and the image's volumes; ioDir the FIFOs.
	dir, ioDir string
	stopSignal syscall.Signal

	// mu serialises start, stop and remove.
	mu sync.Mutex

	stMu sync.RWMutex
	st   containerStatus
	io   *containerio.ContainerIO
	// exited is closed once the exit is recorded; nil before a start.
	exited chan struct{}
	// oomKilled is set by the OOM event that precedes the exit.
	oomKilled bool
	// imageRefs collects the image volumes while the container is made.
	imageRefs []imageMountRef
	// resources and user are what the status reports of the spec.
	resources *runtime.ContainerResources
	user      *runtime.ContainerUser
}

func (c *container) status() containerStatus {
	c.stMu.RLock()
	defer c.stMu.RUnlock()
	return c.st
}

func (c *container) state() runtime.ContainerState {
	st := c.status()
	switch {
	case st.FinishedAt != 0:
		return runtime.ContainerState_CONTAINER_EXITED
	case st.StartedAt != 0:
		return runtime.ContainerState_CONTAINER_RUNNING
	case st.Starting:
		return runtime.ContainerState_CONTAINER_UNKNOWN
	}
	return runtime.ContainerState_CONTAINER_CREATED
}

// update changes the status and writes it down before anyone sees it.
func (c *container) update(fn func(*containerStatus)) error {
	c.stMu.Lock()
	defer c.stMu.Unlock()
	st := c.st
	fn(&st)
	if err := writeStatus(statusPath(c.dir), st); err != nil {
		return fmt.Errorf("container %q: record status: %w", c.rec.ID, err)
	}
	c.st = st
	return nil
}

func (s *Service) containersOf(sandboxID string) []*container {
	var out []*container
	for _, c := range s.containers.list() {
		if c.rec.SandboxID == sandboxID {
			out = append(out, c)
		}
	}
	return out
}

// logPath joins the pod's log directory and the container's log path,
// refusing a path that leaves the directory.
func logPath(dir, rel string) (string, error) {
	if rel == "" {
		return "", nil
	}
	if dir == "" {
		return "", fmt.Errorf("container log path %q given but the pod has no log directory: %w", rel, errdefs.ErrInvalidArgument)
	}
	if filepath.IsAbs(rel) {
		return "", fmt.Errorf("container log path %q must be relative to the pod's log directory %q: %w", rel, dir, errdefs.ErrInvalidArgument)
	}
	p := filepath.Join(dir, rel)
	if !strings.HasPrefix(p, filepath.Clean(dir)+string(filepath.Separator)) {
		return "", fmt.Errorf("container log path %q leaves the pod's log directory %q: %w", rel, dir, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// CreateContainer creates a container in a ready pod from a local image.
func (s *Service) CreateContainer(ctx context.Context, r *runtime.CreateContainerRequest) (_ *runtime.CreateContainerResponse, retErr error) {
	cfg := r.GetConfig()
	if cfg == nil || cfg.GetMetadata() == nil || cfg.GetMetadata().GetName() == "" {
		return nil, fmt.Errorf("container config has no metadata name: %w", errdefs.ErrInvalidArgument)
	}
	if cfg.GetImage().GetImage() == "" {
		return nil, fmt.Errorf("container %q: no image given: %w", cfg.GetMetadata().GetName(), errdefs.ErrInvalidArgument)
	}
	sb, err := s.sandboxes.get(r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if !sb.isReady() {
		return nil, fmt.Errorf("pod sandbox %q is not ready: %w", sb.rec.ID, errdefs.ErrFailedPrecondition)
	}
	ctx = s.nsCtx(ctx)
	id := newID()
	name := containerName(cfg.GetMetadata(), sb.config.GetMetadata())
	undo, err := reserveName(s.containerNames, "container", name, id)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			undo.run(ctx)
		}
	}()
	img, err := s.images.Resolve(ctx, cfg.GetImage().GetImage())
	if errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("container %q: image %q is not present: pull it first: %w", name, cfg.GetImage().GetImage(), errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", name, err)
	}
	lp, err := logPath(sb.config.GetLogDirectory(), cfg.GetLogPath())
	if err != nil {
		return nil, err
	}
	c := &container{
		config: cfg,
		dir:    filepath.Join(s.cfg.Root, "containers", id),
		ioDir:  filepath.Join(s.cfg.State, "containers", id),
	}
	c.rec = containerRecord{ID: id, Name: name, SandboxID: sb.rec.ID, ImageRef: img.ID, ImageName: cfg.GetImage().GetImage(),
		LogPath: lp, CreatedAt: time.Now().UnixNano()}
	if c.rec.Config, err = marshalConfig(cfg); err != nil {
		return nil, err
	}
	if err := undo.mkdirs(c.dir, c.ioDir); err != nil {
		return nil, err
	}
	_, h, err := s.handler(sb.rec.RuntimeHandler)
	if err != nil {
		return nil, err
	}
	rtOpts, err := runtimeOptions(h)
	if err != nil {
		return nil, err
	}
	snapshotter := s.snapshotter(h)
	// In a pod's user namespace, the root filesystem is owned by the
	// namespace's root.
	snapOpts, err := usernsSnapshotOpts(sb.config.GetLinux().GetSecurityContext().GetNamespaceOptions())
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", name, err)
	}
	var volumes []specs.Mount
	if len(img.Config.Config.Volumes) > 0 && !s.cfg.Runtime.IgnoreImageDefinedVolumes {
		if volumes, err = s.imageVolumes(ctx, snapshotter, img.ChainID.String(), id, img.Config.Config.Volumes, filepath.Join(c.dir, "volumes")); err != nil {
			return nil, fmt.Errorf("container %q: image volumes: %w", name, err)
		}
	}
	imageMounts, err := s.mountImages(ctx, snapshotter, c, cfg.GetMounts(), undo)
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", name, err)
	}
	opts, err := spec.ContainerOpts(spec.Container{
		ID: id, Config: cfg, Image: img.Config.Config, ImageName: cfg.GetImage().GetImage(),
		Sandbox:      spec.SandboxRef{ID: sb.rec.ID, Config: sb.config, Pid: sb.pausePid(), NetNSPath: sb.rec.NetNSPath},
		HostnamePath: filepath.Join(sb.rootDir, "hostname"), HostsPath: filepath.Join(sb.rootDir, "hosts"),
		ResolvConfPath: filepath.Join(sb.rootDir, "resolv.conf"), ShmPath: sb.shmPath(),
		Volumes: volumes, ImageMounts: imageMounts, RuntimeHandler: sb.rec.RuntimeHandler,
		TargetPid: s.targetPid(cfg),
	}, s.specOpts)
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", name, err)
	}
	c.rec.ImageMounts = c.imageRefs
	c.rec.StopSignal = img.Config.Config.StopSignal
	ext, err := extension(recordTypeCtr, c.rec)
	if err != nil {
		return nil, err
	}
	labels := map[string]string{}
	for k, v := range cfg.GetLabels() {
		labels[k] = v
	}
	labels[kindLabel], labels[sandboxIDLabel] = kindContainer, sb.rec.ID
	ctr, err := s.client.NewContainer(ctx, id,
		client.WithContainerSnapshotter(snapshotter),
		client.WithNewSnapshotFromParent(id, img.ChainID.String(), snapOpts...),
		client.WithImageName(img.Name),
		client.WithNewSpec(opts...),
		client.WithRuntime(h.RuntimeType, rtOpts),
		client.WithContainerLabels(labels),
		client.WithContainerExtension(containerExtension, ext),
		client.WithSandbox(sb.rec.ID),
	)
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", name, err)
	}
	if sp, err := ctr.Spec(ctx); err == nil {
		c.user = containerUser(sp)
	}
	if lr := cfg.GetLinux().GetResources(); lr != nil {
		c.resources = &runtime.ContainerResources{Linux: lr}
	}
	c.stopSignal = parseSignal(c.rec.StopSignal)
	if err := c.update(func(*containerStatus) {}); err != nil {
		s.client.ContainerService().Delete(context.WithoutCancel(ctx), id)
		return nil, err
	}
	s.containers.add(id, c)
	s.hub.containerEvent(c, runtime.ContainerEventType_CONTAINER_CREATED_EVENT, s)
	return &runtime.CreateContainerResponse{ContainerId: id}, nil
}

// targetPid is the pid of the container whose PID namespace a container
// targets (kubectl debug), or 0.
func (s *Service) targetPid(cfg *runtime.ContainerConfig) uint32 {
	ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	if ns.GetPid() != runtime.NamespaceMode_TARGET {
		return 0
	}
	t, err := s.containers.get(ns.GetTargetId())
	if err != nil {
		return 0
	}
	return t.status().Pid
}

func parseSignal(name string) syscall.Signal {
	if name == "" {
		return syscall.SIGTERM
	}
	n := strings.TrimPrefix(strings.ToUpper(name), "SIG")
	for sig := syscall.Signal(1); sig < 65; sig++ {
		if strings.TrimPrefix(unix.SignalName(sig), "SIG") == n {
			return sig
		}
	}
	var num int
	if _, err := fmt.Sscanf(name, "%d", &num); err == nil && num > 0 && num < 65 {
		return syscall.Signal(num)
	}
	return syscall.SIGTERM
}

// StartContainer starts a created container, its output going to its CRI
// log.
func (s *Service) StartContainer(ctx context.Context, r *runtime.StartContainerRequest) (_ *runtime.StartContainerResponse, retErr error) {
	c, err := s.containers.get(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.state(); st != runtime.ContainerState_CONTAINER_CREATED {
		return nil, fmt.Errorf("container %q is %s, not created: %w", c.rec.ID, stateName(st), errdefs.ErrFailedPrecondition)
	}
	sb, err := s.sandboxes.get(c.rec.SandboxID)
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", c.rec.ID, err)
	}
	if !sb.isReady() {
		return nil, fmt.Errorf("container %q: pod sandbox %q is not ready: %w", c.rec.ID, sb.rec.ID, errdefs.ErrFailedPrecondition)
	}
	ctx = s.nsCtx(ctx)
	if c.rec.LogPath != "" {
		// The kubelet makes the pod's log directory; a container's own
		// subdirectory is the runtime's to make, as containerd does.
		if err := os.MkdirAll(filepath.Dir(c.rec.LogPath), 0o755); err != nil {
			return nil, fmt.Errorf("container %q: log directory: %w", c.rec.ID, err)
		}
	}
	cio, err := containerio.New(c.rec.ID, s.ioOptions(c))
	if err != nil {
		return nil, fmt.Errorf("container %q: stdio: %w", c.rec.ID, err)
	}
	startFailed := func(err error) error {
		cio.Close()
		c.update(func(st *containerStatus) {
			st.Starting, st.FinishedAt, st.ExitCode, st.Reason, st.Message = false, time.Now().UnixNano(), 128, "StartError", err.Error()
		})
		return err
	}
	if err := c.update(func(st *containerStatus) { st.Starting = true }); err != nil {
		cio.Close()
		return nil, err
	}
	ctr, err := s.client.LoadContainer(ctx, c.rec.ID)
	if err != nil {
		return nil, startFailed(err)
	}
	_, h, _ := s.handler(sb.rec.RuntimeHandler)
	var taskOpts []client.NewTaskOpts
	if h.RuntimePath != "" {
		taskOpts = append(taskOpts, client.WithRuntimePath(h.RuntimePath))
	}
	exited := make(chan struct{})
	c.stMu.Lock()
	c.io, c.exited = cio, exited
	c.stMu.Unlock()
	task, err := ctr.NewTask(ctx, func(string) (cioIO, error) { return cio, nil }, taskOpts...)
	if err != nil {
		return nil, startFailed(fmt.Errorf("container %q: create task: %w", c.rec.ID, err))
	}
	if err := task.Start(ctx); err != nil {
		task.Delete(context.WithoutCancel(ctx), client.WithProcessKill)
		return nil, startFailed(fmt.Errorf("container %q: start: %w", c.rec.ID, err))
	}
	if err := c.update(func(st *containerStatus) {
		st.Starting, st.Pid, st.StartedAt = false, task.Pid(), time.Now().UnixNano()
	}); err != nil {
		return nil, err
	}
	s.hub.containerEvent(c, runtime.ContainerEventType_CONTAINER_STARTED_EVENT, s)
	return &runtime.StartContainerResponse{}, nil
}

// cioIO is client/cio's IO, named here to keep the Creator literal short.
type cioIO = cio.IO

func (s *Service) ioOptions(c *container) containerio.Options {
	return containerio.Options{
		Dir: c.ioDir, Stdin: c.config.GetStdin(), StdinOnce: c.config.GetStdinOnce(), Terminal: c.config.GetTty(),
		LogPath: c.rec.LogPath, MaxLineSize: s.cfg.Runtime.MaxContainerLogLineSize,
		Buffers: s.outputBuffers,
	}
}

// StopContainer signals a running container with its stop signal, then
// SIGKILL after timeout seconds, and returns once it exited. A container
// not running, or unknown, is no error.
func (s *Service) StopContainer(ctx context.Context, r *runtime.StopContainerRequest) (*runtime.StopContainerResponse, error) {
	c, err := s.containers.get(r.GetContainerId())
	if err != nil {
		return &runtime.StopContainerResponse{}, ignoreNotFound(err)
	}
	if err := s.stopContainer(s.nsCtx(ctx), c, r.GetTimeout()); err != nil {
		return nil, err
	}
	return &runtime.StopContainerResponse{}, nil
}

func (s *Service) stopContainer(ctx context.Context, c *container, timeout int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state() != runtime.ContainerState_CONTAINER_RUNNING {
		return nil
	}
	c.stMu.RLock()
	exited := c.exited
	c.stMu.RUnlock()
	ctr, err := s.client.LoadContainer(ctx, c.rec.ID)
	if err != nil {
		return err
	}
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		// The task went without our seeing its exit: record an unknown
		// exit rather than wait for one that will not come.
		s.recordExit(c, 255, time.Now(), "Unknown", "the task was gone")
		return nil
	}
	if err != nil {
		return err
	}
	if timeout > 0 {
		sig := c.stopSignal
		if sig == 0 {
			sig = syscall.SIGTERM
		}
		if err := task.Kill(ctx, sig); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
			if exitedMeanwhile(exited) {
				return nil
			}
			return fmt.Errorf("container %q: send %v: %w", c.rec.ID, sig, err)
		}
		t := time.NewTimer(time.Duration(timeout) * time.Second)
		defer t.Stop()
		select {
		case <-exited:
			return nil
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := task.Kill(ctx, syscall.SIGKILL, client.WithKillAll); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
		if exitedMeanwhile(exited) {
			return nil
		}
		return fmt.Errorf("container %q: kill: %w", c.rec.ID, err)
	}
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// exitedMeanwhile reports whether a container whose kill failed exited
// after all: a process that exits while it is signalled takes its runc
// state with it, and the kill then fails for want of it. Its exit is
// recorded moments later.
func exitedMeanwhile(exited <-chan struct{}) bool {
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-exited:
		return true
	case <-t.C:
		return false
	}
}

// RemoveContainer removes a container, killing it first if it runs.
// Removing an unknown container is no error.
func (s *Service) RemoveContainer(ctx context.Context, r *runtime.RemoveContainerRequest) (*runtime.RemoveContainerResponse, error) {
	c, err := s.containers.get(r.GetContainerId())
	if err != nil {
		return &runtime.RemoveContainerResponse{}, ignoreNotFound(err)
	}
	ctx = s.nsCtx(ctx)
	if err := s.stopContainer(ctx, c, 0); err != nil {
		return nil, err
	}
	if err := s.removeContainer(ctx, c); err != nil {
		return nil, err
	}
	return &runtime.RemoveContainerResponse{}, nil
}

func (s *Service) removeContainer(ctx context.Context, c *container) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.update(func(st *containerStatus) { st.Removing = true }); err != nil && !os.IsNotExist(err) {
		s.log.Warn("cannot record removal", "id", c.rec.ID, "error", err)
	}
	if ctr, err := s.client.LoadContainer(ctx, c.rec.ID); err == nil {
		// A start that never finished, or an exit whose task delete
		// failed, may have left a task.
		if t, err := ctr.Task(ctx, nil); err == nil {
			unlock := s.taskLocks.lock(c.rec.ID)
			_, err := t.Delete(ctx, client.WithProcessKill)
			unlock()
			if err != nil && !errdefs.IsNotFound(err) {
				return fmt.Errorf("container %q: delete its task: %w", c.rec.ID, err)
			}
		}
		if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete container %q: %w", c.rec.ID, err)
		}
	} else if !errdefs.IsNotFound(err) {
		return err
	}
	c.stMu.Lock()
	if c.io != nil {
		c.io.Close()
		c.io = nil
	}
	c.stMu.Unlock()
	s.unmountImages(ctx, c)
	if err := errJoin(os.RemoveAll(c.dir), os.RemoveAll(c.ioDir)); err != nil {
		return fmt.Errorf("container %q: remove its directories: %w", c.rec.ID, err)
	}
	s.containers.remove(c.rec.ID)
	s.containerNames.release(c.rec.Name, c.rec.ID)
	s.hub.containerEvent(c, runtime.ContainerEventType_CONTAINER_DELETED_EVENT, s)
	return nil
}

func stateName(st runtime.ContainerState) string {
	return strings.ToLower(strings.TrimPrefix(st.String(), "CONTAINER_"))
}
