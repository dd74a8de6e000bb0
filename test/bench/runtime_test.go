package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/testimage"
)

// runtimeDaemons starts hulld (with hull's shim next to it) and Debian's
// containerd (with its runc shim) and imports the busybox test image into
// both, in namespace "bench".
type runtimeDaemons struct {
	hull      *hulltest.Daemon
	ctrd      *hulltest.Containerd
	hullctl   string
	ref       string
	fifos     string
	runcRoot  string // containerd's runc state, under its own state dir
	hullFifos string
}

func startRuntimeDaemons(b *testing.B) *runtimeDaemons {
	b.Helper()
	hulltest.Build(b, "containerd-shim-hull-v2", "github.com/hullrt/hull/cmd/containerd-shim-hull-v2")
	r := &runtimeDaemons{
		hull:    startHull(b, ""),
		ctrd:    startContainerd(b, ""),
		hullctl: hulltest.Build(b, "hullctl", "github.com/hullrt/hull/cmd/hullctl"),
		ref:     "example.test/busybox:bench",
	}
	r.fifos, r.hullFifos = b.TempDir(), b.TempDir()
	r.runcRoot = filepath.Join(r.ctrd.State, "runc")
	files, err := testimage.BusyboxFiles()
	if err != nil {
		b.Fatal(err)
	}
	var archive bytes.Buffer
	if err := testimage.WriteOCIArchive(&archive, r.ref, testimage.New([]string{"/bin/sh"}, files)); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "busybox.tar")
	if err := os.WriteFile(path, archive.Bytes(), 0o600); err != nil {
		b.Fatal(err)
	}
	for _, addr := range []string{r.hull.Address, r.ctrd.Address} {
		if _, err := run("ctr", "--address", addr, "-n", "bench", "images", "import", path); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(r.reap)
	return r
}

// hullRun is hullctl's run of the bench image as id with flags and cmd, in
// nerdctl's form (--name ID IMAGE COMMAND), which hullctl run takes.
func (r *runtimeDaemons) hullRun(flags []string, id string, cmd ...string) []string {
	args := append([]string{"--address", r.hull.Address, "--namespace", "bench", "run", "--fifo-dir", r.hullFifos}, flags...)
	return append(append(args, "--name", id, r.ref), cmd...)
}

// ctrRun is the same run by ctr, in its form (IMAGE ID COMMAND).
func (r *runtimeDaemons) ctrRun(flags []string, id string, cmd ...string) []string {
	args := append([]string{"--address", r.ctrd.Address, "-n", "bench", "run", "--fifo-dir", r.fifos, "--runc-root", r.runcRoot}, flags...)
	return append(append(args, r.ref, id), cmd...)
}

// reap kills what a failed benchmark left running under either daemon.
func (r *runtimeDaemons) reap() {
	for _, root := range []string{filepath.Join(r.hull.State, "runc", "bench"), filepath.Join(r.runcRoot, "bench")} {
		ids, _ := os.ReadDir(root)
		for _, id := range ids {
			exec.Command("runc", "--root", root, "delete", "--force", id.Name()).Run()
		}
	}
	for _, addr := range []string{r.hull.Address, r.ctrd.Address} {
		for _, pid := range hulltest.ShimPIDs(addr) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, dir := range []string{r.hull.State, r.hull.Root, r.ctrd.State, r.ctrd.Root} {
		ms, _ := mount.MountedUnder(dir)
		for _, m := range ms {
			mount.UnmountAll(m)
		}
	}
}

// runcFloor prepares a busybox bundle and returns the median time of
// `runc run` of /bin/true over n runs: what starting a container costs
// with no daemon at all.
func runcFloor(b *testing.B, n int) time.Duration {
	b.Helper()
	dir := b.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	files, err := testimage.BusyboxFiles()
	if err != nil {
		b.Fatal(err)
	}
	for _, f := range files {
		p := filepath.Join(rootfs, f.Name)
		switch f.Type {
		case '5':
			os.MkdirAll(p, 0o755)
		case '2':
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.Symlink(f.Linkname, p)
		default:
			os.MkdirAll(filepath.Dir(p), 0o755)
			mode := os.FileMode(f.Mode)
			if mode == 0 {
				mode = 0o644
			}
			os.WriteFile(p, f.Data, mode)
		}
	}
	if _, err := runIn(dir, "runc", "spec"); err != nil {
		b.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "config.json")
	data, _ := os.ReadFile(cfgPath)
	var spec map[string]any
	if err := json.Unmarshal(data, &spec); err != nil {
		b.Fatal(err)
	}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"/bin/true"}
	data, _ = json.Marshal(spec)
	os.WriteFile(cfgPath, data, 0o600)
	root := filepath.Join(dir, "runc-root")
	var times []time.Duration
	for i := 0; i < n; i++ {
		d, err := run("runc", "--root", root, "run", "--bundle", dir, fmt.Sprintf("floor%d", i))
		if err != nil {
			b.Fatal(err)
		}
		times = append(times, d)
	}
	return median(times)
}

