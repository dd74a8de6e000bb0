package integration

// The chaos suite: hulld (and hull's shim) killed at named points of
// multi-step operations (package crashpoint, in a hullcrash build) and at
// random moments under load, restarted, and checked against the
// invariants of issue 11: the tasks hulld lists are exactly the runc
// containers and live shims on the machine, no image is visible whose
// content is incomplete, and once everything is deleted no shim, mount,
// bundle, shim socket, runc state, cgroup or ingest is left.
//
// HULL_CHAOS_ROUNDS sets the rounds of random kills (`make chaos` runs
// 30; `make test` a few).

import (
	"bytes"
	"context"
	cryptorand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/client/cio"
	"github.com/hullrt/hull/client/oci"
	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/internal/crashpoint"
	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/registrytest"
	"github.com/hullrt/hull/internal/testimage"
)

// chaosRig is a daemon directory that hulld (the hullcrash build) is
// started on, killed and restarted over, with one namespace of work.
type chaosRig struct {
	t   *testing.T
	dir string
	ns  string
	ref string
	d   *hulltest.Daemon
}

func newChaosRig(t *testing.T, ns string) *chaosRig {
	t.Helper()
	hulltest.RequireCtr(t)
	r := &chaosRig{t: t, dir: t.TempDir(), ns: ns, ref: "example.test/busybox:chaos"}
	// Shims outlive their daemon: whatever a failed test leaves is
	// killed before the directories go.
	t.Cleanup(func() {
		for _, pid := range hulltest.ShimPIDs(r.address()) {
			if p, err := os.FindProcess(pid); err == nil {
				p.Kill()
			}
		}
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", r.ns))
		for _, d := range dirs {
			os.Remove(d)
		}
	})
	return r
}

func (r *chaosRig) address() string { return filepath.Join(r.dir, "state", "hull.sock") }

// fifoDir is where the rig's clients make their tasks' FIFOs.
func (r *chaosRig) fifoDir() string { return filepath.Join(r.dir, "fifo") }

// start runs hulld on the rig's directory with env (a crash point).
func (r *chaosRig) start(env ...string) *hulltest.Daemon {
	r.t.Helper()
	r.d = hulltest.Start(r.t, hulltest.Options{Dir: r.dir, Binary: hulltest.CrashBinary(r.t), Env: env})
	return r.d
}

// crashed waits for hulld to have killed itself at its crash point.
func (r *chaosRig) crashed(point string) {
	r.t.Helper()
	select {
	case <-r.d.Exited():
	case <-time.After(60 * time.Second):
		r.t.Fatalf("hulld did not crash at %s", point)
	}
	if !strings.Contains(r.d.Log(), "crashpoint "+point) {
		r.t.Fatalf("hulld exited, but not at crash point %s:\n%s", point, r.d.Log())
	}
}

// client connects to the running hulld; calls fail at once while it is
// down, as the workers of a chaos round must notice the kill.
func (r *chaosRig) client() (*client.Client, context.Context) {
	r.t.Helper()
	c, err := client.New(r.d.Address, client.WithDefaultNamespace(r.ns), client.WithConnectTimeout(0), client.WithTimeout(30*time.Second))
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { c.Close() })
	return c, client.WithNamespace(context.Background(), r.ns)
}

func (r *chaosRig) importImage() {
	r.t.Helper()
	importWithCtr(r.t, r.d, r.ns, r.ref, busyboxImage(r.t))
}

// newContainer makes container id from the rig's image.
func (r *chaosRig) newContainer(ctx context.Context, c *client.Client, id string, args ...string) (*client.Container, error) {
	img, err := c.GetImage(ctx, r.ref)
	if err != nil {
		return nil, err
	}
	return c.NewContainer(ctx, id, client.WithImage(img), client.WithNewSnapshot(id+"-rootfs", img),
		client.WithNewSpec(oci.WithImageConfigArgs(img, args)))
}

