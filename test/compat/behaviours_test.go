package compat

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/testimage"
)

var shimOnce sync.Once

// hullShimEnv puts hull's shim first on hulld's PATH, so that
// io.containerd.hull.v2, hulld's default runtime, is this tree's: it is
// built (once per test process) beside the hulld buildHulld built, and
// removed with it; a hulld named by HULLD_BIN is expected to have its
// shim beside it, as make install puts it.
func hullShimEnv(t *testing.T) []string {
	t.Helper()
	buildHulld(t)
	dir := filepath.Dir(os.Getenv("HULLD_BIN"))
	var err error
	shimOnce.Do(func() {
		if binDir == "" {
			return
		}
		cmd := exec.Command("go", "build", "-trimpath", "-tags", "urfave_cli_no_docs,grpcnotrace", "-o", filepath.Join(binDir, "containerd-shim-hull-v2"), "./cmd/containerd-shim-hull-v2")
		cmd.Dir = filepath.Join("..", "..")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, berr := cmd.CombinedOutput(); berr != nil {
			err = fmt.Errorf("build hull's shim: %v\n%s", berr, out)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return []string{"PATH=" + dir + string(os.PathListSeparator) + os.Getenv("PATH")}
}

// plainHTTPResolver is containerd's registry resolver speaking plain
// HTTP to every host, for the test registry.
func plainHTTPResolver() remotes.Resolver {
	return docker.NewResolver(docker.ResolverOptions{Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchAllHosts))})
}

// daemonUnderTest is hulld with hull's shim, or containerd v2.4.2 with its
// runc shim: the same steps run against both, and each behaviour is
// asserted of hulld, with containerd's answer as the yardstick where the
// issue asks for the same.
type daemonUnderTest struct {
	name    string
	address string
	state   string
	client  *containerd.Client
	runtime string
}

// startBoth starts hulld and containerd v2.4.2, each on its own root,
// with a client for each in namespace ns.
func startBoth(t *testing.T, ns string) []*daemonUnderTest {
	t.Helper()
	hulltest.Containerd2Bin(t, "containerd-shim-runc-v2")
	d := startHulldWith(t, hulltest.Options{Env: hullShimEnv(t)})
	ctrd := hulltest.StartContainerdWith(t, "", hulltest.ContainerdOptions{Binary: hulltest.Containerd2Bin(t, "containerd"), PathDirs: []string{hulltest.Containerd2Dir}})
	// Registered before the clients' cleanup, so it runs after the
	// containers are gone.
	hulltest.RemoveRuncNamespaceDir(t, ns)
	out := []*daemonUnderTest{
		{name: "hulld", address: d.Address, state: d.State, runtime: "io.containerd.hull.v2"},
		{name: "containerd", address: ctrd.Address, state: ctrd.State, runtime: "io.containerd.runc.v2"},
	}
	for _, du := range out {
		c, err := containerd.New(du.address, containerd.WithDefaultRuntime(du.runtime), containerd.WithDefaultNamespace(ns))
		if err != nil {
			t.Fatal(err)
		}
		du.client = c
		t.Cleanup(func() { removeAll(du.client, ns); c.Close() })
	}
	t.Cleanup(func() {
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", ns))
		for _, dir := range append(dirs, filepath.Join("/sys/fs/cgroup", ns)) {
			os.Remove(dir)
		}
	})
	return out
}

// removeAll kills and deletes every task and container of ns.
func removeAll(c *containerd.Client, ns string) {
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), time.Minute)
	defer cancel()
	cs, _ := c.Containers(ctx)
	for _, ct := range cs {
		if task, err := ct.Task(ctx, nil); err == nil {
			task.Delete(ctx, containerd.WithProcessKill)
		}
		ct.Delete(ctx, containerd.WithSnapshotCleanup)
	}
}

// busybox imports and unpacks a busybox image into du.
func busybox(t *testing.T, ctx context.Context, du *daemonUnderTest) containerd.Image {
	t.Helper()
	files, err := testimage.BusyboxFiles()
	if err != nil {
		t.Fatalf("busybox test image (make test installs busybox-static): %v", err)
	}
	var archive bytes.Buffer
	if err := testimage.WriteOCIArchive(&archive, "example.test/busybox:behaviours", testimage.New([]string{"/bin/sh"}, files)); err != nil {
		t.Fatal(err)
	}
	imgs, err := du.client.Import(ctx, &archive)
	if err != nil || len(imgs) != 1 {
		t.Fatalf("%s: import: %v, %v", du.name, imgs, err)
	}
	img := containerd.NewImage(du.client, imgs[0])
	if err := img.Unpack(ctx, "overlayfs"); err != nil {
		t.Fatalf("%s: unpack: %v", du.name, err)
	}
	return img
}

