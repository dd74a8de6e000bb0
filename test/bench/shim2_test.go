package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/testimage"
)

// BenchmarkRunRmShim2 times `run --rm` of a busybox container running
// /bin/true with containerd v2.4.2's runc shim (io.containerd.runc.v2) and
// containerd v2.4.2's ctr, under hulld and under containerd v2.4.2, both
// on temporary roots, alternating, 20 runs each after two warm-ups.
// Target: hulld <= 0.8x containerd v2.4.2's median with the same shim.
// Then 9 more runs each through callclock show the time of each kind of
// call under both daemons, and what hull would take if its own calls took
// no time at all. The floor under any daemon is ctr's own work (its CPU
// time in a run) and the shim's, run directly (shimRunFloor): what is left
// of the target above it is what the daemon's 43 calls may take.
func BenchmarkRunRmShim2(b *testing.B) {
	const target, runs, ref = 0.8, 20, "example.test/busybox:bench"
	ctr := hulltest.Containerd2Bin(b, "ctr")
	hulltest.Containerd2Bin(b, "containerd-shim-runc-v2")
	path := hulltest.Containerd2Dir + string(os.PathListSeparator) + os.Getenv("PATH")
	h := hulltest.Start(b, hulltest.Options{Env: []string{"PATH=" + path}})
	c := hulltest.StartContainerdWith(b, "", hulltest.ContainerdOptions{
		Binary: hulltest.Containerd2Bin(b, "containerd"), PathDirs: []string{hulltest.Containerd2Dir}})
	files, err := testimage.BusyboxFiles()
	if err != nil {
		b.Fatal(err)
	}
	var archive bytes.Buffer
	if err := testimage.WriteOCIArchive(&archive, ref, testimage.New([]string{"/bin/sh"}, files)); err != nil {
		b.Fatal(err)
	}
	tar := filepath.Join(b.TempDir(), "busybox.tar")
	if err := os.WriteFile(tar, archive.Bytes(), 0o600); err != nil {
		b.Fatal(err)
	}
	fifos := b.TempDir()
	// The shim's runc root named, as ctr's default is containerd's own
	// (/run/containerd/runc).
	runcRoots := map[string]string{h.Address: b.TempDir(), c.Address: b.TempDir()}
	args := func(addr, id string) []string {
		return []string{"--address", addr, "-n", "bench", "run", "--rm", "--fifo-dir", fifos, "--runc-root", runcRoots[addr],
			"--runtime", "io.containerd.runc.v2", ref, id, "/bin/true"}
	}
	for _, addr := range []string{h.Address, c.Address} {
		if _, err := run(ctr, "--address", addr, "-n", "bench", "images", "import", "--local", tar); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() {
		for _, addr := range []string{h.Address, c.Address} {
			for _, pid := range hulltest.ShimPIDs(addr) {
				if p, err := os.FindProcess(pid); err == nil {
					p.Kill()
				}
			}
		}
	})
	var hullTimes, ctrdTimes, hullCtrCPU, ctrdCtrCPU []time.Duration
	for i := -2; i < runs; i++ {
		id := fmt.Sprintf("rm2-%d", i+2)
		var out strings.Builder
		ht, hcpu, err := runCPU(&out, ctr, args(h.Address, id)...)
		if err != nil {
			b.Fatalf("hulld: %v\n%s", err, out.String())
		}
		ct, ccpu, err := runCPU(&out, ctr, args(c.Address, id)...)
		if err != nil {
			b.Fatalf("containerd: %v\n%s", err, out.String())
		}
		if i >= 0 {
			hullTimes, ctrdTimes = append(hullTimes, ht), append(ctrdTimes, ct)
			hullCtrCPU, ctrdCtrCPU = append(hullCtrCPU, hcpu), append(ctrdCtrCPU, ccpu)
		}
	}
	// The floor under both: ctr starting and making one call, and runc
	// alone creating, starting and deleting the same kind of container
	// from a prepared bundle, as every shim must.
	floor := newRuncPodFloor(b)
	if err := floor.writeSpec(floor.ctr, func(ns []specs.LinuxNamespace) []specs.LinuxNamespace { return ns }); err != nil {
		b.Fatal(err)
	}
	// The same shim run directly, as any daemon must run it, for the
	// floor with ctr and the shim below.
	shimFloor := newShimRunFloor(b, hulltest.Containerd2Bin(b, "containerd-shim-runc-v2"), "/bin/busybox", "true")
	if _, err := shimFloor.once(); err != nil { // warm-up
		b.Fatal(err)
	}
	var floors, shimFloors []time.Duration
	shimSteps := map[string][]time.Duration{}
	for i := 0; i < runs; i++ {
		ctrT, err := runTo(io.Discard, ctr, "--address", h.Address, "version")
		if err != nil {
			b.Fatal(err)
		}
		runcT, err := floor.once(fmt.Sprintf("rm2-floor-%d", i), "/bin/busybox", "true")
		if err != nil {
			b.Fatal(err)
		}
		floors = append(floors, ctrT+runcT)
		shimT, err := shimFloor.once()
		if err != nil {
			b.Fatal(err)
		}
		shimFloors = append(shimFloors, shimT)
		for step, d := range shimFloor.phases {
			shimSteps[step] = append(shimSteps[step], d)
		}
	}
	hm, cm, fm, sm := median(hullTimes), median(ctrdTimes), median(floors), median(shimFloors)
	report(b, "run-rm-shim2", "containerd-2.4.2", hm, cm, target,
		fmt.Sprintf("containerd v2.4.2's runc shim and ctr under both; floor (ctr version + runc create, start, delete) %s, %.2f of containerd's; above it hull %s, containerd %s, ratio %.2f",
			ms(fm), float64(fm)/float64(cm), ms(hm-fm), ms(cm-fm), float64(hm-fm)/float64(cm-fm)))
	b.ReportMetric(float64(fm)/float64(cm), "floor-ratio")
	b.ReportMetric(float64(hm-fm)/float64(cm-fm), "above-floor-ratio")

	// Where the time goes, call by call: more runs with callclock between
	// ctr and each daemon. The calls that wait on the shim and runc
	// (Tasks Create, Start, Wait and Delete) are told apart from the
	// daemon's own (leases, snapshots, containers, content, images, task
	// lookups), which a daemon could at best make free.
	clocked := clockRunRm(b, ctr, args, map[string]string{"hull": h.Address, "containerd-2.4.2": c.Address}, 9)
	hc, cc := clocked["hull"], clocked["containerd-2.4.2"]
	fmt.Printf("run-rm-shim2 calls, median ms per run through callclock (hull, containerd-2.4.2):")
	for _, m := range hc.order {
		fmt.Printf(" %s %.1f/%.1f;", strings.TrimPrefix(m, "/containerd.services."), ms64(hc.perRun[m]), ms64(cc.perRun[m]))
	}
	fmt.Println()
	// The own calls' times include callclock's hop, so taking them all
	// away gives a floor lower than the real one.
	own, n := hc.own()
	cown, cn := cc.own()
	budget := max(time.Duration(target*float64(cm))-(hm-own), 0)
	fmt.Printf("run-rm-shim2 floor under hull: its %d own calls take %s of a run through callclock (containerd-2.4.2's %d: %s); if they took no time at all, hull would take %s, %.2f of containerd-2.4.2's %s; meeting %.1f needs them to take at most %s in all (%s a call, callclock's hop included), %.2f of what containerd-2.4.2's take\n",
		n, ms(own), cn, ms(cown), ms(hm-own), float64(hm-own)/float64(cm), ms(cm), target, ms(budget), ms(budget/time.Duration(max(n, 1))), float64(budget)/float64(cown))
	b.ReportMetric(float64(hm-own)/float64(cm), "own-calls-floor-ratio")
	// The floor under any daemon that ctr drives with this shim: ctr's
	// own work and the shim's, run directly. ctr's work is its CPU time,
	// which it spends while the daemon waits for its next call (ctr only
	// waits during a call); the time a run has no call in flight through
	// callclock is larger, as it holds the proxy's hops too.
	ctrOwn := min(median(hullCtrCPU), median(ctrdCtrCPU))
	left := time.Duration(target*float64(cm)) - ctrOwn - sm
	fmt.Printf("run-rm-shim2 floor with ctr and the shim: ctr's CPU time in a run (median: under hull %s, under containerd-2.4.2 %s; a run's time with no call in flight through callclock: %s and %s) and the same shim run directly (its start %s, Create %s, Start and Wait %s, Delete %s, then Shutdown; nothing kept: %s in all) take %s, %.2f of containerd-2.4.2's %s; meeting %.1f leaves the daemon %s for its %d own calls and its part in the 4 it passes to the shim, %s a call, where the quickest call through callclock takes %s (under hull) and %s (under containerd-2.4.2)\n",
		ms(median(hullCtrCPU)), ms(median(ctrdCtrCPU)), ms(hc.outside), ms(cc.outside),
		ms(median(shimSteps["start"])), ms(median(shimSteps["create"])), ms(median(shimSteps["start+wait"])), ms(median(shimSteps["delete"])), ms(sm),
		ms(ctrOwn+sm), float64(ctrOwn+sm)/float64(cm), ms(cm), target, ms(left), n, ms(left/time.Duration(n+4)), ms(hc.quickest()), ms(cc.quickest()))
	b.ReportMetric(float64(ctrOwn+sm)/float64(cm), "ctr-shim-floor-ratio")
}

