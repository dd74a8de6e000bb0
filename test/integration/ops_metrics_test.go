package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/hullrt/hull/internal/hulltest"
)

// scrape reads hulld's /v1/metrics and returns every sample as
// `name{label="value",...}` (labels sorted) to its value.
func scrape(addr string) (map[string]float64, error) {
	resp, err := http.Get("http://" + addr + "/v1/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("GET /v1/metrics: %s: %s", resp.Status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(ls)
			out[name+"{"+strings.Join(ls, ",")+"}"] = value(mf.GetType(), m)
		}
	}
	return out, nil
}

func value(t dto.MetricType, m *dto.Metric) float64 {
	if t == dto.MetricType_COUNTER {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// taskSeries returns the samples of container id in namespace ns.
func taskSeries(samples map[string]float64, ns, id string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range samples {
		if strings.Contains(k, `container_id="`+id+`"`) && strings.Contains(k, `namespace="`+ns+`"`) {
			out[k] = v
		}
	}
	return out
}

// TestOpsMetrics runs containers under hull's shim and Debian's runc shim
// and reads their cgroup metrics from hulld's /v1/metrics under
// containerd's names and labels: CPU, memory and pids of a busy one, the
// OOM counters of one whose process outgrew its memory limit; a stopped
// container's series go, and so do a deleted one's. The debug socket
// serves /debug/vars.
func TestOpsMetrics(t *testing.T) {
	hulltest.RequireCtr(t)
	taskRuntimes(t) // builds hull's shim next to hulld
	dbg := filepath.Join(t.TempDir(), "debug.sock")
	d := startForTasks(t, hulltest.Options{Config: `version = 3
[debug]
  address = "` + dbg + `"
[metrics]
  address = "127.0.0.1:0"
`})
	m := regexp.MustCompile(`msg="metrics listening" address=(127\.0\.0\.1:\d+)`).FindStringSubmatch(d.Log())
	if m == nil {
		t.Fatalf("no metrics address in the log:\n%s", d.Log())
	}
	addr := m[1]

	const ns = "opsmetrics"
	ref := "example.test/busybox:ops"
	importWithCtr(t, d, ns, ref, busyboxImage(t))
	// runc leaves the namespace's parent cgroup (/<namespace>/<id>).
	t.Cleanup(func() {
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", ns))
		for _, dir := range dirs {
			os.Remove(dir)
		}
	})
	hull := newCtrTask(t, d, ns, "io.containerd.hull.v2")
	runc := newCtrTask(t, d, ns, "io.containerd.runc.v2")
	busy := "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 600"
	hull.ok(t, "run", "-d", ref, "busy", "sh", "-c", busy)
	runc.ok(t, "run", "-d", ref, "rbusy", "sh", "-c", busy)
	// dd's 64 MiB buffer cannot fit under 32 MiB (the host has no swap
	// to spill into): the OOM killer takes dd, and sh lives on.
	hull.ok(t, "run", "-d", "--memory-limit", "33554432", ref, "oom", "sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1; exec sleep 600")

	var samples map[string]float64
	hulltest.Eventually(t, 30*time.Second, "the containers' metrics", func() error {
		var err error
		if samples, err = scrape(addr); err != nil {
			return err
		}
		for _, c := range []struct {
			id, name string
			min      float64
		}{
			{"busy", "container_cpu_total_nanoseconds", 1},
			{"busy", "container_memory_usage_usage_bytes", 1},
			{"busy", "container_memory_rss_bytes", 1},
			{"busy", "container_pids_current", 1},
			{"rbusy", "container_cpu_total_nanoseconds", 1},
			{"rbusy", "container_memory_usage_usage_bytes", 1},
			{"rbusy", "container_pids_current", 1},
			{"oom", "container_memory_oom_total", 1},
			{"oom", "container_memory_oom_kill_total", 1},
			{"oom", "container_pids_current", 1},
		} {
			k := c.name + `{container_id="` + c.id + `",namespace="` + ns + `"}`
			v, ok := samples[k]
			if !ok {
				return fmt.Errorf("no %s", k)
			}
			if v < c.min {
				return fmt.Errorf("%s = %v, want at least %v", k, v, c.min)
			}
		}
		return nil
	})
	// Plausible values, not just present ones.
	l := `{container_id="oom",namespace="` + ns + `"}`
	if lim := samples["container_memory_usage_limit_bytes"+l]; lim != 32<<20 {
		t.Errorf("oom's memory limit reads %v, want %d", lim, 32<<20)
	}
	if n := samples["container_pids_current"+`{container_id="busy",namespace="`+ns+`"}`]; n > 5 {
		t.Errorf("busy runs %v pids, want 1 (sleep)", n)
	}
	if o := samples["container_memory_oom_total"+`{container_id="busy",namespace="`+ns+`"}`]; o != 0 {
		t.Errorf("busy counts %v OOMs", o)
	}
	if f := samples[`hull_task_metrics_failures{reason="error"}`] + samples[`hull_task_metrics_failures{reason="timeout"}`]; f != 0 {
		t.Errorf("%v tasks failed to report", f)
	}
	if samples[`hull_grpc_calls_total{code="OK",method="/containerd.services.tasks.v1.Tasks/Create"}`] < 3 {
		t.Error("the API metrics are not beside the task metrics")
	}

	// A stopped task has nothing to measure; a deleted one is gone.
	hull.ok(t, "tasks", "kill", "-s", "SIGKILL", "busy")
	hull.waitStatus(t, "busy", "STOPPED")
	hulltest.Eventually(t, 10*time.Second, "the stopped container's series to go", func() error {
		s, err := scrape(addr)
		if err != nil {
			return err
		}
		if left := taskSeries(s, ns, "busy"); len(left) > 0 {
			return fmt.Errorf("%d series left, e.g. %v", len(left), firstKey(left))
		}
		return nil
	})
	for _, id := range []string{"rbusy", "oom", "busy"} {
		hull.run("tasks", "kill", "-s", "SIGKILL", id)
		hull.waitStatus(t, id, "STOPPED")
		hull.ok(t, "tasks", "rm", id)
		hull.ok(t, "containers", "rm", id)
	}
	s, err := scrape(addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"busy", "rbusy", "oom"} {
		if left := taskSeries(s, ns, id); len(left) > 0 {
			t.Errorf("deleted container %s keeps %d series, e.g. %v", id, len(left), firstKey(left))
		}
	}

	// /debug/vars on the debug socket: expvar's JSON with memstats.
	hc := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return net.Dial("unix", dbg)
	}}}
	resp, err := hc.Get("http://hulld/debug/vars")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var vars struct {
		Cmdline  []string `json:"cmdline"`
		Memstats struct {
			HeapAlloc uint64 `json:"HeapAlloc"`
			NumGC     uint32 `json:"NumGC"`
		} `json:"memstats"`
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("/debug/vars Content-Type %q", ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(&vars); err != nil {
		t.Fatalf("/debug/vars is not JSON: %v", err)
	}
	if vars.Memstats.HeapAlloc == 0 || len(vars.Cmdline) == 0 || !strings.Contains(vars.Cmdline[0], "hulld") {
		t.Fatalf("/debug/vars: %+v", vars)
	}
}

func firstKey(m map[string]float64) string {
	for k := range m {
		return k
	}
	return ""
}

// TestOpsShimDump: SIGUSR1 to hulld reaches hull's shims, each of which
// writes its goroutines to a file in its bundle; hulld's log names the
// file in one short line and holds none of the shim's stacks.
func TestOpsShimDump(t *testing.T) {
	hulltest.RequireCtr(t)
	taskRuntimes(t)
	d := startForTasks(t, hulltest.Options{})
	const ns = "opsdump"
	ref := "example.test/busybox:dump"
	importWithCtr(t, d, ns, ref, busyboxImage(t))
	t.Cleanup(func() {
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", ns))
		for _, dir := range dirs {
			os.Remove(dir)
		}
	})
	hull := newCtrTask(t, d, ns, "io.containerd.hull.v2")
	hull.ok(t, "run", "-d", ref, "sleeper", "sleep", "600")
	bundle := filepath.Join(d.State, "io.containerd.runtime.v2.task", ns, "sleeper")

	if err := syscall.Kill(d.PID(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	var dump string
	hulltest.Eventually(t, 10*time.Second, "the shim's goroutine dump", func() error {
		files, _ := filepath.Glob(filepath.Join(bundle, "shim.*.stacks.log"))
		if len(files) != 1 {
			return fmt.Errorf("dump files %v", files)
		}
		data, err := os.ReadFile(files[0])
		if err != nil {
			return err
		}
		if !strings.Contains(string(data), "goroutine ") || !strings.Contains(string(data), "bootstrap.Serve") {
			return fmt.Errorf("%s holds no shim stacks yet:\n%.300s", files[0], data)
		}
		dump = files[0]
		return nil
	})
	var line string
	hulltest.Eventually(t, 10*time.Second, "hulld's log to name the dump", func() error {
		for _, l := range strings.Split(d.Log(), "\n") {
			if strings.Contains(l, "goroutine dump written") && strings.Contains(l, dump) {
				line = l
				return nil
			}
		}
		return fmt.Errorf("no line names %s", dump)
	})
	t.Logf("hulld's log names the dump: %s", line)
	if len(line) > 600 {
		t.Errorf("the line naming the dump is %d bytes long: %s", len(line), line)
	}
	// hulld's own stacks are in its log by design (raw, between BEGIN and
	// END lines); the shim's no longer come as an attribute of a line.
	if strings.Contains(d.Log(), "stacks=") {
		t.Errorf("the shim's stacks reached hulld's log")
	}

	// A second dump replaces the first: one file per shim.
	for _, pid := range hulltest.ShimPIDs(d.Address) {
		syscall.Kill(pid, syscall.SIGUSR1)
	}
	hulltest.Eventually(t, 10*time.Second, "hulld's log to name the second dump", func() error {
		if n := strings.Count(d.Log(), "goroutine dump written"); n < 2 {
			return fmt.Errorf("%d dump lines", n)
		}
		return nil
	})
	// A dump still being written is a temporary file beside the last one
	// until its rename replaces it.
	hulltest.Eventually(t, 10*time.Second, "one dump file in the bundle", func() error {
		if files, _ := filepath.Glob(filepath.Join(bundle, "*stacks*")); len(files) != 1 {
			return fmt.Errorf("bundle holds dumps %v, want one", files)
		}
		return nil
	})

	hull.ok(t, "tasks", "kill", "-s", "SIGKILL", "sleeper")
	hull.waitStatus(t, "sleeper", "STOPPED")
	hull.ok(t, "tasks", "rm", "sleeper")
	hull.ok(t, "containers", "rm", "sleeper")
	assertNoLeaks(t, d)
}