// newTask creates a container running args and starts its task, with
// the container's output in out (nil: discarded).
func newTask(t *testing.T, ctx context.Context, du *daemonUnderTest, img containerd.Image, id string, out *syncBuf, args []string, opts ...containerd.NewContainerOpts) (containerd.Container, containerd.Task) {
	t.Helper()
	ct, err := du.client.NewContainer(ctx, id, append([]containerd.NewContainerOpts{
		containerd.WithImage(img), containerd.WithNewSnapshot(id+"-rootfs", img),
		containerd.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs(args...)),
	}, opts...)...)
	if err != nil {
		t.Fatalf("%s: container %s: %v", du.name, id, err)
	}
	return ct, startTask(t, ctx, du, ct, out)
}

func startTask(t *testing.T, ctx context.Context, du *daemonUnderTest, ct containerd.Container, out *syncBuf, opts ...containerd.NewTaskOpts) containerd.Task {
	t.Helper()
	creator := cio.NullIO
	if out != nil {
		creator = cio.NewCreator(cio.WithStreams(nil, out, out), cio.WithFIFODir(t.TempDir()))
	}
	task, err := ct.NewTask(ctx, creator, opts...)
	if err != nil {
		t.Fatalf("%s: task %s: %v", du.name, ct.ID(), err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatalf("%s: start %s: %v", du.name, ct.ID(), err)
	}
	return task
}

// syncBuf is a buffer the streams' copiers write from their goroutines.
type syncBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func execSpec(t *testing.T, ctx context.Context, ct containerd.Container, args ...string) *specs.Process {
	t.Helper()
	spec, err := ct.Spec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := *spec.Process
	p.Args = args
	p.Terminal = false
	return &p
}

// TestExecBehavioursWithContainerdsClient: containerd v2.4.2's client
// runs execs through hulld as through containerd v2.4.2.
func TestExecBehavioursWithContainerdsClient(t *testing.T) {
	const ns = "compatexec"
	for _, du := range startBoth(t, ns) {
		ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 3*time.Minute)
		defer cancel()
		img := busybox(t, ctx, du)

		// An exec asking for a terminal, in a container whose init has
		// none, gets one whatever its process spec says: the request
		// decides, as containerd's runc shim does (runc would otherwise
		// refuse with "cannot use console socket if runc will not
		// detach or allocate tty").
		t.Run(du.name+"/terminal", func(t *testing.T) {
			ct, task := newTask(t, ctx, du, img, "tty", nil, []string{"sleep", "1000"})
			defer ct.Delete(ctx, containerd.WithSnapshotCleanup)
			defer task.Delete(ctx, containerd.WithProcessKill)
			var out syncBuf
			p, err := task.Exec(ctx, "tty-exec", execSpec(t, ctx, ct, "sh", "-c", "if [ -t 1 ]; then echo tty; else echo notty; fi"), cio.NewCreator(cio.WithStreams(nil, &out, nil), cio.WithTerminal, cio.WithFIFODir(t.TempDir())))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Delete(ctx)
			exitC, err := p.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Start(ctx); err != nil {
				t.Fatalf("exec with a terminal the spec does not have: %v", err)
			}
			if st := <-exitC; st.ExitCode() != 0 {
				t.Fatalf("the exec exited %d: %q", st.ExitCode(), out.String())
			}
			p.IO().Wait()
			if strings.TrimSpace(out.String()) != "tty" {
				t.Fatalf("the exec's stdout is %q, want a pseudo-terminal", out.String())
			}
		})

		// Waiting for the task is waiting for its init: an exec's exit
		// (another status) is not the task's, and the exit events come
		// in the order they happened, each under its own id.
		t.Run(du.name+"/wait", func(t *testing.T) {
			ct, task := newTask(t, ctx, du, img, "wait", nil, []string{"sleep", "1000"})
			defer ct.Delete(ctx, containerd.WithSnapshotCleanup)
			defer task.Delete(ctx, containerd.WithProcessKill)
			evs, errs := du.client.Subscribe(ctx, `topic~="/tasks/",namespace=="`+ns+`"`)
			waitC, err := task.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			p, err := task.Exec(ctx, "wait-exec", execSpec(t, ctx, ct, "sh", "-c", "exit 3"), cio.NullIO)
			if err != nil {
				t.Fatal(err)
			}
			pwait, err := p.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Start(ctx); err != nil {
				t.Fatal(err)
			}
			if st := <-pwait; st.ExitCode() != 3 {
				t.Fatalf("exec exit: %+v", st)
			}
			if _, err := p.Delete(ctx); err != nil {
				t.Fatal(err)
			}
			if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			select {
			case st := <-waitC:
				if st.ExitCode() != 137 {
					t.Fatalf("task.Wait gave %d (%v), want the init's 137", st.ExitCode(), st.Error())
				}
			case <-ctx.Done():
				t.Fatal("task.Wait did not return")
			}
			var got []string
			for len(got) == 0 || got[len(got)-1] != "/tasks/exit "+ct.ID() {
				select {
				case e := <-evs:
					v, err := typeurl.UnmarshalAny(e.Event)
					if err != nil {
						t.Fatal(err)
					}
					switch ev := v.(type) {
					case *eventtypes.TaskExit:
						if ev.ContainerID == ct.ID() {
							got = append(got, e.Topic+" "+ev.ID)
						}
					case *eventtypes.TaskExecAdded:
						got = append(got, e.Topic+" "+ev.ExecID)
					case *eventtypes.TaskExecStarted:
						got = append(got, e.Topic+" "+ev.ExecID)
					}
				case err := <-errs:
					t.Fatalf("events: %v (so far %q)", err, got)
				case <-ctx.Done():
					t.Fatalf("events so far %q", got)
				}
			}
			want := []string{"/tasks/exec-added wait-exec", "/tasks/exec-started wait-exec", "/tasks/exit wait-exec", "/tasks/exit wait"}
			if !slices.Equal(got, want) {
				t.Fatalf("events %q, want %q", got, want)
			}
		})

		// containerd issue 10589: an exec racing the init's kill must not
		// outlive the container. The container shares the host's PID
		// namespace, so that nothing but the runtime kills such an exec.
		// On hulld, an exec created once the kill of the init has
		// returned is refused at create.
		t.Run(du.name+"/exec-after-kill", func(t *testing.T) {
			for i := range 8 {
				id := "race" + strconv.Itoa(i)
				ct, task := newTask(t, ctx, du, img, id, nil, []string{"sleep", "1000"}, containerd.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("sleep", "1000"), oci.WithHostNamespace(specs.PIDNamespace)))
				exitC, err := task.Wait(ctx)
				if err != nil {
					t.Fatal(err)
				}
				spec := execSpec(t, ctx, ct, "sleep", "1001")
				var pid uint32
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					// The race: as near to the kill as a client gets.
					p, err := task.Exec(ctx, "late", spec, cio.NullIO)
					if err != nil {
						return
					}
					if err := p.Start(ctx); err == nil {
						pid = p.Pid()
					}
				}()
				if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				_, err = task.Exec(ctx, "after", spec, cio.NullIO)
				if du.name == "hulld" && !errdefs.IsFailedPrecondition(err) {
					t.Errorf("%s: exec created after the init was killed: %v, want FailedPrecondition", id, err)
				} else {
					t.Logf("%s: %s: exec created after the kill: %v", du.name, id, err)
				}
				wg.Wait()
				<-exitC
				if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil {
					t.Fatal(err)
				}
				if pid != 0 {
					hulltest.Eventually(t, 10*time.Second, fmt.Sprintf("exec %d of %s to end with its container", pid, id), func() error {
						if !hulltest.ProcessExited(int(pid)) {
							return fmt.Errorf("pid %d alive", pid)
						}
						return nil
					})
				}
				if err := ct.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestShimCgroupWithContainerdsClient: the runc option ShimCgroup moves
// the shim into that cgroup, on hulld with hull's shim as on containerd
// v2.4.2 with its runc shim.
func TestShimCgroupWithContainerdsClient(t *testing.T) {
	const ns = "compatshimcg"
	for _, du := range startBoth(t, ns) {
		ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 2*time.Minute)
		defer cancel()
		img := busybox(t, ctx, du)
		cg := "/hull-compat-shimcg-" + du.name
		procs := makeCgroup(t, cg)
		ct, task := newTask(t, ctx, du, img, "shimcg", nil, []string{"sleep", "1000"},
			containerd.WithRuntime(du.runtime, &options.Options{ShimCgroup: cg}))
		shim := "containerd-shim-hull-v2"
		if du.runtime == "io.containerd.runc.v2" {
			shim = "containerd-shim-runc-v2"
		}
		found := false
		for _, pid := range readPids(t, procs) {
			if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); filepath.Base(exe) == shim {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no %s in %s: %v", du.name, shim, procs, readPids(t, procs))
		}
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil {
			t.Fatal(err)
		}
		if err := ct.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
			t.Fatal(err)
		}
		// A cgroup that does not exist fails the task, as containerd's
		// shim fails to start.
		ct2, err := du.client.NewContainer(ctx, "shimcg-missing", containerd.WithImage(img), containerd.WithNewSnapshot("shimcg-missing-rootfs", img),
			containerd.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("true")),
			containerd.WithRuntime(du.runtime, &options.Options{ShimCgroup: "/hull-compat-no-such-cgroup"}))
		if err != nil {
			t.Fatal(err)
		}
		if task, err := ct2.NewTask(ctx, cio.NullIO); err == nil {
			task.Delete(ctx, containerd.WithProcessKill)
			t.Errorf("%s: a task whose ShimCgroup does not exist was created", du.name)
		} else {
			t.Logf("%s: missing ShimCgroup: %v", du.name, err)
		}
		ct2.Delete(ctx, containerd.WithSnapshotCleanup)
	}
}