// runOnce runs id to completion: the id must be usable after a crash.
func (r *chaosRig) runOnce(c *client.Client, ctx context.Context, id string) {
	r.t.Helper()
	if ct, err := c.LoadContainer(ctx, id); err == nil {
		if task, err := ct.Task(ctx, nil); err == nil {
			if _, err := task.Delete(ctx, client.WithProcessKill); err != nil {
				r.t.Fatalf("delete the task %s left by the crash: %v", id, err)
			}
		}
		if err := ct.Delete(ctx, client.WithSnapshotCleanup); err != nil {
			r.t.Fatalf("delete the container %s left by the crash: %v", id, err)
		}
	}
	ct, err := r.newContainer(ctx, c, id, "sh", "-c", "exit 7")
	if err != nil {
		r.t.Fatal(err)
	}
	task, err := ct.NewTask(ctx, cio.NullIO)
	if err != nil {
		r.t.Fatalf("new task %s after the crash: %v", id, err)
	}
	ch := mustWait(r.t, ctx, id, task)
	if err := task.Start(ctx); err != nil {
		r.t.Fatal(err)
	}
	if st := waitExit(r.t, id, ch); st.Code != 7 {
		r.t.Fatalf("%s exited %d, want 7", id, st.Code)
	}
	if _, err := task.Delete(ctx); err != nil {
		r.t.Fatal(err)
	}
}

func dirNames(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

// checkTasksMatchMachine: the tasks hulld lists are exactly the runc
// containers of its runc root, and each has a live shim.
func (r *chaosRig) checkTasksMatchMachine(c *client.Client, ctx context.Context) {
	r.t.Helper()
	tasks, err := c.Tasks(ctx, "")
	if err != nil {
		r.t.Fatal(err)
	}
	var listed []string
	for _, ts := range tasks {
		listed = append(listed, ts.ContainerID)
	}
	sort.Strings(listed)
	runc := dirNames(filepath.Join(r.dir, "state", "runc", r.ns))
	if !slices.Equal(listed, runc) {
		r.t.Errorf("hulld lists tasks %v; runc has containers %v", listed, runc)
	}
	// A shim hulld asked to go closes its connection a moment before
	// its process ends.
	hulltest.Eventually(r.t, 10*time.Second, "one shim per task", func() error {
		if shims := hulltest.ShimPIDs(r.address()); len(shims) != len(listed) {
			return fmt.Errorf("hulld lists %d tasks; %d shims run (%v)", len(listed), len(shims), shims)
		}
		return nil
	})
}

// checkImagesComplete: every image hulld lists has all its content.
func (r *chaosRig) checkImagesComplete(c *client.Client, ctx context.Context) {
	r.t.Helper()
	imgs, err := c.ImageService().List(ctx)
	if err != nil {
		r.t.Fatalf("list images after restart: %v", err)
	}
	cs := c.ContentStore()
	for _, img := range imgs {
		// The test's images are of one platform, stored whole.
		var walked images.Contents
		if err := walked.Walk(ctx, cs, img.Target); err != nil || walked.Unreadable > 0 {
			r.t.Errorf("image %s is listed, but %d of its manifests are missing (%v)", img.Name, walked.Unreadable, err)
			continue
		}
		for d := range walked.Blobs {
			if _, err := cs.Info(ctx, d); err != nil {
				r.t.Errorf("image %s is listed, but its blob %s is missing: %v", img.Name, d, err)
			}
		}
	}
}

// deleteAll deletes every task, container and image of the namespace, and
// collects garbage.
func (r *chaosRig) deleteAll(c *client.Client, ctx context.Context) {
	r.t.Helper()
	cts, err := c.Containers(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, ct := range cts {
		// Attached, as a client taking over a task another made: the
		// delete removes its FIFOs too.
		if task, err := ct.Task(ctx, cio.NewAttach()); err == nil {
			if _, err := task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
				r.t.Errorf("delete task %s: %v", ct.ID(), err)
			}
		}
		if err := ct.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			r.t.Errorf("delete container %s: %v", ct.ID(), err)
		}
	}
	imgs, err := c.ImageService().List(ctx)
	deleteEach(r.t, "image", imgs, err, func(img images.Image) (string, error) {
		return img.Name, c.ImageService().Delete(ctx, img.Name)
	})
	// Ingests cut short by a kill stay to be resumed, until aborted.
	sts, err := c.ContentStore().ListStatuses(ctx)
	deleteEach(r.t, "ingest", sts, err, func(st content.Status) (string, error) {
		return st.Ref, c.ContentStore().Abort(ctx, st.Ref)
	})
	// Leases too: an import cut short leaves its client's lease (ctr's
	// lives 24 hours), which holds what it had written.
	ls, err := c.LeasesService().List(ctx)
	deleteEach(r.t, "lease", ls, err, func(l leases.Lease) (string, error) {
		return l.ID, c.LeasesService().Delete(ctx, l.ID, false)
	})
	if err := c.GarbageCollect(ctx); err != nil {
		r.t.Errorf("gc: %v", err)
	}
}

