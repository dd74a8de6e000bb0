package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/client/cio"
	"github.com/hullrt/hull/cri/containerio"
	"github.com/hullrt/hull/cri/streaming"
)

// execOptions describe one exec in a container.
type execOptions struct {
	cmd            []string
	stdin          io.Reader
	stdout, stderr io.Writer
	tty            bool
	resize         <-chan remotecommand.TerminalSize
	timeout        time.Duration
}

// exec runs a process in a running container and returns its exit code.
// On timeout the process is killed and the error is DeadlineExceeded.
func (s *Service) exec(ctx context.Context, containerID string, o execOptions) (uint32, error) {
	if len(o.cmd) == 0 {
		return 0, fmt.Errorf("exec in container %q: no command given: %w", containerID, errdefs.ErrInvalidArgument)
	}
	c, err := s.containers.get(containerID)
	if err != nil {
		return 0, err
	}
	if c.state() != runtime.ContainerState_CONTAINER_RUNNING {
		return 0, fmt.Errorf("container %q is %s, not running: %w", c.rec.ID, stateName(c.state()), errdefs.ErrFailedPrecondition)
	}
	ctx = s.nsCtx(ctx)
	ctr, err := s.client.LoadContainer(ctx, c.rec.ID)
	if err != nil {
		return 0, err
	}
	sp, err := ctr.Spec(ctx)
	if err != nil {
		return 0, err
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("container %q: %w", c.rec.ID, err)
	}
	proc := specs.Process{}
	if sp.Process != nil {
		proc = *sp.Process
	}
	proc.Args, proc.Terminal = o.cmd, o.tty
	proc.ConsoleSize = nil
	execID := newID()[:32]
	dir := filepath.Join(c.ioDir, "exec-"+execID)
	var stdin io.Reader
	if o.stdin != nil {
		stdin = o.stdin
	}
	p, err := task.Exec(ctx, execID, &proc, containerio.NewExec(dir, stdin, o.stdout, o.stderr, o.tty))
	if err != nil {
		return 0, fmt.Errorf("exec in container %q: %w", c.rec.ID, err)
	}
	bg := context.WithoutCancel(ctx)
	defer p.Delete(bg, client.WithProcessKill)
	exitC, err := p.Wait(bg)
	if err != nil {
		return 0, err
	}
	if err := p.Start(ctx); err != nil {
		return 0, fmt.Errorf("exec in container %q: start: %w", c.rec.ID, err)
	}
	if o.resize != nil {
		go func() {
			for sz := range o.resize {
				p.ResizePty(bg, uint32(sz.Width), uint32(sz.Height))
			}
		}()
	}
	var timeout <-chan time.Time
	if o.timeout > 0 {
		t := time.NewTimer(o.timeout)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case st := <-exitC:
		s.drainExec(p.IO())
		code, _, err := st.Result()
		return code, err
	case <-timeout:
		p.Kill(bg, syscall.SIGKILL)
		<-exitC
		return 0, fmt.Errorf("exec in container %q: command %q timed out after %v: %w", c.rec.ID, o.cmd, o.timeout, context.DeadlineExceeded)
	case <-ctx.Done():
		p.Kill(bg, syscall.SIGKILL)
		<-exitC
		return 0, ctx.Err()
	}
}

// drainExec waits for the exec's output to be copied: until the pipes
// close, or for drain_exec_sync_io_timeout when one is set, since a
// background child may hold them open for ever.
func (s *Service) drainExec(pio cio.IO) {
	if pio == nil {
		return
	}
	if s.execDrain > 0 {
		waitTimeout(pio.Wait, s.execDrain)
		return
	}
	pio.Wait()
}

// ExecSync runs a command in a container and returns its output, capped at
// exec_sync_max_output bytes per stream.
func (s *Service) ExecSync(ctx context.Context, r *runtime.ExecSyncRequest) (*runtime.ExecSyncResponse, error) {
	max := s.cfg.Runtime.ExecSyncMaxOutput
	if max <= 0 {
		max = 16 << 20
	}
	stdout, stderr := containerio.NewCappedBuffer(max), containerio.NewCappedBuffer(max)
	code, err := s.exec(ctx, r.GetContainerId(), execOptions{
		cmd: r.GetCmd(), stdout: stdout, stderr: stderr, timeout: time.Duration(r.GetTimeout()) * time.Second,
	})
	if err != nil {
		return nil, err
	}
	return &runtime.ExecSyncResponse{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: int32(code)}, nil
}

