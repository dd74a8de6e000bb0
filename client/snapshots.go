package client

import (
	"context"

	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/snapshots"
)

// SnapshotService returns hulld's snapshotter name ("" for hulld's default)
// in the namespace of each call's context. A snapshotter the daemon does not
// have fails every call with NotFound naming it.
func (c *Client) SnapshotService(name string) snapshots.Snapshotter {
	sn, err := c.services.Snapshotters.Snapshotter(name)
	if err != nil {
		return failedSnapshotter{err}
	}
	return sn
}

// failedSnapshotter answers every call with the error that finding the
// snapshotter gave.
type failedSnapshotter struct{ err error }

func (f failedSnapshotter) Stat(context.Context, string) (snapshots.Info, error) {
	return snapshots.Info{}, f.err
}

func (f failedSnapshotter) Update(context.Context, snapshots.Info, ...string) (snapshots.Info, error) {
	return snapshots.Info{}, f.err
}

func (f failedSnapshotter) Usage(context.Context, string) (snapshots.Usage, error) {
	return snapshots.Usage{}, f.err
}

func (f failedSnapshotter) Mounts(context.Context, string) ([]mount.Mount, error) { return nil, f.err }

func (f failedSnapshotter) Prepare(context.Context, string, string, ...snapshots.Opt) ([]mount.Mount, error) {
	return nil, f.err
}

func (f failedSnapshotter) View(context.Context, string, string, ...snapshots.Opt) ([]mount.Mount, error) {
	return nil, f.err
}

func (f failedSnapshotter) Commit(context.Context, string, string, ...snapshots.Opt) error {
	return f.err
}
func (f failedSnapshotter) Remove(context.Context, string) error                      { return f.err }
func (f failedSnapshotter) Walk(context.Context, snapshots.WalkFunc, ...string) error { return f.err }
func (f failedSnapshotter) Close() error                                              { return nil }