func runIn(dir, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// BenchmarkRunRm times `run --rm` of a busybox container running
// /bin/true end to end through each CLI (hullctl against hulld with hull's
// shim, ctr against containerd with its runc shim), alternating, 20 runs
// each. Target: hull <= 0.75x containerd's median. The floor is `runc run`
// of a prepared bundle with no daemon.
func BenchmarkRunRm(b *testing.B) {
	const target, runs = 0.75, 20
	r := startRuntimeDaemons(b)
	var hullTimes, ctrdTimes []time.Duration
	for i := -2; i < runs; i++ { // two warm-up runs each
		id := fmt.Sprintf("rm%d", i+2)
		h, err := run(r.hullctl, r.hullRun([]string{"--rm"}, id, "/bin/true")...)
		if err != nil {
			b.Fatal(err)
		}
		c, err := run("ctr", r.ctrRun([]string{"--rm"}, id, "/bin/true")...)
		if err != nil {
			b.Fatal(err)
		}
		if i >= 0 {
			hullTimes, ctrdTimes = append(hullTimes, h), append(ctrdTimes, c)
		}
	}
	floor := runcFloor(b, runs)
	h, c := median(hullTimes), median(ctrdTimes)
	report(b, "run-rm", "containerd", h, c, target,
		fmt.Sprintf("floor (runc run, no daemon) %s: hull %.2fx floor, containerd %.2fx floor", ms(floor), float64(h)/float64(floor), float64(c)/float64(floor)))
	b.ReportMetric(float64(floor)/float64(time.Millisecond), "runc-floor-ms")
}

// BenchmarkRun50 starts 50 `sleep 600` containers concurrently through
// each CLI and times until all run, in three rounds on an emptied machine
// (medians compared); after each daemon's first burst it compares the
// resident size of one shim (the mean over the 50) and of the daemon with
// the 50 running.
// Targets: time <= 0.75x, shim RSS <= 0.6x, daemon RSS <= 0.7x containerd.
func BenchmarkRun50(b *testing.B) {
	const n = 50
	r := startRuntimeDaemons(b)
	start50 := func(name string, argsOf func(id string) []string) time.Duration {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		begin := time.Now()
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				if _, err := run(name, argsOf(fmt.Sprintf("c%02d", i))...); err != nil {
					errs <- err
				}
			}(i)
		}
		wg.Wait()
		d := time.Since(begin)
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		return d
	}
	meanShim := func(addr string) (float64, int) {
		pids := hulltest.ShimPIDs(addr)
		var sum int64
		for _, pid := range pids {
			rss, _, err := rssKiB(pid)
			if err != nil {
				b.Fatal(err)
			}
			sum += rss
		}
		if len(pids) == 0 {
			b.Fatalf("no shims found for %s", addr)
		}
		return float64(sum) / float64(len(pids)), len(pids)
	}
	// One burst each is at the mercy of the machine's load: three rounds,
	// the order alternating, and the medians compared. Every burst starts
	// on an emptied machine: the other daemon's containers and shims (or
	// its own from the round before) running beside it would make the
	// comparison depend on who went first. Memory is measured after each
	// daemon's first burst, with exactly its 50 running.
	const rounds = 3
	type burst struct {
		wall, daemonCPU, busy, idle time.Duration
	}
	measure := func(pid int, cli string, argsOf func(id string) []string) burst {
		cpu0, _ := cpuTime(pid)
		busy0, idle0 := systemCPU(b)
		wall := start50(cli, argsOf)
		busy1, idle1 := systemCPU(b)
		cpu1, _ := cpuTime(pid)
		return burst{wall, cpu1 - cpu0, busy1 - busy0, idle1 - idle0}
	}
	ids := func(round int) []string {
		var out []string
		for i := 0; i < n; i++ {
			out = append(out, fmt.Sprintf("r%dc%02d", round, i))
		}
		return out
	}
	// side is one daemon with its CLI, and what its bursts measured.
	type side struct {
		pid    int
		addr   string
		cli    string
		prefix []string // the CLI's address and namespace flags
		runOf  func(flags []string, id string, cmd ...string) []string
		bursts []burst
		shim   float64 // mean shim RSS after the first burst, KiB
		shims  int
		rss    int64 // daemon RSS after the first burst, KiB
	}
	hullSide := &side{pid: r.hull.PID(), addr: r.hull.Address, cli: r.hullctl,
		prefix: []string{"--address", r.hull.Address, "--namespace", "bench"}, runOf: r.hullRun}
	ctrdSide := &side{pid: r.ctrd.PID(), addr: r.ctrd.Address, cli: "ctr",
		prefix: []string{"--address", r.ctrd.Address, "-n", "bench"}, runOf: r.ctrRun}
	// burstOn starts round's 50 containers on s, measures memory after its
	// first round, and removes them again through the CLI, as a user would.
	burstOn := func(s *side, round int) {
		s.bursts = append(s.bursts, measure(s.pid, s.cli, func(id string) []string {
			return s.runOf([]string{"-d"}, fmt.Sprintf("r%d%s", round, id), "sleep", "600")
		}))
		if round == 0 {
			time.Sleep(2 * time.Second) // let it settle after the burst
			s.shim, s.shims = meanShim(s.addr)
			var err error
			if s.rss, _, err = rssKiB(s.pid); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := run(s.cli, append(append(s.prefix, "tasks", "rm", "-f"), ids(round)...)...); err != nil {
			b.Fatal(err)
		}
		if _, err := run(s.cli, append(append(s.prefix, "containers", "rm"), ids(round)...)...); err != nil {
			b.Fatal(err)
		}
	}
	for round := 0; round < rounds; round++ {
		if round%2 == 0 {
			burstOn(hullSide, round)
			burstOn(ctrdSide, round)
		} else {
			burstOn(ctrdSide, round)
			burstOn(hullSide, round)
		}
	}
	hullBursts, ctrdBursts := hullSide.bursts, ctrdSide.bursts
	hShim, hN, hRSS := hullSide.shim, hullSide.shims, hullSide.rss
	cShim, cN, cRSS := ctrdSide.shim, ctrdSide.shims, ctrdSide.rss
	pick := func(bs []burst, f func(burst) time.Duration) []time.Duration {
		var out []time.Duration
		for _, x := range bs {
			out = append(out, f(x))
		}
		return out
	}
	wall := func(x burst) time.Duration { return x.wall }
	hullTime, ctrdTime := median(pick(hullBursts, wall)), median(pick(ctrdBursts, wall))
	fmt.Printf("run-50-concurrent machine CPU per burst (all processes: CLIs, daemon, shims, runc): hull busy %v idle %v, containerd busy %v idle %v\n",
		pick(hullBursts, func(x burst) time.Duration { return x.busy }), pick(hullBursts, func(x burst) time.Duration { return x.idle }),
		pick(ctrdBursts, func(x burst) time.Duration { return x.busy }), pick(ctrdBursts, func(x burst) time.Duration { return x.idle }))

	report(b, "run-50-concurrent", "containerd", hullTime, ctrdTime, 0.75,
		fmt.Sprintf("median of %d rounds; hull runs %v, containerd runs %v; daemon CPU per burst: hull %v containerd %v",
			rounds, pick(hullBursts, wall), pick(ctrdBursts, wall),
			pick(hullBursts, func(x burst) time.Duration { return x.daemonCPU }), pick(ctrdBursts, func(x burst) time.Duration { return x.daemonCPU })))
	shimRatio, dRatio := hShim/cShim, float64(hRSS)/float64(cRSS)
	fmt.Printf("shim-rss: hull %.1fMiB (%d shims) containerd-shim-runc-v2 %.1fMiB (%d shims) ratio %.2f (target <= 0.60, %s)\n",
		hShim/1024, hN, cShim/1024, cN, shimRatio, verdict(shimRatio, 0.6))
	fmt.Printf("daemon-rss-50-running: hull %.1fMiB containerd %.1fMiB ratio %.2f (target <= 0.70, %s)\n",
		mib(hRSS), mib(cRSS), dRatio, verdict(dRatio, 0.7))
	b.ReportMetric(shimRatio, "shim-hull/containerd")
	b.ReportMetric(dRatio, "daemon-hull/containerd")
}

// systemCPU returns the machine's busy and idle CPU time so far, from
// /proc/stat, to tell a CPU-bound burst from one that waits.
func systemCPU(b *testing.B) (busy, idle time.Duration) {
	b.Helper()
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(strings.SplitN(string(data), "\n", 2)[0])
	tick := 10 * time.Millisecond
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		switch i {
		case 3, 4: // idle, iowait
			idle += time.Duration(n) * tick
		default:
			busy += time.Duration(n) * tick
		}
	}
	return busy, idle
}