func (s *Service) checkRunning(id string) (*container, error) {
	c, err := s.containers.get(id)
	if err != nil {
		return nil, err
	}
	if c.state() != runtime.ContainerState_CONTAINER_RUNNING {
		return nil, fmt.Errorf("container %q is %s, not running: %w", c.rec.ID, stateName(c.state()), errdefs.ErrFailedPrecondition)
	}
	return c, nil
}

// Exec returns a single-use URL of the streaming server for an exec.
func (s *Service) Exec(ctx context.Context, r *runtime.ExecRequest) (*runtime.ExecResponse, error) {
	if _, err := s.checkRunning(r.GetContainerId()); err != nil {
		return nil, err
	}
	return s.stream.GetExec(r)
}

// Attach returns a single-use URL of the streaming server for an attach.
func (s *Service) Attach(ctx context.Context, r *runtime.AttachRequest) (*runtime.AttachResponse, error) {
	if _, err := s.checkRunning(r.GetContainerId()); err != nil {
		return nil, err
	}
	return s.stream.GetAttach(r)
}

// PortForward returns a single-use URL of the streaming server for port
// forwarding into a pod.
func (s *Service) PortForward(ctx context.Context, r *runtime.PortForwardRequest) (*runtime.PortForwardResponse, error) {
	sb, err := s.sandboxes.get(r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if !sb.isReady() {
		return nil, fmt.Errorf("pod sandbox %q is not ready: %w", sb.rec.ID, errdefs.ErrFailedPrecondition)
	}
	return s.stream.GetPortForward(r)
}

// streamRuntime is what the streaming server calls back.
type streamRuntime struct{ s *Service }

func (rt streamRuntime) Exec(ctx context.Context, containerID string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	var stdout, stderr io.Writer
	if out != nil {
		stdout = out
	}
	if errw != nil {
		stderr = errw
	}
	code, err := rt.s.exec(ctx, containerID, execOptions{cmd: cmd, stdin: in, stdout: stdout, stderr: stderr, tty: tty, resize: resize})
	if err != nil {
		return err
	}
	if code != 0 {
		return &exitError{code: int(code)}
	}
	return nil
}

func (rt streamRuntime) Attach(ctx context.Context, containerID string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	c, err := rt.s.checkRunning(containerID)
	if err != nil {
		return err
	}
	c.stMu.RLock()
	cio := c.io
	c.stMu.RUnlock()
	if cio == nil {
		return fmt.Errorf("container %q has no stdio to attach to: %w", c.rec.ID, errdefs.ErrFailedPrecondition)
	}
	if resize != nil {
		ctx := rt.s.nsCtx(ctx)
		go func() {
			ctr, err := rt.s.client.LoadContainer(ctx, c.rec.ID)
			if err != nil {
				return
			}
			task, err := ctr.Task(ctx, nil)
			if err != nil {
				return
			}
			for sz := range resize {
				task.ResizePty(ctx, uint32(sz.Width), uint32(sz.Height))
			}
		}()
	}
	return cio.Attach(ctx, in, out, errw)
}

func (rt streamRuntime) PortForward(ctx context.Context, podSandboxID string, port int32, stream io.ReadWriteCloser) error {
	sb, err := rt.s.sandboxes.get(podSandboxID)
	if err != nil {
		return err
	}
	ns := sb.rec.NetNSPath
	if sb.hostNetwork() || ns == "" {
		// A host-network pod's loopback is hulld's own.
		ns = "/proc/self/ns/net"
	}
	return streaming.PortForward(ctx, ns, port, stream)
}

// exitError carries a non-zero exit code of an exec to the streaming
// server, which reports it to the client as such.
type exitError struct{ code int }

func (e *exitError) Error() string {
	return fmt.Sprintf("command terminated with exit code %d", e.code)
}
func (e *exitError) String() string  { return e.Error() }
func (e *exitError) Exited() bool    { return true }
func (e *exitError) ExitStatus() int { return e.code }

var _ = errors.New