// makeCgroup creates cgroup path in every hierarchy (v1 and the unified
// one) and returns the cgroup.procs file to read it by; the directories
// are removed when t ends, once the shim has left them.
func makeCgroup(t *testing.T, path string) string {
	t.Helper()
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/cgroup.procs")
	var dirs []string
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		roots = []string{"/sys/fs/cgroup/cgroup.procs"}
	}
	for _, r := range roots {
		dir := filepath.Join(filepath.Dir(r), path)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, dir)
		// A v1 cpuset cgroup takes no process before it has CPUs and
		// memory nodes: its parent's.
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if data, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, f), data, 0); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	t.Cleanup(func() {
		for _, dir := range dirs {
			hulltest.Eventually(t, 20*time.Second, "cgroup "+dir+" removed", func() error { return os.Remove(dir) })
		}
	})
	if len(dirs) == 0 {
		t.Fatal("no cgroup hierarchy under /sys/fs/cgroup")
	}
	for _, dir := range dirs {
		if strings.HasSuffix(filepath.Dir(dir), "/pids") || len(dirs) == 1 {
			return filepath.Join(dir, "cgroup.procs")
		}
	}
	return filepath.Join(dirs[0], "cgroup.procs")
}

func readPids(t *testing.T, procs string) []int {
	t.Helper()
	data, err := os.ReadFile(procs)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestPullFilterLayersGCWithContainerdsClient: a pull that keeps only
// the manifest's non-layer children (images.ChildGCLabelsFilterLayers)
// and unpacks leaves layer blobs that nothing references once the pull's
// lease ends: gc removes them, as containerd does, and keeps the rest.
func TestPullFilterLayersGCWithContainerdsClient(t *testing.T) {
	const ns = "compatfilterlayers"
	img := testimage.New([]string{"/bin/sh"}, []testimage.File{{Name: "a", Data: []byte("layer a")}}, []testimage.File{{Name: "b", Data: []byte("layer b")}})
	ref := serveImage(t, "test/filter", "1", img) + "/test/filter:1"
	for _, du := range startBoth(t, ns) {
		ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 2*time.Minute)
		defer cancel()
		pulled, err := du.client.Pull(ctx, ref, containerd.WithPullUnpack, containerd.WithChildLabelMap(images.ChildGCLabelsFilterLayers),
			containerd.WithResolver(plainHTTPResolver()))
		if err != nil {
			t.Fatalf("%s: pull: %v", du.name, err)
		}
		if pulled.Target().Digest != img.Manifest.Desc.Digest {
			t.Fatalf("%s: pulled %s", du.name, pulled.Target().Digest)
		}
		cs := du.client.ContentStore()
		for _, l := range img.Layers {
			hulltest.Eventually(t, 20*time.Second, du.name+": layer "+l.Desc.Digest.String()+" collected", func() error {
				if _, err := cs.Info(ctx, l.Desc.Digest); !errdefs.IsNotFound(err) {
					return fmt.Errorf("info: %v", err)
				}
				return nil
			})
		}
		for _, b := range []testimage.Blob{img.Manifest, img.Config} {
			if _, err := cs.Info(ctx, b.Desc.Digest); err != nil {
				t.Errorf("%s: %s: %v", du.name, b.Desc.MediaType, err)
			}
		}
		// The unpacked image still runs: its snapshots are kept.
		if ok, err := pulled.IsUnpacked(ctx, "overlayfs"); err != nil || !ok {
			t.Errorf("%s: unpacked after gc: %v, %v", du.name, ok, err)
		}
	}
}

