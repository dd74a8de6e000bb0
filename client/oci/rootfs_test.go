package oci

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/snapshots"
)

func TestReadonlyMounts(t *testing.T) {
	in := []mount.Mount{
		{Type: "overlay", Source: "overlay", Options: []string{"index=off", "workdir=/s/2/work", "upperdir=/s/2/fs", "lowerdir=/s/1/fs:/s/0/fs"}},
		{Type: "overlay", Source: "overlay", Options: []string{"workdir=/s/1/work", "upperdir=/s/1/fs", "lowerdir=/s/0/fs", "volatile"}},
		{Type: "overlay", Source: "overlay", Options: []string{"workdir=/s/1/work", "upperdir=/s/a:b/fs"}},
		{Type: "bind", Source: "/s/3/fs", Options: []string{"rbind", "rw"}},
	}
	want := []mount.Mount{
		{Type: "overlay", Source: "overlay", Options: []string{"index=off", "lowerdir=/s/2/fs:/s/1/fs:/s/0/fs", "ro"}},
		{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/s/1/fs:/s/0/fs", "ro"}},
		{Type: "bind", Source: "/s/a:b/fs", Options: []string{"rbind", "ro"}},
		{Type: "bind", Source: "/s/3/fs", Options: []string{"rbind", "ro"}},
	}
	got := readonlyMounts(in)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	for _, m := range got {
		if !mount.ReadOnly(m) {
			t.Errorf("%+v is not read-only", m)
		}
	}
}

type errSnapshotter struct{ snapshots.Snapshotter }

func (errSnapshotter) Mounts(context.Context, string) ([]mount.Mount, error) {
	return nil, errdefs.ErrNotFound
}

type errClient struct{ name *string }

func (c errClient) SnapshotService(n string) snapshots.Snapshotter {
	*c.name = n
	return errSnapshotter{}
}

func TestUserFromSnapshotErrors(t *testing.T) {
	var asked string
	c := &containers.Container{ID: "c", Snapshotter: "overlayfs", SnapshotKey: "key"}
	_, err := GenerateSpec(testCtx(), errClient{&asked}, c, WithUser("app"))
	if !errors.Is(err, errdefs.ErrNotFound) || asked != "overlayfs" {
		t.Fatalf("got %v from snapshotter %q", err, asked)
	}
	_, err = GenerateSpec(testCtx(), nil, c, WithUser("app"))
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("nil client: %v", err)
	}
}
