// Package bench measures hull against baselines (Debian's containerd 1.6,
// coreutils) in the same run and reports the ratios. The benchmarks measure;
// they fail only on errors, never on a missed target. Run them with
// `make bench`, or:
//
//	go test -run '^$' -bench . -benchtime 1x -timeout 60m ./test/bench/
package bench

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/hullrt/hull/internal/hulltest"
)

// startHull starts a hulld for b at info level (hulltest defaults to debug,
// which containerd is not run at); dir, when not empty, holds its root and
// state.
func startHull(b *testing.B, dir string) *hulltest.Daemon {
	b.Helper()
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			b.Fatal(err)
		}
	}
	o := hulltest.Options{Dir: dir, Args: []string{"--log-level", "info"}}
	if os.Getenv(profileEnv) != "" {
		if dir == "" {
			dir = b.TempDir()
			o.Dir = dir
		}
		o.Config = fmt.Sprintf("version = 3\n[debug]\naddress = %q\n", filepath.Join(dir, "debug.sock"))
	}
	return hulltest.Start(b, o)
}

// TestMain runs the benchmarks and then removes the binaries built for them
// and, when benchmarks ran (they run containerd's shims and ctr, and `make
// bench` runs this package alone), the directories those made at their
// fixed defaults under /run/containerd. Without -bench nothing here runs
// them, and the integration tests, which do, may run beside.
func TestMain(m *testing.M) {
	flag.Parse()
	cleanup := func() {}
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		containerd, hull := hulltest.RemoveContainerdDefaultsMade(), hulltest.RemoveHullDefaultsMade()
		cleanup = func() { containerd(); hull() }
	}
	code := m.Run()
	cleanup()
	hulltest.RemoveBuilds()
	os.Exit(code)
}

// profileEnv names the environment variable that turns on CPU profiles of
// hulld: HULL_BENCH_CPUPROFILE=PREFIX writes PREFIX.<label>.prof for each
// profiled step, taken through hulld's debug (pprof) socket. With
// HULL_BENCH_TRACE=1 as well, each is an execution trace instead (PREFIX.
// <label>.trace, for `go tool trace`): where hulld waits rather than where it
// spends CPU.
const profileEnv = "HULL_BENCH_CPUPROFILE"

// profileHull starts a CPU profile of hulld lasting seconds, when
// HULL_BENCH_CPUPROFILE is set, and returns a func that waits for it to be
// saved; the benchmark runs the step to profile in between.
func profileHull(b *testing.B, h *hulltest.Daemon, label string, seconds int) func() {
	return profileHullAt(b, h.Root, label, seconds)
}

// profileHullAt is profileHull for the hulld whose root is root (startHull
// puts the debug socket beside it).
func profileHullAt(b *testing.B, root, label string, seconds int) func() {
	prefix := os.Getenv(profileEnv)
	if prefix == "" {
		return func() {}
	}
	sock := filepath.Join(filepath.Dir(root), "debug.sock")
	done := make(chan error, 1)
	kind, ext := "profile", ".prof"
	if os.Getenv("HULL_BENCH_TRACE") != "" {
		kind, ext = "trace", ".trace"
	}
	go func() { done <- fetchProfile(sock, kind, prefix+"."+label+ext, seconds) }()
	time.Sleep(100 * time.Millisecond) // the profile has started
	return func() {
		if err := <-done; err != nil {
			b.Fatalf("profile of hulld: %v", err)
		}
	}
}

