package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/internal/hulltest"
)

// The CRI benchmarks drive hulld's CRI and containerd 1.6's CRI plugin
// (Debian's, as the critest kit runs it) with the kubelet's calls over
// their sockets, both started the same way by their scripts (see
// startCRIDaemons). Images are pulled first, so pulls are never measured.

// BenchmarkCRIPodStart times one pod with one busybox container, from
// RunPodSandbox until StartContainer returned, median of 5 rounds per
// runtime, alternating; each pod is removed between rounds, untimed. One
// untimed pod on each runtime first, so that what only the first pod pays
// (the CNI bridge being made) is not a fifth of the figure. Each round
// also times the floor under both, runc alone creating and starting a
// pause process and a container joining its namespaces (runcPodFloor),
// and the figures say how far above it each runtime is.
func BenchmarkCRIPodStart(b *testing.B) {
	const rounds = 5
	hull, ctrd := startCRIDaemons(b)
	floor := newRuncPodFloor(b)
	var floors []time.Duration
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	times := map[*criDaemon][]time.Duration{}
	for round := -1; round < rounds; round++ {
		order := []*criDaemon{hull, ctrd}
		if round%2 != 0 {
			order = []*criDaemon{ctrd, hull}
		}
		for _, d := range order {
			cfg, err := d.podConfig(fmt.Sprintf("start-%d", round+1))
			if err != nil {
				b.Fatal(err)
			}
			begin := time.Now()
			id, err := d.runPod(ctx, cfg, 1)
			took := time.Since(begin)
			if err != nil {
				b.Fatal(err)
			}
			if round >= 0 {
				times[d] = append(times[d], took)
			}
			if err := d.removePod(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
		took, err := floor.round()
		if err != nil {
			b.Fatal(err)
		}
		if round >= 0 {
			floors = append(floors, took)
		}
	}
	for _, d := range []*criDaemon{hull, ctrd} {
		if err := d.checkEmpty(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("pod start rounds: hull %v, containerd %v, runc alone %v", times[hull], times[ctrd], floors)
	h, c, f := msOf(median(times[hull])), msOf(median(times[ctrd])), msOf(median(floors))
	reportRatio(b, fmt.Sprintf("pod-start (median of %d)", rounds), "ms", "ratio", h, c)
	b.Logf("floor, runc alone (2x create+start): %.2f ms, %.2f of containerd's pod start; above it: hull %.2f ms, containerd %.2f ms, hull/containerd %.2f",
		f, f/c, h-f, c-f, (h-f)/(c-f))
	b.ReportMetric(f, "floor-ms")
	b.ReportMetric(f/c, "floor-ratio")
	b.ReportMetric((h-f)/(c-f), "above-floor-ratio")
	// Networking the pod is the other step no CRI runtime on CNI skips:
	// the same plugins adding a fresh namespace through go-cni alone, in a
	// network namespace of the benchmark's own.
	n := cniFloor(b, rounds)
	fmt.Printf("pod-start floor: runc alone %.2f ms + CNI setup alone (loopback, bridge, host-local, portmap through go-cni) %.2f ms = %.2f ms, %.2f of containerd 1.6's pod start\n",
		f, n, f+n, (f+n)/c)
	b.ReportMetric((f+n)/c, "floor-with-cni-ratio")
}

// cniFloor runs cnifloor in a network namespace of its own and returns its
// median CNI setup time in milliseconds.
func cniFloor(b *testing.B, rounds int) float64 {
	b.Helper()
	bin := hulltest.Build(b, "cnifloor", "github.com/hullrt/hull/test/bench/cnifloor")
	out, err := exec.Command("unshare", "--net", bin, "/usr/lib/cni", b.TempDir(), strconv.Itoa(rounds)).CombinedOutput()
	if err != nil {
		b.Fatalf("cnifloor: %v\n%s", err, out)
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "median-ms ")
	ms, perr := strconv.ParseFloat(v, 64)
	if !ok || perr != nil {
		b.Fatalf("cnifloor printed %q", out)
	}
	return ms
}

// BenchmarkCRIPods30 starts 30 one-container pods at once on each runtime
// (hull first, then containerd, the other one idle and empty meanwhile) and
// times until all run; with the 30 running it takes the daemon's RSS and
// the summed RSS of its shims; then it times stopping and removing all 30
// at once.
func BenchmarkCRIPods30(b *testing.B) {
	const n = 30
	hull, ctrd := startCRIDaemons(b)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	type result struct {
		start, remove time.Duration
		rss, shims    int64 // KiB
		shimsPSS      int64 // KiB
		nShims        int
		cpu           startCPU
	}
	res := map[*criDaemon]*result{}
	for _, d := range []*criDaemon{hull, ctrd} {
		cfgs := make([]*runtime.PodSandboxConfig, n)
		for i := range cfgs {
			var err error
			if cfgs[i], err = d.podConfig(fmt.Sprintf("p30-%02d", i)); err != nil {
				b.Fatal(err)
			}
		}
		ids := make([]string, n)
		before, err := d.cpu(b)
		if err != nil {
			b.Fatal(err)
		}
		begin := time.Now()
		err = parallel(n, n, func(i int) error {
			var err error
			ids[i], err = d.runPod(ctx, cfgs[i], 1)
			return err
		})
		r := &result{start: time.Since(begin)}
		if err != nil {
			b.Fatal(err)
		}
		after, err := d.cpu(b)
		if err != nil {
			b.Fatal(err)
		}
		r.cpu = after.since(before)
		if pods, ctrs, err := d.running(ctx); err != nil || pods != n || ctrs != n {
			b.Fatalf("%s: %d pods ready and %d containers running after starting %d (%v)", d.name, pods, ctrs, n, err)
		}
		if r.rss, r.shims, r.shimsPSS, r.nShims, err = d.memory(); err != nil {
			b.Fatal(err)
		}
		begin = time.Now()
		err = parallel(n, n, func(i int) error { return d.removePod(ctx, ids[i]) })
		r.remove = time.Since(begin)
		if err != nil {
			b.Fatal(err)
		}
		if err := d.checkEmpty(ctx); err != nil {
			b.Fatal(err)
		}
		res[d] = r
	}
	h, c := res[hull], res[ctrd]
	reportRatio(b, fmt.Sprintf("%d pods started at once", n), "start-ms", "start-ratio", msOf(h.start), msOf(c.start))
	fmt.Printf("%d pods started at once, CPU: hull %s, containerd-1.6 %s\n", n, h.cpu, c.cpu)
	// Starting 30 pods keeps both cores busy, so time follows CPU. What
	// hull cannot make cheaper is what is left with hulld and its shims at
	// no cost: runc, the CNI plugins, the containers and the kernel's work.
	floor := h.cpu.system - h.cpu.daemon - h.cpu.shims
	fmt.Printf("%d pods started at once, floor: hull's machine CPU without hulld's and its shims' own is %s, %.2f of containerd-1.6's machine CPU\n",
		n, ms(floor), float64(floor)/float64(c.cpu.system))
	reportRatio(b, fmt.Sprintf("CPU of the whole machine while %d pods start", n), "start-cpu-ms", "start-cpu-ratio", msOf(h.cpu.system), msOf(c.cpu.system))
	reportRatio(b, fmt.Sprintf("%d pods stopped+removed at once", n), "remove-ms", "remove-ratio", msOf(h.remove), msOf(c.remove))
	reportRatio(b, fmt.Sprintf("daemon RSS with %d pods running", n), "rss-MiB", "rss-ratio", mib(h.rss), mib(c.rss))
	reportRatio(b, fmt.Sprintf("shims' summed RSS with %d pods running (hull %d shims, containerd %d)", n, h.nShims, c.nShims),
		"shims-MiB", "shims-ratio", mib(h.shims), mib(c.shims))
	// Summed RSS counts each shim binary's text once per shim; PSS shares
	// it out, which is what the shims take from the node together.
	reportRatio(b, fmt.Sprintf("shims' summed PSS with %d pods running", n), "shims-pss-MiB", "shims-pss-ratio", mib(h.shimsPSS), mib(c.shimsPSS))
	shimFloor := shimFloorKiB(b)
	perShim := float64(c.shims) / float64(c.nShims)
	fmt.Printf("shims' RSS floor: shimfloor (ttrpc, the task API, containerd's cgroups library, nothing else) %.2f MiB, %.2f of a containerd 1.6 shim's %.2f MiB; hull's shims %.2f MiB each, %.2f MiB above the floor\n",
		mib(shimFloor), float64(shimFloor)/perShim, perShim/1024, float64(h.shims)/float64(h.nShims)/1024, (float64(h.shims)/float64(h.nShims)-float64(shimFloor))/1024)
	b.ReportMetric(float64(shimFloor)/perShim, "shims-floor-ratio")
}

// shimFloorKiB starts shimfloor, waits until it says it serves and
// answers on its socket, and returns its RSS in KiB.
func shimFloorKiB(b *testing.B) int64 {
	b.Helper()
	bin := hulltest.Build(b, "shimfloor", "github.com/hullrt/hull/test/bench/shimfloor")
	sock := filepath.Join(b.TempDir(), "floor.sock")
	cmd := exec.Command(bin, sock, strconv.Itoa(os.Getpid()))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if line != "serving\n" {
		b.Fatalf("shimfloor printed %q (%v)\n%s", line, err, stderr.String())
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	c := ttrpc.NewClient(conn)
	defer c.Close()
	if _, err := taskv2.NewTTRPCTaskClient(c).Connect(context.Background(), &taskv2.ConnectRequest{}); err != nil {
		b.Fatalf("shimfloor: Connect: %v\n%s", err, stderr.String())
	}
	rss, _, err := rssKiB(cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	return rss
}

// BenchmarkCRIRelist runs 25 pods of 4 containers each on one runtime at a
// time (started 8 pods at a time) and then does what the kubelet's PLEG
// does every second, ListPodSandbox plus ListContainers, 1000 times in a
// row; it reports the daemon's CPU time per relist, from its threads'
// run times in nanoseconds (a relist costs well under one 10ms tick).
func BenchmarkCRIRelist(b *testing.B) {
	const pods, perPod, relists, limit = 25, 4, 1000, 8
	hull, ctrd := startCRIDaemons(b)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cpu, wall := map[*criDaemon]time.Duration{}, map[*criDaemon]time.Duration{}
	var (
		ps       *runtime.ListPodSandboxResponse
		cs       *runtime.ListContainersResponse
		hullLast [2][]byte // hull's last answers, for the floor
	)
	for _, d := range []*criDaemon{hull, ctrd} {
		err := parallel(pods, limit, func(i int) error {
			_, err := d.newPod(ctx, fmt.Sprintf("relist-%02d", i), perPod)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		if p, c, err := d.running(ctx); err != nil || p != pods || c != pods*perPod {
			b.Fatalf("%s: %d pods ready and %d containers running, want %d and %d (%v)", d.name, p, c, pods, pods*perPod, err)
		}
		before, err := runTime(d.pid)
		if err != nil {
			b.Fatal(err)
		}
		begin := time.Now()
		for i := 0; i < relists; i++ {
			var err error
			ps, err = d.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
			if err != nil {
				b.Fatalf("%s: list pods: %v", d.name, err)
			}
			cs, err = d.rt.ListContainers(ctx, &runtime.ListContainersRequest{})
			if err != nil {
				b.Fatalf("%s: list containers: %v", d.name, err)
			}
			if len(ps.Items) != pods || len(cs.Containers) != pods*perPod {
				b.Fatalf("%s: relist saw %d pods and %d containers, want %d and %d", d.name, len(ps.Items), len(cs.Containers), pods, pods*perPod)
			}
		}
		wall[d] = time.Since(begin)
		if d == hull {
			if hullLast[0], err = proto.Marshal(ps); err != nil {
				b.Fatal(err)
			}
			if hullLast[1], err = proto.Marshal(cs); err != nil {
				b.Fatal(err)
			}
		}
		after, err := runTime(d.pid)
		if err != nil {
			b.Fatal(err)
		}
		cpu[d] = after - before
		if err := d.removeAll(ctx, limit); err != nil {
			b.Fatal(err)
		}
	}
	// The floor: grpcfloor, on hulld's transport and settings, answering
	// the same relist with hull's last answers from memory.
	dir := b.TempDir()
	podsFile, ctrsFile := filepath.Join(dir, "pods.pb"), filepath.Join(dir, "containers.pb")
	for path, data := range map[string][]byte{podsFile: hullLast[0], ctrsFile: hullLast[1]} {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "floor.sock")
	floorPID := runFloor(b, []string{sock, "--cri", podsFile, ctrsFile})
	frt := runtime.NewRuntimeServiceClient(dial(b, sock))
	before, err := runTime(floorPID)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < relists; i++ {
		if _, err := frt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{}); err != nil {
			b.Fatal(err)
		}
		if _, err := frt.ListContainers(ctx, &runtime.ListContainersRequest{}); err != nil {
			b.Fatal(err)
		}
	}
	after, err := runTime(floorPID)
	if err != nil {
		b.Fatal(err)
	}
	floor := after - before
	per := func(d time.Duration) float64 { return msOf(d) / relists }
	fmt.Printf("relist floor: grpcfloor answering the same relist from memory: %.2f cpu-ms per relist, %.2f of containerd 1.6's; hull %.2f of the floor\n",
		per(floor), float64(floor)/float64(cpu[ctrd]), float64(cpu[hull])/float64(floor))
	b.ReportMetric(float64(floor)/float64(cpu[ctrd]), "floor-cpu-ratio")
	b.Logf("relist totals over %d rounds: daemon CPU hull %v containerd %v, wall hull %v containerd %v", relists, cpu[hull], cpu[ctrd], wall[hull], wall[ctrd])
	reportRatio(b, fmt.Sprintf("daemon CPU per relist (%d pods, %d containers)", pods, pods*perPod), "cpu-ms", "cpu-ratio", per(cpu[hull]), per(cpu[ctrd]))
	reportRatio(b, "wall time per relist", "wall-ms", "wall-ratio", per(wall[hull]), per(wall[ctrd]))
}
