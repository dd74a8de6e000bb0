package server

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/client"
)

func nowNano() int64 { return time.Now().UnixNano() }

func (s *Service) containerStatus(c *container) *runtime.ContainerStatus {
	st := c.status()
	state := c.state()
	cs := &runtime.ContainerStatus{
		Id:          c.rec.ID,
		Metadata:    c.config.GetMetadata(),
		State:       state,
		CreatedAt:   c.rec.CreatedAt,
		StartedAt:   st.StartedAt,
		FinishedAt:  st.FinishedAt,
		ExitCode:    st.ExitCode,
		Reason:      st.Reason,
		Message:     st.Message,
		Labels:      c.config.GetLabels(),
		Annotations: c.config.GetAnnotations(),
		Mounts:      statusMounts(c),
		LogPath:     c.rec.LogPath,
		ImageRef:    c.rec.ImageRef,
		ImageId:     c.rec.ImageRef,
		Image:       &runtime.ImageSpec{Image: c.rec.ImageName, UserSpecifiedImage: c.config.GetImage().GetUserSpecifiedImage(), Annotations: c.config.GetImage().GetAnnotations()},
	}
	if img, err := s.images.Resolve(s.nsCtx(context.Background()), c.rec.ImageRef); err == nil {
		if len(img.RepoTags) > 0 {
			cs.Image.Image = img.RepoTags[0]
		}
		if len(img.RepoDigests) > 0 {
			cs.ImageRef = img.RepoDigests[0]
		}
	}
	if c.stMu.TryRLock() {
		cs.Resources, cs.User = c.resources, c.user
		c.stMu.RUnlock()
	}
	return cs
}

// statusMounts are the container's mounts, image volumes with the id of
// the image they show.
func statusMounts(c *container) []*runtime.Mount {
	if len(c.rec.ImageMounts) == 0 {
		return c.config.GetMounts()
	}
	out := make([]*runtime.Mount, 0, len(c.config.GetMounts()))
	for _, m := range c.config.GetMounts() {
		if m.GetImage() != nil {
			for _, im := range c.rec.ImageMounts {
				if im.ContainerPath == m.GetContainerPath() {
					m = proto.Clone(m).(*runtime.Mount)
					m.Image.ImageRef = im.ImageRef
					break
				}
			}
		}
		out = append(out, m)
	}
	return out
}