// fetchProfile saves a CPU profile or trace (kind) of seconds from the pprof
// server on the unix socket sock into file.
func fetchProfile(sock, kind, file string, seconds int) error {
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get(fmt.Sprintf("http://hulld/debug/pprof/%s?seconds=%d", kind, seconds))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// startContainerd starts Debian's containerd (the baseline) with CRI
// disabled under dir, or under a new temporary directory when dir is empty,
// through hulltest.StartContainerd; it is stopped when b ends. It fails b
// when ctr, the baseline's client, is missing.
func startContainerd(b *testing.B, dir string) *hulltest.Containerd {
	b.Helper()
	hulltest.RequireCtr(b)
	return hulltest.StartContainerd(b, dir)
}

// dial connects raw containerd API clients to the socket at addr.
func dial(b testing.TB, addr string) *grpc.ClientConn {
	b.Helper()
	conn, err := grpc.NewClient("unix://"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return conn
}

func nsCtx(ns string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "containerd-namespace", ns)
}

// writeBlob ingests data in one COMMIT message of the Write stream, with its
// size and digest expected, and labels (nil for none) on the committed blob.
func writeBlob(ctx context.Context, cs contentapi.ContentClient, ref string, data []byte, dgst digest.Digest, labels map[string]string) error {
	w, err := cs.Write(ctx)
	if err != nil {
		return err
	}
	defer w.CloseSend()
	if err := w.Send(&contentapi.WriteContentRequest{Action: contentapi.WriteAction_STAT, Ref: ref, Total: int64(len(data)), Expected: dgst.String()}); err != nil {
		return err
	}
	st, err := w.Recv()
	if err != nil {
		return fmt.Errorf("stat %s: %w", ref, err)
	}
	if err := w.Send(&contentapi.WriteContentRequest{Action: contentapi.WriteAction_COMMIT, Ref: ref, Offset: st.Offset, Data: data[st.Offset:], Total: int64(len(data)), Expected: dgst.String(), Labels: labels}); err != nil {
		return err
	}
	if _, err := w.Recv(); err != nil {
		return fmt.Errorf("commit %s: %w", ref, err)
	}
	return nil
}

// ingestFile streams the file at path through the Write stream the way
// containerd's client does: a STAT naming the expected size and digest, then
// WRITE messages of chunk bytes, each answered before the next is sent, then a
// COMMIT.
func ingestFile(ctx context.Context, cs contentapi.ContentClient, ref, path string, size int64, dgst digest.Digest, chunk int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w, err := cs.Write(ctx)
	if err != nil {
		return err
	}
	defer w.CloseSend()
	if err := w.Send(&contentapi.WriteContentRequest{Action: contentapi.WriteAction_STAT, Ref: ref, Total: size, Expected: dgst.String()}); err != nil {
		return err
	}
	st, err := w.Recv()
	if err != nil {
		return fmt.Errorf("stat %s: %w", ref, err)
	}
	if st.Offset != 0 {
		return fmt.Errorf("ingest %s starts at offset %d, want a fresh ingest", ref, st.Offset)
	}
	buf := make([]byte, chunk)
	var off int64
	for {
		n, rerr := io.ReadFull(f, buf)
		if n > 0 {
			if err := w.Send(&contentapi.WriteContentRequest{Action: contentapi.WriteAction_WRITE, Ref: ref, Offset: off, Data: buf[:n]}); err != nil {
				return err
			}
			resp, err := w.Recv()
			if err != nil {
				return fmt.Errorf("write %s at %d: %w", ref, off, err)
			}
			off += int64(n)
			if resp.Offset != off {
				return fmt.Errorf("write %s: daemon at offset %d, want %d", ref, resp.Offset, off)
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if err := w.Send(&contentapi.WriteContentRequest{Action: contentapi.WriteAction_COMMIT, Ref: ref, Offset: off, Total: size, Expected: dgst.String()}); err != nil {
		return err
	}
	resp, err := w.Recv()
	if err != nil {
		return fmt.Errorf("commit %s: %w", ref, err)
	}
	if resp.Digest != "" && resp.Digest != dgst.String() {
		return fmt.Errorf("commit %s: daemon committed %s, want %s", ref, resp.Digest, dgst)
	}
	return nil
}

// median returns the median of ds (the mean of the middle two for an even
// count).
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// run runs a command with its stdout discarded and returns how long it took;
// stderr is returned in the error when it fails.
func run(name string, args ...string) (time.Duration, error) {
	return runTo(io.Discard, name, args...)
}

func runTo(stdout io.Writer, name string, args ...string) (time.Duration, error) {
	wall, _, err := runCPU(stdout, name, args...)
	return wall, err
}

// runCPU is runTo that also returns the CPU time (user and system) the
// command used.
func runCPU(stdout io.Writer, name string, args ...string) (wall, cpu time.Duration, err error) {
	cmd := exec.Command(name, args...)
	cmd.Stdout = stdout
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err = cmd.Run()
	wall = time.Since(start)
	if err != nil {
		return wall, 0, fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return wall, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// syncDisk flushes dirty pages so that earlier writes do not compete with
// the next timed step.
func syncDisk(b *testing.B) {
	b.Helper()
	if _, err := run("sync"); err != nil {
		b.Fatal(err)
	}
}

// ms formats d in milliseconds.
func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
}

// report prints one line comparing hull with the baseline and reports the
// times and the ratio as metrics. It never fails b: a missed target is a
// number to read, not an error.
func report(b *testing.B, name, baseName string, hull, base time.Duration, target float64, extra string) {
	b.Helper()
	ratio := float64(hull) / float64(base)
	line := fmt.Sprintf("%s: hull %s %s %s ratio %.2f (target <= %.2f, %s)", name, ms(hull), baseName, ms(base), ratio, target, verdict(ratio, target))
	if extra != "" {
		line += "; " + extra
	}
	fmt.Println(line)
	b.ReportMetric(float64(hull)/float64(time.Millisecond), "hull-ms")
	b.ReportMetric(float64(base)/float64(time.Millisecond), baseName+"-ms")
	b.ReportMetric(ratio, "hull/"+baseName)
}

// verdict says whether ratio meets target ("met") or not ("MISSED"), in
// the words every benchmark's line uses.
func verdict(ratio, target float64) string {
	if ratio > target {
		return "MISSED"
	}
	return "met"
}

// pssKiB reads the proportional set size of pid, in KiB: its private
// pages plus its share of each page it shares (a binary's text mapped by 30
// shims counts a thirtieth in each), from /proc/PID/smaps_rollup. Summed
// over processes it is the memory they take together, where summed RSS
// counts shared pages once per process.
func pssKiB(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Pss:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no Pss in /proc/%d/smaps_rollup", pid)
}

// rssKiB reads VmRSS (and RssAnon) of pid from /proc, in KiB.
func rssKiB(pid int) (rss, anon int64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v
		case "RssAnon:":
			anon = v
		}
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return rss, anon, nil
}

// cpuTime returns the user plus system CPU time pid has used so far, from
// /proc/PID/stat (clock ticks of 10ms).
func cpuTime(pid int) (time.Duration, error) {
	own, _, err := cpuTimes(pid)
	return own, err
}

// cpuTimes returns the user plus system CPU time pid has used so far and
// that of its children it has waited for (with theirs), from /proc/PID/stat.
func cpuTimes(pid int) (own, children time.Duration, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: no command end", pid)
	}
	// Fields after the command: state is field 3; utime, stime, cutime
	// and cstime are 14 to 17.
	f := strings.Fields(s[i+1:])
	if len(f) < 15 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var t [4]int64
	for j := range t {
		if t[j], err = strconv.ParseInt(f[11+j], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/stat: field %d: %w", pid, 14+j, err)
		}
	}
	return time.Duration(t[0]+t[1]) * 10 * time.Millisecond, time.Duration(t[2]+t[3]) * 10 * time.Millisecond, nil
}

// runTime returns the time pid's threads have run so far, summed from
// /proc/PID/task/*/schedstat (nanoseconds, where /proc/PID/stat counts
// 10ms ticks): for short windows of little CPU, such as a few hundred
// relists. Threads that exit meanwhile take their time with them, so it
// suits only windows in which the process makes or ends no threads.
func runTime(pid int) (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, t := range tasks {
		data, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if err != nil {
			continue // the thread ended meanwhile
		}
		f := strings.Fields(string(data))
		if len(f) < 1 {
			return 0, fmt.Errorf("%s/%s/schedstat: %q", dir, t.Name(), data)
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s/%s/schedstat: %w", dir, t.Name(), err)
		}
		sum += ns
	}
	return time.Duration(sum), nil
}

// cmdCPU runs a command with its stdout discarded and returns its wall time,
// its own CPU time (user+system) and the CPU time daemon pid used meanwhile.
func cmdCPU(pid int, name string, args ...string) (wall, own, daemon time.Duration, err error) {
	before, err := cpuTime(pid)
	if err != nil {
		return 0, 0, 0, err
	}
	wall, own, err = runCPU(io.Discard, name, args...)
	if err != nil {
		return wall, 0, 0, err
	}
	after, err := cpuTime(pid)
	if err != nil {
		return 0, 0, 0, err
	}
	return wall, own, after - before, nil
}
