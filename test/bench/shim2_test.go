package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/api/types"
	"google.golang.org/protobuf/proto"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/testimage"
	"github.com/hullrt/hull/test/bench/internal/recorded"
)

// BenchmarkRunRmShim2 times `run --rm` of a busybox container running
// /bin/true with containerd v2.4.2's runc shim (io.containerd.runc.v2) and
// containerd v2.4.2's ctr, under hulld and under containerd v2.4.2, both
// on temporary roots, alternating, 20 runs each after two warm-ups.
// Target: hulld <= 0.8x containerd v2.4.2's median with the same shim.
// The floor under any daemon, timed in the same loop, is ctr against a
// server answering its 43 calls at once (replayfloor) and the shim run
// directly (shimRunFloor). Then 9 more runs each through callclock show
// the time of each kind of call under both daemons.
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
	// The floor under any daemon that ctr drives with this shim, timed in
	// the same loop: ctr against replayfloor, which answers each of its
	// calls at once with what hulld answered in a recorded run, and the
	// same shim run directly, as any daemon must run it. What is above it
	// is the daemon's work for ctr's calls and the shim's hops through it.
	replay := startReplayRunRm(b, ctr, args, h.Address)
	shimFloor := newShimRunFloor(b, hulltest.Containerd2Bin(b, "containerd-shim-runc-v2"), "/bin/busybox", "true")
	var hullTimes, ctrdTimes, replayTimes, shimTimes, floors []time.Duration
	shimSteps := map[string][]time.Duration{}
	for i := -2; i < runs; i++ {
		id := fmt.Sprintf("rm2-%d", i+2)
		var out strings.Builder
		ht, err := runTo(&out, ctr, args(h.Address, id)...)
		if err != nil {
			b.Fatalf("hulld: %v\n%s", err, out.String())
		}
		ct, err := runTo(&out, ctr, args(c.Address, id)...)
		if err != nil {
			b.Fatalf("containerd: %v\n%s", err, out.String())
		}
		rt, err := runTo(&out, ctr, args(replay, id)...)
		if err != nil {
			b.Fatalf("against replayfloor: %v\n%s", err, out.String())
		}
		st, err := shimFloor.once()
		if err != nil {
			b.Fatal(err)
		}
		if i >= 0 {
			hullTimes, ctrdTimes = append(hullTimes, ht), append(ctrdTimes, ct)
			replayTimes, shimTimes, floors = append(replayTimes, rt), append(shimTimes, st), append(floors, rt+st)
			for step, d := range shimFloor.phases {
				shimSteps[step] = append(shimSteps[step], d)
			}
		}
	}
	hm, cm, fm := median(hullTimes), median(ctrdTimes), median(floors)
	report(b, "run-rm-shim2", "containerd-2.4.2", hm, cm, target,
		fmt.Sprintf("containerd v2.4.2's runc shim and ctr under both; floor (ctr against replayfloor %s, and the shim run directly %s: its start %s, Create %s, Start and Wait %s, Delete %s) %s, %.2f of containerd's; above it hull %s, containerd %s",
			ms(median(replayTimes)), ms(median(shimTimes)), ms(median(shimSteps["start"])), ms(median(shimSteps["create"])),
			ms(median(shimSteps["start+wait"])), ms(median(shimSteps["delete"])), ms(fm), float64(fm)/float64(cm), ms(hm-fm), ms(cm-fm)))
	b.ReportMetric(float64(fm)/float64(cm), "floor-ratio")
	b.ReportMetric(float64(hm)/float64(fm), "hull/floor")
	if fm > time.Duration(target*float64(cm)) {
		fmt.Printf("run-rm-shim2: the floor is above the target (%.3f > %.1f of containerd's): no daemon can meet it here\n", float64(fm)/float64(cm), target)
	}

	// Where the time goes, call by call: more runs with callclock between
	// ctr and each daemon. The calls that wait on the shim and runc
	// (Tasks Create, Start, Wait and Delete) are told apart from the
	// daemon's own (leases, snapshots, containers, content, images, task
	// lookups).
	clocked := clockRunRm(b, ctr, args, map[string]string{"hull": h.Address, "containerd-2.4.2": c.Address}, 9)
	hc, cc := clocked["hull"], clocked["containerd-2.4.2"]
	fmt.Printf("run-rm-shim2 calls, median ms per run through callclock (hull, containerd-2.4.2):")
	for _, m := range hc.order {
		fmt.Printf(" %s %.1f/%.1f;", strings.TrimPrefix(m, "/containerd.services."), ms64(hc.perRun[m]), ms64(cc.perRun[m]))
	}
	fmt.Println()
	own, n := hc.own()
	cown, cn := cc.own()
	fmt.Printf("run-rm-shim2: hull's %d own calls take %s of a run through callclock, its hop included (containerd-2.4.2's %d: %s); the quickest call takes %s (under hull) and %s (under containerd-2.4.2)\n",
		n, ms(own), cn, ms(cown), ms(hc.quickest()), ms(cc.quickest()))
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
	dir := b.TempDir()
	names := make([]string, 0, len(addrs))
	for name := range addrs {
		names = append(names, name)
	}
	sort.Strings(names)
	socks, logs := map[string]string{}, map[string]string{}
	for _, name := range names {
		socks[name], logs[name] = filepath.Join(dir, name+".sock"), filepath.Join(dir, name+".log")
		startCallclock(b, ctr, socks[name], addrs[name], logs[name])
	}
	runs := map[string][]map[string]time.Duration{}
	counts := map[string]map[string]int{}
	for i := -1; i < n; i++ {
		for _, name := range names {
			before, err := os.ReadFile(logs[name])
			if err != nil {
				b.Fatal(err)
			}
			id := fmt.Sprintf("rm2-clock-%d", i+1)
			var out strings.Builder
			if _, err := runTo(&out, ctr, args(socks[name], id)...); err != nil {
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
			for _, line := range strings.Split(string(after[len(before):]), "\n") {
				f := strings.Fields(line)
				if len(f) < 3 {
					continue
				}
				d, err := strconv.ParseFloat(f[1], 64)
				if err != nil {
					b.Fatalf("callclock log line %q: %v", line, err)
				}
				calls[f[2]] += time.Duration(d * float64(time.Millisecond))
				count[f[2]]++
			}
			runs[name] = append(runs[name], calls)
			counts[name] = count
		}
	}
	out := map[string]clockedCalls{}
	for _, name := range names {
		c := clockedCalls{perRun: map[string]time.Duration{}, count: counts[name]}
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

// startCallclock starts callclock serving on sock in front of the daemon
// at target, with its log (and record, when given) as args says, and waits
// until ctr's version call goes through it; it is stopped when b ends.
func startCallclock(b *testing.B, ctr, sock, target string, args ...string) {
	b.Helper()
	startFloorServer(b, "callclock", append([]string{sock, target}, args...), func() error {
		_, err := run(ctr, "--address", sock, "version")
		return err
	})
}

// startReplayRunRm records the answers of one run against the daemon at
// addr through callclock and starts replayfloor giving those answers
// again, for ctr's runs on the socket it returns: a run's cost to ctr and
// the transport when every call is answered at once. replayfloor is
// stopped when b ends.
func startReplayRunRm(b *testing.B, ctr string, args func(addr, id string) []string, addr string) string {
	b.Helper()
	dir := b.TempDir()
	startCallclock(b, ctr, filepath.Join(dir, "clock.sock"), addr, filepath.Join(dir, "clock.log"), filepath.Join(dir, "record"))
	// The record holds one run and nothing else: callclock appends, so
	// emptying the file drops the readiness calls.
	if err := os.Truncate(filepath.Join(dir, "record"), 0); err != nil {
		b.Fatal(err)
	}
	// callclock writes a call's answer before the call ends, so the
	// record is whole when ctr exits.
	var out strings.Builder
	if _, err := runTo(&out, ctr, args(filepath.Join(dir, "clock.sock"), "rm2-record")...); err != nil {
		b.Fatalf("recording a run: %v\n%s", err, out.String())
	}
	// ctr mounts the rootfs it is given to read the image's /etc/group.
	if err := moveUpperDirs(filepath.Join(dir, "record"), filepath.Join(dir, "upper")); err != nil {
		b.Fatal(err)
	}
	sock := filepath.Join(dir, "replay.sock")
	startFloorServer(b, "replayfloor", []string{sock, filepath.Join(dir, "record")}, func() error {
		_, err := os.Stat(sock)
		return err
	})
	return sock
}

// moveUpperDirs rewrites the recorded answers of Snapshots Prepare and
// Mounts so that their mounts' upper and work directories are new empty
// ones under dir: the recorded run removed its snapshot, whose directories
// hulld may clean away at any time, while its lower directories, the
// image's, stay.
func moveUpperDirs(record, dir string) error {
	data, err := os.ReadFile(record)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var a recorded.Answer
		if err := json.Unmarshal(line, &a); err != nil {
			return err
		}
		if err := moveAnswerUpperDirs(&a, dir); err != nil {
			return err
		}
		if err := enc.Encode(a); err != nil {
			return err
		}
	}
	return os.WriteFile(record, out.Bytes(), 0o644)
}

// moveAnswerUpperDirs moves the upper and work directories of the mounts
// in a, when it answers Snapshots Prepare or Mounts, to new ones under dir.
func moveAnswerUpperDirs(a *recorded.Answer, dir string) error {
	var m interface {
		proto.Message
		GetMounts() []*types.Mount
	}
	switch a.Method {
	case "/containerd.services.snapshots.v1.Snapshots/Prepare":
		m = &snapshotsapi.PrepareSnapshotResponse{}
	case "/containerd.services.snapshots.v1.Snapshots/Mounts":
		m = &snapshotsapi.MountsResponse{}
	default:
		return nil
	}
	for i, r := range a.Responses {
		if err := proto.Unmarshal(r, m); err != nil {
			return err
		}
		for _, mnt := range m.GetMounts() {
			for j, o := range mnt.Options {
				for _, key := range []string{"upperdir=", "workdir="} {
					if strings.HasPrefix(o, key) {
						moved := filepath.Join(dir, strings.TrimSuffix(key, "="))
						if err := os.MkdirAll(moved, 0o755); err != nil {
							return err
						}
						mnt.Options[j] = key + moved
					}
				}
			}
		}
		var err error
		if a.Responses[i], err = proto.Marshal(m); err != nil {
			return err
		}
	}
	return nil
}