// deleteEach removes every item listed (the listing failing is fatal),
// failing the test for each that will not go.
func deleteEach[T any](t *testing.T, what string, items []T, listErr error, del func(T) (string, error)) {
	t.Helper()
	if listErr != nil {
		t.Fatalf("list %ss: %v", what, listErr)
	}
	for _, it := range items {
		if id, err := del(it); err != nil {
			t.Errorf("delete %s %s: %v", what, id, err)
		}
	}
}

// checkClean: after deleteAll, nothing of the namespace is left on the
// machine.
func (r *chaosRig) checkClean(c *client.Client, ctx context.Context) {
	r.t.Helper()
	state, root := filepath.Join(r.dir, "state"), filepath.Join(r.dir, "root")
	hulltest.Eventually(r.t, 20*time.Second, "shims to exit", func() error {
		if pids := hulltest.ShimPIDs(r.address()); len(pids) > 0 {
			return fmt.Errorf("shims %v still run", pids)
		}
		return nil
	})
	for what, dir := range map[string]string{
		"bundles":        filepath.Join(state, "io.containerd.runtime.v2.task", r.ns),
		"work dirs":      filepath.Join(root, "io.containerd.runtime.v2.task", r.ns),
		"runc state":     filepath.Join(state, "runc", r.ns),
		"shim sockets":   filepath.Join(state, "s"),
		"client FIFOs":   r.fifoDir(),
		"ingests":        filepath.Join(root, "io.containerd.content.v1.content", "ingest"),
		"blobs (sha256)": filepath.Join(root, "io.containerd.content.v1.content", "blobs", "sha256"),
	} {
		if left := dirNames(dir); len(left) > 0 {
			if what == "client FIFOs" {
				for _, l := range left {
					r.t.Logf("fifo dir %s: %v", l, dirNames(filepath.Join(dir, l)))
				}
			}
			r.t.Errorf("%s left in %s: %v", what, dir, left)
		}
	}
	if cg, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", r.ns, "*")); len(slices.DeleteFunc(cg, func(p string) bool {
		fi, err := os.Stat(p)
		return err != nil || !fi.IsDir()
	})) > 0 {
		r.t.Errorf("cgroups left: %v", cg)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], r.dir+"/") {
			r.t.Errorf("mount left: %s", f[4])
		}
	}
	snaps := 0
	c.SnapshotService("").Walk(ctx, func(context.Context, snapshots.Info) error { snaps++; return nil })
	if snaps > 0 {
		r.t.Errorf("%d snapshots left", snaps)
	}
}

// TestChaosRuntimeCrashPoints kills hulld (or hull's shim) at each named
// point of a task's create and delete, restarts it, and checks that the
// tasks it lists are the machine's, that the id can be used again, and
// that nothing is left once everything is deleted.
func TestChaosRuntimeCrashPoints(t *testing.T) {
	for _, point := range []string{crashpoint.TaskShimStarted, crashpoint.TaskCreating, crashpoint.ShimRuncCreated, crashpoint.TaskRecorded, crashpoint.TaskDeleting} {
		t.Run(point, func(t *testing.T) {
			r := newChaosRig(t, "chaos-rt")
			r.start()
			r.importImage()
			r.d.Stop()
			r.start(crashpoint.EnvVar + "=" + point)
			c, ctx := r.client()
			ct, err := r.newContainer(ctx, c, "victim", "sleep", "300")
			if err != nil {
				t.Fatal(err)
			}
			task, err := ct.NewTask(ctx, cio.NullIO)
			if point == crashpoint.TaskDeleting {
				if err != nil {
					t.Fatal(err)
				}
				if err := task.Start(ctx); err != nil {
					t.Fatal(err)
				}
				_, err = task.Delete(ctx, client.WithProcessKill)
			}
			if err == nil {
				t.Fatalf("the operation crashed at %s succeeded", point)
			}
			// At ShimRuncCreated the shim died and hulld, alive, cleaned
			// up after it; at the others hulld died.
			if point == crashpoint.ShimRuncCreated {
				r.checkTasksMatchMachine(c, ctx)
				r.d.Stop()
			} else {
				r.crashed(point)
			}
			r.start()
			c, ctx = r.client()
			r.checkTasksMatchMachine(c, ctx)
			r.checkImagesComplete(c, ctx)
			r.runOnce(c, ctx, "victim")
			r.checkTasksMatchMachine(c, ctx)
			r.deleteAll(c, ctx)
			r.checkClean(c, ctx)
		})
	}
}

