package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/cri/spec"
)

// imageVolumes prepares the volumes an image declares: a directory each
// under dir holding what the image has at that path, read through a
// read-only view of the image (never through the container's own
// snapshot, which the container may already have changed).
func (s *Service) imageVolumes(ctx context.Context, snapshotter, parent, id string, volumes map[string]struct{}, dir string) ([]specs.Mount, error) {
	sn := s.client.SnapshotService(snapshotter)
	key := "cri-volumes-" + id
	mounts, err := sn.View(ctx, key, parent)
	if err != nil {
		return nil, err
	}
	defer sn.Remove(context.WithoutCancel(ctx), key)
	var out []specs.Mount
	err = mount.WithTempMount(ctx, mounts, func(root string) error {
		var err error
		out, err = spec.PrepareImageVolumes(ctx, root, volumes, dir)
		return err
	})
	return out, err
}

// mountImages mounts the images CRI mounts name (image volumes), each
// read-only from a view snapshot under the container's state directory,
// and returns where each went.
func (s *Service) mountImages(ctx context.Context, snapshotter string, c *container, mounts []*runtime.Mount, undo *cleanups) (map[*runtime.Mount]string, error) {
	var out map[*runtime.Mount]string
	for i, m := range mounts {
		if m.GetImage().GetImage() == "" {
			continue
		}
		if !m.GetReadonly() {
			return nil, fmt.Errorf("image mount %q at %q must be read-only: images are never written: %w", m.GetImage().GetImage(), m.GetContainerPath(), errdefs.ErrInvalidArgument)
		}
		img, err := s.images.Resolve(ctx, m.GetImage().GetImage())
		if err != nil {
			return nil, fmt.Errorf("image mount %q at %q: %w", m.GetImage().GetImage(), m.GetContainerPath(), err)
		}
		sn := s.client.SnapshotService(snapshotter)
		key := imageMountKey(c.rec.ID, i)
		sms, err := sn.View(ctx, key, img.ChainID.String())
		if err != nil {
			return nil, fmt.Errorf("image mount %q: %w", m.GetImage().GetImage(), err)
		}
		undo.add(func(ctx context.Context) { sn.Remove(ctx, key) })
		target := filepath.Join(c.ioDir, "image-mounts", strconv.Itoa(i))
		if err := os.MkdirAll(target, 0o700); err != nil {
			return nil, err
		}
		if err := mount.All(sms, target); err != nil {
			return nil, fmt.Errorf("image mount %q: %w", m.GetImage().GetImage(), err)
		}
		undo.add(func(context.Context) { mount.UnmountAll(target) })
		if out == nil {
			out = map[*runtime.Mount]string{}
		}
		// The sub path is resolved inside the image by the spec.
		out[m] = target
		c.imageRefs = append(c.imageRefs, imageMountRef{ContainerPath: m.GetContainerPath(), Image: m.GetImage().GetImage(), ImageRef: img.ID})
	}
	return out, nil
}

func imageMountKey(id string, i int) string { return fmt.Sprintf("cri-image-mount-%s-%d", id, i) }

// unmountImages undoes mountImages for a container being removed.
func (s *Service) unmountImages(ctx context.Context, c *container) {
	dir := filepath.Join(c.ioDir, "image-mounts")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	_, h, _ := s.handler(s.sandboxHandler(c.rec.SandboxID))
	sn := s.client.SnapshotService(s.snapshotter(h))
	for _, e := range entries {
		target := filepath.Join(dir, e.Name())
		mount.UnmountAll(target)
		if i, err := strconv.Atoi(e.Name()); err == nil {
			sn.Remove(ctx, imageMountKey(c.rec.ID, i))
		}
	}
}

func (s *Service) sandboxHandler(id string) string {
	if sb, err := s.sandboxes.get(id); err == nil {
		return sb.rec.RuntimeHandler
	}
	return ""
}