// shimCalls are the task calls whose time is mostly the shim's and
// runc's: what any daemon using this shim waits for.
var shimCalls = map[string]bool{
	"/containerd.services.tasks.v1.Tasks/Create": true,
	"/containerd.services.tasks.v1.Tasks/Start":  true,
	"/containerd.services.tasks.v1.Tasks/Wait":   true,
	"/containerd.services.tasks.v1.Tasks/Delete": true,
}

// clockedCalls are the calls of one daemon's runs as callclock saw them:
// per method, the median over runs of its calls' total time in a run.
type clockedCalls struct {
	perRun map[string]time.Duration
	count  map[string]int // calls of the method in the last run
	order  []string       // methods, sorted
	// outside is the median time of a run in which no call was in
	// flight: ctr starting, and its work between calls.
	outside time.Duration
}

// union is the length of the union of spans (start, end), which calls
// that overlap (Wait with Start) make less than their sum.
func union(spans [][2]float64) float64 {
	sort.Slice(spans, func(i, j int) bool { return spans[i][0] < spans[j][0] })
	var total, end float64
	for i, s := range spans {
		if i == 0 || s[0] > end {
			total += s[1] - s[0]
			end = s[1]
		} else if s[1] > end {
			total += s[1] - end
			end = s[1]
		}
	}
	return total
}