// TestChaosStorageCrashPoints kills hulld in the middle of a content
// commit, an unpack, a snapshot commit and a gc sweep: after a restart no
// listed image lacks content, the import completes when run again, and
// deleting everything leaves no blob, ingest or snapshot.
func TestChaosStorageCrashPoints(t *testing.T) {
	for _, point := range []string{crashpoint.ContentCommit, crashpoint.UnpackMid, crashpoint.SnapshotCommit, crashpoint.GCSweep} {
		t.Run(point, func(t *testing.T) {
			r := newChaosRig(t, "chaos-st")
			if point == crashpoint.GCSweep {
				r.start()
				r.importImage()
				c, ctx := r.client()
				r.deleteAll(c, ctx) // gc removes what the image held
				r.importImage()
				if err := c.ImageService().Delete(ctx, r.ref); err != nil {
					t.Fatal(err)
				}
				r.d.Stop()
				r.start(crashpoint.EnvVar + "=" + point)
				c, ctx = r.client()
				if err := c.GarbageCollect(ctx); err == nil {
					t.Fatal("gc crashed in its sweep succeeded")
				}
			} else {
				r.start(crashpoint.EnvVar + "=" + point)
				if _, err := r.d.CtrErr(nil, "-n", r.ns, "images", "import", r.writeArchive()); err == nil {
					t.Fatalf("import crashed at %s succeeded", point)
				}
			}
			r.crashed(point)
			r.start()
			c, ctx := r.client()
			r.checkImagesComplete(c, ctx)
			r.importImage()
			r.checkImagesComplete(c, ctx)
			r.runOnce(c, ctx, "after-"+point)
			r.deleteAll(c, ctx)
			r.checkClean(c, ctx)
		})
	}
}

func (r *chaosRig) writeArchive() string {
	r.t.Helper()
	var archive bytes.Buffer
	if err := testimage.WriteOCIArchive(&archive, r.ref, busyboxImage(r.t)); err != nil {
		r.t.Fatal(err)
	}
	path := filepath.Join(r.t.TempDir(), "image.tar")
	if err := os.WriteFile(path, archive.Bytes(), 0o600); err != nil {
		r.t.Fatal(err)
	}
	return path
}

// chaosRounds is how many random kills TestChaosRandomKills makes.
func chaosRounds(t *testing.T) int {
	if v := os.Getenv("HULL_CHAOS_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("HULL_CHAOS_ROUNDS=%q is not a positive number", v)
		}
		return n
	}
	return 3
}

// TestChaosRandomKills: 20 workers churn containers (create, start, kill,
// delete) while two import and delete images and two pull (and unpack)
// from a registry; hulld is killed with SIGKILL at a random moment,
// restarted, and checked; then the next round. At the end everything is
// deleted and nothing may be left.
func TestChaosRandomKills(t *testing.T) {
	const workers = 20
	rounds := chaosRounds(t)
	reg := registrytest.Start(t, registrytest.Options{})
	var pullRefs []string
	for i := range 4 {
		layer := make([]byte, 4<<20)
		cryptorand.Read(layer)
		reg.Push(t, "chaos/pull", strconv.Itoa(i), testimage.New([]string{"/bin/true"}, []testimage.File{{Name: "blob", Data: layer}}))
		pullRefs = append(pullRefs, reg.Host()+"/chaos/pull:"+strconv.Itoa(i))
	}
	r := newChaosRig(t, "chaos-rand")
	r.start()
	r.importImage()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	var ops, failed int
	for round := 0; round < rounds; round++ {
		c, ctx := r.client()
		var wg sync.WaitGroup
		stop := make(chan struct{})
		var mu sync.Mutex
		// spawn runs n workers, each doing op for i = 0, 1, ... until the
		// round stops or op fails (the daemon is gone); every op counts.
		spawn := func(n int, op func(w, i int) error) {
			for w := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						err := op(w, i)
						mu.Lock()
						ops++
						if err != nil {
							failed++
						}
						mu.Unlock()
						if err != nil {
							return
						}
					}
				}()
			}
		}
		var cutOff []*client.Task
		spawn(workers, func(w, i int) error {
			task, err := churnOnce(ctx, r, c, fmt.Sprintf("r%d-w%d-%d", round, w, i))
			if task != nil {
				mu.Lock()
				cutOff = append(cutOff, task)
				mu.Unlock()
			}
			return err
		})
		spawn(2, func(w, i int) error {
			return importOnce(ctx, c, fmt.Sprintf("example.test/chaos/r%d-w%d:%d", round, w, i))
		})
		spawn(2, func(w, i int) error {
			ref := pullRefs[(w+i)%len(pullRefs)]
			if _, err := c.Pull(ctx, ref, client.WithPlainHTTP(), client.WithPullUnpack("", nil)); err != nil {
				return err
			}
			return c.ImageService().Delete(ctx, ref)
		})
		delay := 500*time.Millisecond + time.Duration(rng.Int64N(int64(2*time.Second)))
		select {
		case <-time.After(delay):
		case <-r.d.Exited():
			t.Fatalf("hulld exited on its own in round %d:\n%s", round, r.d.Log())
		}
		r.d.Kill()
		close(stop)
		wg.Wait()
		r.start()
		// The machine as hulld found it, before any client acts.
		c2, ctx2 := r.client()
		r.checkTasksMatchMachine(c2, ctx2)
		r.checkImagesComplete(c2, ctx2)
		for _, task := range cutOff {
			finishTask(t, r, ctx, task)
		}
		if t.Failed() {
			t.Fatalf("round %d (kill after %s) broke the invariants", round, delay)
		}
	}
	c, ctx := r.client()
	r.deleteAll(c, ctx)
	r.checkClean(c, ctx)
	if !t.Failed() {
		t.Logf("chaos: %d rounds, %d operations, %d cut short by the kills, 0 leaks", rounds, ops, failed)
	}
}

