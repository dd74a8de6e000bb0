package server

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/cri/netns"
)

// StopPodSandbox kills the pod's containers and its pause process and
// releases its network (IP, veth, port mappings, namespace) and shm. It is
// idempotent: a pod already stopped, or unknown, is no error.
func (s *Service) StopPodSandbox(ctx context.Context, r *runtime.StopPodSandboxRequest) (*runtime.StopPodSandboxResponse, error) {
	sb, err := s.sandboxes.get(r.GetPodSandboxId())
	if err != nil {
		return &runtime.StopPodSandboxResponse{}, ignoreNotFound(err)
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if err := s.stopSandbox(s.nsCtx(ctx), sb); err != nil {
		return nil, err
	}
	return &runtime.StopPodSandboxResponse{}, nil
}

// stopSandbox does StopPodSandbox's work; the caller holds sb.mu.
func (s *Service) stopSandbox(ctx context.Context, sb *sandbox) error {
	for _, c := range s.containersOf(sb.rec.ID) {
		if err := s.stopContainer(ctx, c, 0); err != nil {
			return fmt.Errorf("stop container %q of pod sandbox %q: %w", c.rec.ID, sb.rec.ID, err)
		}
	}
	if err := s.stopPause(ctx, sb); err != nil {
		return err
	}
	if err := s.releaseNetwork(ctx, sb); err != nil {
		return err
	}
	if shm := sb.shmPath(); shm != "" {
		if err := unmountAll(shm); err != nil {
			return err
		}
	}
	return nil
}

// stopPause kills the pause process and deletes its task.
func (s *Service) stopPause(ctx context.Context, sb *sandbox) error {
	ctr, err := s.client.LoadContainer(ctx, sb.rec.ID)
	if err != nil {
		if errdefs.IsNotFound(err) {
			sb.markExited()
			return nil
		}
		return err
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		if errdefs.IsNotFound(err) {
			sb.markExited()
			return nil
		}
		return err
	}
	exitC, err := task.Wait(ctx)
	if err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	if err := task.Kill(ctx, syscall.SIGKILL, client.WithKillAll); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
		return fmt.Errorf("kill pause of pod sandbox %q: %w", sb.rec.ID, err)
	}
	if exitC != nil {
		select {
		case <-exitC:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := s.deleteTask(ctx, sb.rec.ID); err != nil {
		return fmt.Errorf("delete pause task of pod sandbox %q: %w", sb.rec.ID, err)
	}
	wasReady := sb.isReady()
	sb.markExited()
	if wasReady {
		s.hub.sandboxEvent(sb, runtime.ContainerEventType_CONTAINER_STOPPED_EVENT, s)
	}
	return nil
}

// releaseNetwork removes the pod from its networks and removes its
// namespace, once.
func (s *Service) releaseNetwork(ctx context.Context, sb *sandbox) error {
	sb.stateMu.RLock()
	done := sb.netReleased
	sb.stateMu.RUnlock()
	if done || sb.hostNetwork() || sb.rec.NetNSPath == "" {
		return nil
	}
	if err := s.network.Teardown(ctx, s.cniPod(sb, portMappings(sb.config.GetPortMappings()))); err != nil {
		return fmt.Errorf("pod sandbox %q: network teardown: %w", sb.rec.ID, err)
	}
	if err := netns.Load(sb.rec.NetNSPath).Remove(); err != nil {
		return fmt.Errorf("pod sandbox %q: remove network namespace: %w", sb.rec.ID, err)
	}
	sb.stateMu.Lock()
	sb.netReleased = true
	sb.stateMu.Unlock()
	return nil
}

// RemovePodSandbox stops the pod if needed and removes it with all its
// containers. Removing an unknown pod is no error.
func (s *Service) RemovePodSandbox(ctx context.Context, r *runtime.RemovePodSandboxRequest) (*runtime.RemovePodSandboxResponse, error) {
	sb, err := s.sandboxes.get(r.GetPodSandboxId())
	if err != nil {
		return &runtime.RemovePodSandboxResponse{}, ignoreNotFound(err)
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	ctx = s.nsCtx(ctx)
	if err := s.stopSandbox(ctx, sb); err != nil {
		return nil, err
	}
	for _, c := range s.containersOf(sb.rec.ID) {
		if err := s.removeContainer(ctx, c); err != nil {
			return nil, fmt.Errorf("remove container %q of pod sandbox %q: %w", c.rec.ID, sb.rec.ID, err)
		}
	}
	if ctr, err := s.client.LoadContainer(ctx, sb.rec.ID); err == nil {
		if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("delete pause container of pod sandbox %q: %w", sb.rec.ID, err)
		}
	} else if !errdefs.IsNotFound(err) {
		return nil, err
	}
	if err := s.client.SandboxStore().Delete(ctx, sb.rec.ID); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsNotImplemented(err) {
		return nil, fmt.Errorf("pod sandbox %q: remove from the sandbox store: %w", sb.rec.ID, err)
	}
	if err := errJoin(os.RemoveAll(sb.rootDir), os.RemoveAll(sb.stateDir)); err != nil {
		return nil, fmt.Errorf("pod sandbox %q: remove its directories: %w", sb.rec.ID, err)
	}
	s.sandboxes.remove(sb.rec.ID)
	s.sandboxNames.release(sb.rec.Name, sb.rec.ID)
	s.hub.sandboxEvent(sb, runtime.ContainerEventType_CONTAINER_DELETED_EVENT, s)
	return &runtime.RemovePodSandboxResponse{}, nil
}

// sandboxState is the state a pod shows.
func sandboxState(sb *sandbox) runtime.PodSandboxState {
	if sb.isReady() {
		return runtime.PodSandboxState_SANDBOX_READY
	}
	return runtime.PodSandboxState_SANDBOX_NOTREADY
}

func (s *Service) sandboxStatus(sb *sandbox) *runtime.PodSandboxStatus {
	st := &runtime.PodSandboxStatus{
		Id:             sb.rec.ID,
		Metadata:       sb.config.GetMetadata(),
		State:          sandboxState(sb),
		CreatedAt:      sb.rec.CreatedAt,
		Labels:         sb.config.GetLabels(),
		Annotations:    sb.config.GetAnnotations(),
		RuntimeHandler: sb.rec.RuntimeHandler,
		Network:        &runtime.PodSandboxNetworkStatus{},
		Linux: &runtime.LinuxPodSandboxStatus{Namespaces: &runtime.Namespace{
			Options: sb.config.GetLinux().GetSecurityContext().GetNamespaceOptions(),
		}},
	}
	if len(sb.rec.IPs) > 0 && !sb.hostNetwork() {
		st.Network.Ip = sb.rec.IPs[0]
		for _, ip := range sb.rec.IPs[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtime.PodIP{Ip: ip})
		}
	}
	return st
}

// PodSandboxStatus reports a pod; verbose adds what hull knows of it
// (pause pid, network namespace, CNI result) as JSON under "info".
func (s *Service) PodSandboxStatus(ctx context.Context, r *runtime.PodSandboxStatusRequest) (*runtime.PodSandboxStatusResponse, error) {
	sb, err := s.sandboxes.get(r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	resp := &runtime.PodSandboxStatusResponse{Status: s.sandboxStatus(sb)}
	if r.GetVerbose() {
		info := map[string]any{
			"pid":              sb.pausePid(),
			"netNamespacePath": sb.rec.NetNSPath,
			"runtimeHandler":   sb.rec.RuntimeHandler,
			"runtimeType":      sb.rec.RuntimeType,
			"image":            sb.rec.Image,
			"cniResult":        json.RawMessage(orNull(sb.rec.CNIResult)),
			"config":           json.RawMessage(sb.rec.Config),
		}
		b, _ := json.Marshal(info)
		resp.Info = map[string]string{"info": string(b)}
	}
	for _, c := range s.containersOf(sb.rec.ID) {
		resp.ContainersStatuses = append(resp.ContainersStatuses, s.containerStatus(c))
	}
	resp.Timestamp = nowNano()
	return resp, nil
}

func orNull(b []byte) []byte {
	if len(b) == 0 {
		return []byte("null")
	}
	return b
}

// ListPodSandbox lists pods matching the filter: id (or a prefix), state
// and labels, newest first. Like ListContainers, which the kubelet calls
// with it every second, it shares each pod's item among the responses that
// show it in the same state.
func (s *Service) ListPodSandbox(ctx context.Context, r *runtime.ListPodSandboxRequest) (*runtime.ListPodSandboxResponse, error) {
	out := collect(func(fn func(*runtime.PodSandbox, *cachedItem) error) error {
		return s.listPodSandbox(r.GetFilter(), fn)
	})
	return &runtime.ListPodSandboxResponse{Items: out}, nil
}

// ListPodSandboxEncoded is ListPodSandbox answered in protobuf's wire
// form, as ListContainersEncoded is.
func (s *Service) ListPodSandboxEncoded(ctx context.Context, r *runtime.ListPodSandboxRequest) ([]byte, error) {
	return encodeList(s.sandboxes.len(), r.GetFilter(), &s.lastSandboxes,
		func(fn func(*runtime.PodSandbox, *cachedItem) error) error {
			return s.listPodSandbox(r.GetFilter(), fn)
		})
}

// listPodSandbox calls fn with the list item of every pod f matches, in
// the order of ListPodSandbox.
func (s *Service) listPodSandbox(f *runtime.PodSandboxFilter, fn func(*runtime.PodSandbox, *cachedItem) error) error {
	for _, e := range s.sandboxes.sorted(newestSandboxFirst) {
		sb := e.v
		if f.GetId() != "" && !hasPrefix(sb.rec.ID, f.GetId()) {
			continue
		}
		state := sandboxState(sb)
		if f.GetState() != nil && f.GetState().GetState() != state {
			continue
		}
		if !labelsMatch(sb.config.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		if err := fn(listItem(e, state, sandboxItem)); err != nil {
			return err
		}
	}
	return nil
}

// newestSandboxFirst is the order of ListPodSandbox.
func newestSandboxFirst(a, b *sandbox) int {
	if c := cmp.Compare(b.rec.CreatedAt, a.rec.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(a.rec.ID, b.rec.ID)
}

// sandboxItem is what ListPodSandbox shows of sb in state; all the rest is
// fixed when sb is made.
func sandboxItem(sb *sandbox, state runtime.PodSandboxState) *runtime.PodSandbox {
	return &runtime.PodSandbox{
		Id: sb.rec.ID, Metadata: sb.config.GetMetadata(), State: state, CreatedAt: sb.rec.CreatedAt,
		Labels: sb.config.GetLabels(), Annotations: sb.config.GetAnnotations(), RuntimeHandler: sb.rec.RuntimeHandler,
	}
}

func hasPrefix(id, p string) bool { return len(id) >= len(p) && id[:len(p)] == p }

func labelsMatch(labels, selector map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}
