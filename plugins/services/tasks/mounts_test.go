package tasks

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	api "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/mount/manager"
)

// fakeActivator answers Activate with err, or with system as the mounts
// left, and records the calls.
type fakeActivator struct {
	manager.Activator
	err         error
	system      []mount.Mount
	activated   []manager.ActivateOptions
	rootfs      [][]mount.Mount
	deactivated []string
}

func (f *fakeActivator) Activate(_ context.Context, name string, ms []mount.Mount, opts ...manager.ActivateOpt) (manager.ActivationInfo, error) {
	var o manager.ActivateOptions
	for _, opt := range opts {
		opt(&o)
	}
	f.activated = append(f.activated, o)
	f.rootfs = append(f.rootfs, ms)
	if f.err != nil {
		return manager.ActivationInfo{}, fmt.Errorf("activation %q: %w", name, f.err)
	}
	return manager.ActivationInfo{Name: name, System: f.system}, nil
}

func (f *fakeActivator) Info(_ context.Context, name string) (manager.ActivationInfo, error) {
	return manager.ActivationInfo{Name: name, System: f.system}, nil
}

func (f *fakeActivator) Deactivate(_ context.Context, name string) error {
	f.deactivated = append(f.deactivated, name)
	return nil
}

func TestCreateActivatesRootfs(t *testing.T) {
	system := []mount.Mount{{Type: "bind", Source: "/activated", Options: []string{"rbind"}}}
	for _, tc := range []struct {
		name        string
		err         error
		want        []mount.Mount
		deactivates bool
	}{
		{"activated", nil, system, true},
		{"nothing to do", errdefs.ErrNotImplemented, rootMounts, false},
		// A task created again over its container's activation uses it
		// and does not own it.
		{"already active", errdefs.ErrAlreadyExists, system, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := newFakeRuntime()
			l, _, ctx := newLocal(t, rt)
			fa := &fakeActivator{err: tc.err, system: system}
			l.WithMountManager(fa)
			if _, err := l.Create(ctx, &api.CreateTaskRequest{ContainerID: "c1"}); err != nil {
				t.Fatal(err)
			}
			if len(fa.rootfs) != 1 || !reflect.DeepEqual(fa.rootfs[0], rootMounts) {
				t.Errorf("activated %v, want the snapshot's mounts", fa.rootfs)
			}
			if got := fa.activated[0].Labels["containerd.io/gc.bref.container"]; got != "c1" {
				t.Errorf("back reference label %q, want c1", got)
			}
			if got := rt.created[0].opts.Rootfs; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("shim's rootfs %v, want %v", got, tc.want)
			}
			if _, err := l.Delete(ctx, &api.DeleteTaskRequest{ContainerID: "c1"}); err != nil {
				t.Fatal(err)
			}
			if len(fa.deactivated) != 1 || fa.deactivated[0] != "c1" {
				t.Errorf("deactivated %v after delete", fa.deactivated)
			}
		})
	}
}

func TestCreateActivationFailures(t *testing.T) {
	rt := newFakeRuntime()
	l, _, ctx := newLocal(t, rt)
	fa := &fakeActivator{err: fmt.Errorf("mount type %q: %w", "nosuchfs", errdefs.ErrInvalidArgument)}
	l.WithMountManager(fa)
	_, err := l.Create(ctx, &api.CreateTaskRequest{ContainerID: "c1"})
	if !errdefs.IsInvalidArgument(err) || len(rt.created) != 0 {
		t.Errorf("create over a failed activation: %v, runtime called %d times", err, len(rt.created))
	}
	// The runtime fails: the activation this create made is undone.
	fa.err, fa.system = nil, []mount.Mount{{Type: "bind", Source: "/x"}}
	rt.createErr = errors.New("shim failed")
	if _, err := l.Create(ctx, &api.CreateTaskRequest{ContainerID: "c1"}); err == nil {
		t.Fatal("create worked with a failing runtime")
	}
	if len(fa.deactivated) != 1 || fa.deactivated[0] != "c1" {
		t.Errorf("deactivated %v after a failed create", fa.deactivated)
	}
}
