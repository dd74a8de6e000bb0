package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/client/cio"
	"github.com/hullrt/hull/client/oci"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/internal/hulltest"
)

// TestTaskStress runs 200 create/start/kill/delete cycles through hulld
// and hull's shim, 20 at a time, and checks that nothing is left: no
// container, task, snapshot, bundle, shim, mount or FIFO.
func TestTaskStress(t *testing.T) {
	taskRuntimes(t) // builds the shim next to hulld
	d := startForTasks(t, hulltest.Options{})
	ref := "example.test/busybox:stress"
	importWithCtr(t, d, "stress", ref, busyboxImage(t))
	c, ctx := newClient(t, d, "stress")
	img, err := c.GetImage(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	before := countSnapshots(t, ctx, c)
	fifos := filepath.Join(t.TempDir(), "fifo")

	const cycles, parallel = 200, 20
	errs := make(chan error, cycles)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := 0; i < cycles; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := stressCycle(ctx, c, img, fmt.Sprintf("s%03d", i), fifos); err != nil {
				errs <- fmt.Errorf("cycle %d: %w", i, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	if cs, err := c.Containers(ctx); err != nil || len(cs) != 0 {
		t.Fatalf("containers left: %d (%v)", len(cs), err)
	}
	if after := countSnapshots(t, ctx, c); after != before {
		t.Fatalf("snapshots: %d before, %d after", before, after)
	}
	waitBundlesGone(t, d.State, "stress")
	// Nor cgroups: each task's leaf cgroup goes with it, under every
	// controller (the namespace's parent cgroup stays, as with runc).
	ctrls, _ := os.ReadDir("/sys/fs/cgroup")
	for _, ctrl := range ctrls {
		left, _ := os.ReadDir(filepath.Join("/sys/fs/cgroup", ctrl.Name(), "stress"))
		for _, e := range left {
			if e.IsDir() {
				t.Errorf("cgroup %s left", filepath.Join("/sys/fs/cgroup", ctrl.Name(), "stress", e.Name()))
			}
		}
	}
	assertNoLeaks(t, d, fifos)
}

// waitBundlesGone waits until namespace ns has no task bundle left under
// the state directory state. A bundle goes once its shim has exited,
// which Delete does not wait for (the task's "drain"): the last ones may
// still be going when a test's last Delete returns.
func waitBundlesGone(t *testing.T, state, ns string) {
	t.Helper()
	hulltest.Eventually(t, 10*time.Second, "the bundles to go", func() error {
		if left, _ := os.ReadDir(filepath.Join(state, "io.containerd.runtime.v2.task", ns)); len(left) != 0 {
			names := make([]string, len(left))
			for i, e := range left {
				names[i] = e.Name()
			}
			return fmt.Errorf("bundles left: %v", names)
		}
		return nil
	})
}

func countSnapshots(t *testing.T, ctx context.Context, c *client.Client) int {
	t.Helper()
	n := 0
	if err := c.SnapshotService("overlayfs").Walk(ctx, func(context.Context, snapshots.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func stressCycle(ctx context.Context, c *client.Client, img *client.Image, id, fifos string) (retErr error) {
	ct, err := c.NewContainer(ctx, id,
		client.WithImage(img),
		client.WithNewSnapshot(id, img),
		client.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("sleep", "600")),
	)
	if err != nil {
		return err
	}
	defer func() {
		if err := ct.Delete(ctx, client.WithSnapshotCleanup); err != nil && retErr == nil {
			retErr = err
		}
	}()
	task, err := ct.NewTask(ctx, cio.NewCreator(cio.WithFIFODir(fifos)))
	if err != nil {
		return err
	}
	defer func() {
		if _, err := task.Delete(ctx); err != nil && retErr == nil {
			retErr = err
		}
	}()
	exitc, err := task.Wait(ctx)
	if err != nil {
		return err
	}
	if err := task.Start(ctx); err != nil {
		return err
	}
	if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case st := <-exitc:
		if st.Code != 137 {
			return fmt.Errorf("exit status %d, want 137", st.Code)
		}
	case <-time.After(30 * time.Second):
		return fmt.Errorf("no exit 30s after SIGKILL")
	}
	return nil
}