// churnOnce runs one container through its life, with its output through
// FIFOs in the rig's FIFO directory. A task the kill cut off is returned
// with the error, for the worker's client to finish after the restart.
func churnOnce(ctx context.Context, r *chaosRig, c *client.Client, id string) (*client.Task, error) {
	ct, err := r.newContainer(ctx, c, id, "sleep", "300")
	if err != nil {
		return nil, err
	}
	task, err := ct.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, io.Discard, io.Discard), cio.WithFIFODir(r.fifoDir())))
	if err != nil {
		return nil, err
	}
	if err := task.Start(ctx); err != nil {
		return task, err
	}
	if _, err := task.Delete(ctx, client.WithProcessKill); err != nil {
		return task, err
	}
	return nil, ct.Delete(ctx, client.WithSnapshotCleanup)
}

// finishTask is what a client whose task a kill of hulld cut off does once
// hulld is back: delete it again (NotFound if the delete had been done),
// which also removes its FIFOs.
func finishTask(t *testing.T, r *chaosRig, ctx context.Context, task *client.Task) {
	t.Helper()
	hulltest.Eventually(t, 20*time.Second, "the client to reach the restarted hulld", func() error {
		// Bounded, so that a call that never returns fails the test with
		// the shims' stacks rather than hanging it.
		dctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		_, err := task.Delete(dctx, client.WithProcessKill)
		if errdefs.IsUnavailable(err) {
			return err
		}
		if errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded {
			r.dumpShims()
		}
		if err != nil && !errdefs.IsNotFound(err) {
			t.Errorf("finish a task cut off by the kill: %v", err)
		}
		return nil
	})
}

// dumpShims logs the goroutine stacks of hulld's shims (SIGUSR1 makes
// hull's shim write them into its bundle).
func (r *chaosRig) dumpShims() {
	for _, pid := range hulltest.ShimPIDs(r.address()) {
		syscall.Kill(pid, syscall.SIGUSR1)
	}
	syscall.Kill(r.d.PID(), syscall.SIGUSR1)
	// The dumps are written asynchronously: hulld's comes after the
	// shims were signalled.
	var hd []string
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(5 * time.Second); len(hd) == 0 && time.Now().Before(deadline); <-tick.C {
		hd, _ = filepath.Glob(filepath.Join(r.dir, "state", "hulld.*.stacks.*.log"))
	}
	files, _ := filepath.Glob(filepath.Join(r.dir, "state", "io.containerd.runtime.v2.task", r.ns, "*", "shim.*.stacks.log"))
	for _, f := range append(files, hd...) {
		data, _ := os.ReadFile(f)
		r.t.Logf("%s:\n%s", f, data)
	}
}

// importOnce imports a small image of its own, unpacked, and deletes it.
func importOnce(ctx context.Context, c *client.Client, ref string) error {
	img := testimage.New([]string{"/bin/true"}, []testimage.File{{Name: "data/" + ref, Data: bytes.Repeat([]byte(ref), 4096)}})
	var archive bytes.Buffer
	if err := testimage.WriteOCIArchive(&archive, ref, img); err != nil {
		return err
	}
	imgs, err := c.Import(ctx, &archive)
	if err != nil {
		return err
	}
	if len(imgs) != 1 {
		return errors.New("import made no image")
	}
	if _, err := c.Unpack(ctx, imgs[0].Name); err != nil {
		return err
	}
	return c.ImageService().Delete(ctx, imgs[0].Name)
}