// ContainerStatus reports a container; an unknown one is NotFound, which
// the kubelet relies on.
func (s *Service) ContainerStatus(ctx context.Context, r *runtime.ContainerStatusRequest) (*runtime.ContainerStatusResponse, error) {
	c, err := s.containers.get(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	resp := &runtime.ContainerStatusResponse{Status: s.containerStatus(c)}
	if r.GetVerbose() {
		st := c.status()
		info := map[string]any{
			"sandboxID": c.rec.SandboxID,
			"pid":       st.Pid,
			"config":    json.RawMessage(c.rec.Config),
		}
		if sp, err := s.containerSpec(s.nsCtx(ctx), c.rec.ID); err == nil {
			info["runtimeSpec"] = sp
		}
		b, _ := json.Marshal(info)
		resp.Info = map[string]string{"info": string(b)}
	}
	return resp, nil
}

func (s *Service) containerSpec(ctx context.Context, id string) (*specs.Spec, error) {
	ctr, err := s.client.LoadContainer(ctx, id)
	if err != nil {
		return nil, err
	}
	return ctr.Spec(ctx)
}

// ListContainers lists containers matching the filter: id (or a prefix),
// pod sandbox id (or a prefix), state and labels, newest first. The kubelet
// calls it every second for all containers: each item is made once per
// state of its container and shared by the responses that show it (see
// listItem), so they must not be modified.
func (s *Service) ListContainers(ctx context.Context, r *runtime.ListContainersRequest) (*runtime.ListContainersResponse, error) {
	out := collect(func(fn func(*runtime.Container, *cachedItem) error) error { return s.listContainers(r.GetFilter(), fn) })
	return &runtime.ListContainersResponse{Containers: out}, nil
}

// ListContainersEncoded is ListContainers answered in protobuf's wire
// form, from the encodings kept with the items: what a server sends to
// the kubelet's relist, where most items did not change since the last.
func (s *Service) ListContainersEncoded(ctx context.Context, r *runtime.ListContainersRequest) ([]byte, error) {
	return encodeList(s.containers.len(), r.GetFilter(), &s.lastContainers,
		func(fn func(*runtime.Container, *cachedItem) error) error { return s.listContainers(r.GetFilter(), fn) })
}

// listContainers calls fn with the list item of every container f matches,
// in the order of ListContainers.
func (s *Service) listContainers(f *runtime.ContainerFilter, fn func(*runtime.Container, *cachedItem) error) error {
	for _, e := range s.containers.sorted(newestContainerFirst) {
		c := e.v
		if f.GetId() != "" && !hasPrefix(c.rec.ID, f.GetId()) {
			continue
		}
		if f.GetPodSandboxId() != "" && !hasPrefix(c.rec.SandboxID, f.GetPodSandboxId()) {
			continue
		}
		state := c.state()
		if f.GetState() != nil && f.GetState().GetState() != state {
			continue
		}
		if !labelsMatch(c.config.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		if err := fn(listItem(e, state, containerItem)); err != nil {
			return err
		}
	}
	return nil
}

// newestContainerFirst is the order of ListContainers.
func newestContainerFirst(a, b *container) int {
	if c := cmp.Compare(b.rec.CreatedAt, a.rec.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(a.rec.ID, b.rec.ID)
}

// containerItem is what ListContainers shows of c in state; all the rest
// is fixed when c is made.
func containerItem(c *container, state runtime.ContainerState) *runtime.Container {
	return &runtime.Container{
		Id: c.rec.ID, PodSandboxId: c.rec.SandboxID, Metadata: c.config.GetMetadata(),
		Image:    &runtime.ImageSpec{Image: c.rec.ImageName, UserSpecifiedImage: c.config.GetImage().GetUserSpecifiedImage()},
		ImageRef: c.rec.ImageRef, ImageId: c.rec.ImageRef,
		State: state, CreatedAt: c.rec.CreatedAt,
		Labels: c.config.GetLabels(), Annotations: c.config.GetAnnotations(),
	}
}

// UpdateContainerResources changes a container's cgroup limits, in its
// record and, when it runs, in its cgroup.
func (s *Service) UpdateContainerResources(ctx context.Context, r *runtime.UpdateContainerResourcesRequest) (*runtime.UpdateContainerResourcesResponse, error) {
	c, err := s.containers.get(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx = s.nsCtx(ctx)
	lr := r.GetLinux()
	if lr == nil {
		return &runtime.UpdateContainerResourcesResponse{}, nil
	}
	ctr, err := s.client.LoadContainer(ctx, c.rec.ID)
	if err != nil {
		return nil, err
	}
	sp, err := ctr.Spec(ctx)
	if err != nil {
		return nil, err
	}
	res := linuxResources(lr, s.cfg.MinOOMScoreAdj)
	if sp.Linux == nil {
		sp.Linux = &specs.Linux{}
	}
	sp.Linux.Resources = mergeResources(sp.Linux.Resources, res)
	if lr.GetOomScoreAdj() != 0 && sp.Process != nil {
		adj := clampOOM(int(lr.GetOomScoreAdj()), s.cfg.MinOOMScoreAdj)
		sp.Process.OOMScoreAdj = &adj
	}
	if err := ctr.Update(ctx, func(_ context.Context, _ *client.Client, rec *containersRecord) error {
		return setSpec(rec, sp)
	}); err != nil {
		return nil, fmt.Errorf("container %q: record resources: %w", c.rec.ID, err)
	}
	if c.state() == runtime.ContainerState_CONTAINER_RUNNING {
		task, err := ctr.Task(ctx, nil)
		if err == nil {
			if err := task.Update(ctx, client.WithResources(sp.Linux.Resources)); err != nil {
				return nil, fmt.Errorf("container %q: update cgroup: %w", c.rec.ID, err)
			}
		} else if !errdefs.IsNotFound(err) {
			return nil, err
		}
	}
	c.stMu.Lock()
	c.resources = &runtime.ContainerResources{Linux: lr}
	c.stMu.Unlock()
	return &runtime.UpdateContainerResourcesResponse{}, nil
}

// ReopenContainerLog reopens a running container's log file after the
// kubelet rotated it.
func (s *Service) ReopenContainerLog(ctx context.Context, r *runtime.ReopenContainerLogRequest) (*runtime.ReopenContainerLogResponse, error) {
	c, err := s.containers.get(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	if c.state() != runtime.ContainerState_CONTAINER_RUNNING {
		return nil, fmt.Errorf("container %q is not running: %w", c.rec.ID, errdefs.ErrFailedPrecondition)
	}
	c.stMu.RLock()
	cio := c.io
	c.stMu.RUnlock()
	if cio == nil {
		return nil, fmt.Errorf("container %q has no output attached: %w", c.rec.ID, errdefs.ErrFailedPrecondition)
	}
	if err := cio.ReopenLog(); err != nil {
		return nil, fmt.Errorf("container %q: reopen log %s: %w", c.rec.ID, c.rec.LogPath, err)
	}
	return &runtime.ReopenContainerLogResponse{}, nil
}
