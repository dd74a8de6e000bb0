package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/internal/hulltest"
)

// TestCRIRestart kills hulld (SIGKILL) under a pod with a container that
// keeps logging and one that exits while hulld is down, and starts hulld
// again over the same state: the pod is as it was (ready, same IP, same
// pause process), the running container runs on (same process, its log
// still growing through the new hulld) and the exit that happened in
// between is reported with its code. Nothing is restarted.
func TestCRIRestart(t *testing.T) {
	if criInOwnNamespaces(t) {
		return
	}
	e := newCRIEnv(t)
	n := newCRINet(t)
	dir := t.TempDir()
	d1 := e.startCRI(t, criDaemonOptions{net: n, dir: dir})
	d1.pull(t, e.busybox)

	logDir, signalDir := t.TempDir(), t.TempDir()
	podCfg := d1.podConfig("restart", logDir)
	pod, pst1, pinfo1 := d1.runPod(t, podCfg)
	ticker := ctrConfig("ticker", e.busybox, "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done")
	ticker.LogPath = "ticker.log"
	tickerID := d1.runContainer(t, pod, podCfg, ticker)
	exiter := ctrConfig("exiter", e.busybox, "while [ ! -e /signal/go ]; do sleep 0.1; done; exit 3")
	exiter.Mounts = []*runtime.Mount{{ContainerPath: "/signal", HostPath: signalDir}}
	exiterID := d1.runContainer(t, pod, podCfg, exiter)
	tst1, tinfo1 := d1.containerStatus(t, tickerID)
	_, einfo1 := d1.containerStatus(t, exiterID)
	shims1 := hulltest.ShimPIDs(d1.Address)
	slices.Sort(shims1)
	if tinfo1.Pid <= 0 || einfo1.Pid <= 0 || pinfo1.Pid <= 0 {
		t.Fatalf("pids before the restart: pause %d, ticker %d, exiter %d", pinfo1.Pid, tinfo1.Pid, einfo1.Pid)
	}

	d1.Kill()
	if err := os.WriteFile(filepath.Join(signalDir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	hulltest.Eventually(t, 10*time.Second, "the exiter to exit while hulld is down", func() error {
		if !hulltest.ProcessExited(einfo1.Pid) {
			return fmt.Errorf("pid %d still runs", einfo1.Pid)
		}
		return nil
	})

	d2 := e.startCRI(t, criDaemonOptions{net: n, dir: dir, cgroupParent: d1.cgroupParent})
	pst2, pinfo2 := d2.podStatus(t, pod)
	if pst2.State != runtime.PodSandboxState_SANDBOX_READY {
		t.Errorf("after the restart the pod is %v; want READY", pst2.State)
	}
	if pst2.GetNetwork().GetIp() != pst1.GetNetwork().GetIp() {
		t.Errorf("after the restart the pod's IP is %q; want %q as before", pst2.GetNetwork().GetIp(), pst1.GetNetwork().GetIp())
	}
	if pinfo2.Pid != pinfo1.Pid {
		t.Errorf("after the restart the pause pid is %d; want %d as before", pinfo2.Pid, pinfo1.Pid)
	}
	if ips := n.allocated(t); len(ips) != 1 || ips[0] != pst1.GetNetwork().GetIp() {
		t.Errorf("after the restart host-local holds %v; want just the pod's %s", ips, pst1.GetNetwork().GetIp())
	}

	tst2, tinfo2 := d2.containerStatus(t, tickerID)
	if tst2.State != runtime.ContainerState_CONTAINER_RUNNING || tinfo2.Pid != tinfo1.Pid || tst2.StartedAt != tst1.StartedAt {
		t.Errorf("after the restart the ticker is %v, pid %d, started_at %d; want RUNNING, pid %d, started_at %d as before",
			tst2.State, tinfo2.Pid, tst2.StartedAt, tinfo1.Pid, tst1.StartedAt)
	}
	logFile := filepath.Join(logDir, "ticker.log")
	fi, err := os.Stat(logFile)
	if err != nil {
		t.Fatal(err)
	}
	// Twice: the first growth may be only what the pipe held while hulld
	// was down; the second is output copied as it comes.
	size := fi.Size()
	for range 2 {
		hulltest.Eventually(t, 10*time.Second, "the ticker's log to grow after the restart", func() error {
			fi, err := os.Stat(logFile)
			if err != nil {
				return err
			}
			if fi.Size() <= size {
				return fmt.Errorf("%s is still %d bytes", logFile, fi.Size())
			}
			size = fi.Size()
			return nil
		})
	}
	if ex := d2.execSync(t, tickerID, "echo", "still here"); string(ex.Stdout) != "still here\n" {
		t.Errorf("ExecSync after the restart: stdout %q", ex.Stdout)
	}

	est, _ := d2.containerStatus(t, exiterID)
	if est.State != runtime.ContainerState_CONTAINER_EXITED || est.ExitCode != 3 || est.FinishedAt == 0 {
		t.Errorf("after the restart the exiter is %v with exit code %d, finished_at %d; want EXITED, 3, set", est.State, est.ExitCode, est.FinishedAt)
	}
	shims2 := hulltest.ShimPIDs(d2.Address)
	slices.Sort(shims2)
	if !slices.Equal(shims1, shims2) {
		t.Errorf("shims after the restart %v; want the same as before %v", shims2, shims1)
	}
}