// serveImage serves img read-only as repo:tag, as a registry's pull API
// does (the compat module leaves internal/registrytest's dependencies
// out), and returns the registry's host.
func serveImage(t *testing.T, repo, tag string, img *testimage.Image) string {
	t.Helper()
	blobs := map[string]testimage.Blob{}
	for _, b := range img.Blobs() {
		blobs[b.Desc.Digest.String()] = b
	}
	prefix := "/v2/" + repo + "/"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b testimage.Blob
		var ok bool
		switch p := r.URL.Path; {
		case p == "/v2/" || p == "/v2":
			return
		case p == prefix+"manifests/"+tag || p == prefix+"manifests/"+img.Manifest.Desc.Digest.String():
			b, ok = img.Manifest, true
		case strings.HasPrefix(p, prefix+"blobs/"):
			b, ok = blobs[strings.TrimPrefix(p, prefix+"blobs/")]
		}
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", b.Desc.MediaType)
		w.Header().Set("Docker-Content-Digest", b.Desc.Digest.String())
		w.Header().Set("Content-Length", strconv.Itoa(len(b.Data)))
		if r.Method != http.MethodHead {
			w.Write(b.Data)
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestUserNamespaceWithContainerdsClient: containers with UID/GID
// mappings run, their rootfs owned by the container's root as the
// container sees it: a snapshot the client chowns (WithRemappedSnapshot)
// and one prepared with the uidmapping/gidmapping labels.
func TestUserNamespaceWithContainerdsClient(t *testing.T) {
	const ns = "compatuserns"
	const host = 200000
	maps := []specs.LinuxIDMapping{{ContainerID: 0, HostID: host, Size: 65536}}
	for _, du := range startBoth(t, ns) {
		ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 2*time.Minute)
		defer cancel()
		// The container's root is uid 200000 on the host: it must
		// traverse the test's temporary directories (0700) to its
		// bundle's rootfs, as it traverses /run/containerd.
		for dir := filepath.Dir(du.state); strings.HasPrefix(dir, os.TempDir()+"/"); dir = filepath.Dir(dir) {
			if err := os.Chmod(dir, 0o711); err != nil {
				t.Fatal(err)
			}
		}
		img := busybox(t, ctx, du)
		labels := map[string]string{
			"containerd.io/snapshot/uidmapping": fmt.Sprintf("0:%d:65536", host),
			"containerd.io/snapshot/gidmapping": fmt.Sprintf("0:%d:65536", host),
		}
		for name, snap := range map[string]containerd.NewContainerOpts{
			"remapped": containerd.WithRemappedSnapshot("userns-remapped-rootfs", img, host, host),
			"labels":   containerd.WithNewSnapshot("userns-labels-rootfs", img, snapshots.WithLabels(labels)),
		} {
			id := "userns-" + name
			ct, err := du.client.NewContainer(ctx, id, containerd.WithImage(img), snap,
				containerd.WithNewSpec(oci.WithImageConfig(img), oci.WithUserNamespace(maps, maps),
					oci.WithProcessArgs("sh", "-c", "stat -c %u:%g /bin/sh; touch /written && stat -c %u:%g /written; cat /proc/self/uid_map")))
			if err != nil {
				t.Errorf("%s: %s: %v", du.name, id, err)
				continue
			}
			var out syncBuf
			task, err := ct.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, &out, &out), cio.WithFIFODir(t.TempDir())))
			if err != nil {
				t.Errorf("%s: %s: task: %v", du.name, id, err)
				ct.Delete(ctx, containerd.WithSnapshotCleanup)
				continue
			}
			exitC, err := task.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := task.Start(ctx); err != nil {
				t.Errorf("%s: %s: start: %v", du.name, id, err)
			} else {
				st := <-exitC
				lines := strings.Fields(out.String())
				if st.ExitCode() != 0 || len(lines) < 5 || lines[0] != "0:0" || lines[1] != "0:0" || lines[3] != strconv.Itoa(host) {
					t.Errorf("%s: %s: exit %d, output %q; want the rootfs and new files owned by 0:0 in the container, uid 0 mapped to %d", du.name, id, st.ExitCode(), out.String(), host)
				}
			}
			task.Delete(ctx, containerd.WithProcessKill)
			if err := ct.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
				t.Error(err)
			}
		}
	}
}