// own is the time and the number of the daemon's own calls in a run:
// every method but shimCalls.
func (c clockedCalls) own() (time.Duration, int) {
	var (
		t time.Duration
		n int
	)
	for m, d := range c.perRun {
		if !shimCalls[m] {
			t += d
			n += c.count[m]
		}
	}
	return t, n
}

// quickest is the median time of the quickest call: a method's time in a
// run over its number of calls, for the least of all methods.
func (c clockedCalls) quickest() time.Duration {
	q := time.Duration(-1)
	for m, d := range c.perRun {
		if n := c.count[m]; n > 0 && (q < 0 || d/time.Duration(n) < q) {
			q = d / time.Duration(n)
		}
	}
	return q
}

func ms64(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// clockRunRm runs ctr's `run --rm` (args) n times against each daemon of
// addrs (by name), alternating, through a callclock of its own, after one
// untimed run each, and returns each daemon's calls.
func clockRunRm(b *testing.B, ctr string, args func(addr, id string) []string, addrs map[string]string, n int) map[string]clockedCalls {
	b.Helper()
	bin := hulltest.Build(b, "callclock", "github.com/hullrt/hull/test/bench/callclock")
	dir := b.TempDir()
	names := make([]string, 0, len(addrs))
	for name := range addrs {
		names = append(names, name)
	}
	sort.Strings(names)
	socks, logs := map[string]string{}, map[string]string{}
	for _, name := range names {
		socks[name], logs[name] = filepath.Join(dir, name+".sock"), filepath.Join(dir, name+".log")
		cmd := exec.Command(bin, socks[name], addrs[name], logs[name])
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if _, err := run(ctr, "--address", socks[name], "version"); err == nil {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("callclock in front of %s does not answer: %s", name, stderr.String())
			}
		}
	}
	runs := map[string][]map[string]time.Duration{}
	counts := map[string]map[string]int{}
	outside := map[string][]time.Duration{}
	for i := -1; i < n; i++ {
		for _, name := range names {
			before, err := os.ReadFile(logs[name])
			if err != nil {
				b.Fatal(err)
			}
			id := fmt.Sprintf("rm2-clock-%d", i+1)
			var out strings.Builder
			wall, err := runTo(&out, ctr, args(socks[name], id)...)
			if err != nil {
				b.Fatalf("%s through callclock: %v\n%s", name, err, out.String())
			}
			// The last calls of a run are logged as they end, which is
			// before ctr exits.
			after, err := os.ReadFile(logs[name])
			if err != nil {
				b.Fatal(err)
			}
			if i < 0 {
				continue
			}
			calls, count := map[string]time.Duration{}, map[string]int{}
			var spans [][2]float64
			for _, line := range strings.Split(string(after[len(before):]), "\n") {
				f := strings.Fields(line)
				if len(f) < 3 {
					continue
				}
				at, err1 := strconv.ParseFloat(f[0], 64)
				d, err2 := strconv.ParseFloat(f[1], 64)
				if err := errors.Join(err1, err2); err != nil {
					b.Fatalf("callclock log line %q: %v", line, err)
				}
				calls[f[2]] += time.Duration(d * float64(time.Millisecond))
				count[f[2]]++
				spans = append(spans, [2]float64{at, at + d})
			}
			runs[name] = append(runs[name], calls)
			counts[name] = count
			outside[name] = append(outside[name], wall-time.Duration(union(spans)*float64(time.Millisecond)))
		}
	}
	out := map[string]clockedCalls{}
	for _, name := range names {
		c := clockedCalls{perRun: map[string]time.Duration{}, count: counts[name], outside: median(outside[name])}
		seen := map[string]bool{}
		for _, calls := range runs[name] {
			for m := range calls {
				seen[m] = true
			}
		}
		for m := range seen {
			var per []time.Duration
			for _, calls := range runs[name] {
				per = append(per, calls[m]) // 0 in a run without the call
			}
			c.perRun[m] = median(per)
			c.order = append(c.order, m)
		}
		sort.Strings(c.order)
		out[name] = c
	}
	return out
}
