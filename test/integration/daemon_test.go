package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	versionapi "github.com/containerd/containerd/api/services/version/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/internal/hulltest"
)

func TestDaemonSocketAndLock(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	fi, err := os.Stat(d.Address)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v, want socket 0660", fi.Mode())
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 0 || st.Gid != 0 {
		t.Fatalf("socket owned by %d:%d, want 0:0", st.Uid, st.Gid)
	}
	for _, dir := range []string{d.Root, d.State} {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o066 != 0 {
			t.Errorf("%s is mode %v: others may read it", dir, fi.Mode().Perm())
		}
	}
	// A second hulld on the same root refuses to start and says why.
	cmd := exec.Command(hulltest.Binary(t), "--root", d.Root, "--state", t.TempDir(), "--address", filepath.Join(t.TempDir(), "s.sock"), "--config", d.Config)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("second hulld on the same root started:\n%s", out)
	}
	if !strings.Contains(string(out), "in use by another hulld") || !strings.Contains(string(out), d.Root) {
		t.Fatalf("second hulld's error does not explain the lock:\n%s", out)
	}
}

// TestDaemonRefusesALiveDaemonsSocket: a second hulld given the address
// of a live one (with its own root) refuses to start and says so, and the
// first keeps its socket and answers; a socket left by a killed daemon is
// taken over.
func TestDaemonRefusesALiveDaemonsSocket(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	cmd := exec.Command(hulltest.Binary(t), "--root", t.TempDir(), "--state", t.TempDir(), "--address", d.Address, "--config", d.Config)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("a second hulld on a live daemon's socket started:\n%s", out)
	}
	if !strings.Contains(string(out), "another daemon is serving on "+d.Address) {
		t.Errorf("the second hulld's error does not name the socket in use:\n%s", out)
	}
	if _, err := os.Stat(d.Address); err != nil {
		t.Fatalf("the first daemon's socket: %v", err)
	}
	vc := versionapi.NewVersionClient(dial(t, d))
	if _, err := vc.Version(nsCtx("default"), &emptypb.Empty{}); err != nil {
		t.Fatalf("the first daemon stopped answering: %v", err)
	}

	// Killed, the daemon leaves its socket; a new one on the same root
	// and address replaces it.
	d.Kill()
	if _, err := os.Stat(d.Address); err != nil {
		t.Fatalf("a killed daemon's socket is expected to stay: %v", err)
	}
	d2 := hulltest.Start(t, hulltest.Options{Dir: filepath.Dir(d.Root)})
	if d2.Address != d.Address {
		t.Fatalf("the restarted daemon serves %s, not %s", d2.Address, d.Address)
	}
	if _, err := versionapi.NewVersionClient(dial(t, d2)).Version(nsCtx("default"), &emptypb.Empty{}); err != nil {
		t.Fatalf("the daemon that took over the stale socket does not answer: %v", err)
	}
}

func TestDaemonSIGUSR1DumpsStacks(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	if err := syscall.Kill(d.PID(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	// hulld says "goroutine dump written" once the file is written and
	// closed: before that the file may be there but incomplete.
	hulltest.Eventually(t, 10*time.Second, "hulld to write its stack dump", func() error {
		if !strings.Contains(d.Log(), "goroutine dump written") {
			return fmt.Errorf("hulld has not logged %q", "goroutine dump written")
		}
		return nil
	})
	if !strings.Contains(d.Log(), "goroutine stack dump") {
		t.Fatal("the dump was not written to the log")
	}
	files, err := filepath.Glob(filepath.Join(d.State, "hulld.*.stacks.*.log"))
	if err != nil || len(files) != 1 {
		t.Fatalf("stack dumps under %s: %v %v", d.State, files, err)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "goroutine ") || !strings.Contains(string(b), "google.golang.org/grpc") {
		t.Fatalf("dump does not hold goroutine stacks:\n%.500s", b)
	}
	// Still serving after the dump.
	d.Ctr(t, nil, "version")
}

func TestDaemonCleanShutdown(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{})
	d.Ctr(t, nil, "namespaces", "create", "keep")
	if err := syscall.Kill(d.PID(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("hulld did not exit on SIGTERM")
	}
	if code := d.ExitCode(); code != 0 {
		t.Fatalf("hulld exited %d on SIGTERM\n%s", code, d.Log())
	}
	if _, err := os.Stat(d.Address); !os.IsNotExist(err) {
		t.Errorf("socket left behind after shutdown: %v", err)
	}
	// The database was closed cleanly: a restart sees the namespace.
	d2 := hulltest.Start(t, hulltest.Options{Dir: filepath.Dir(d.Root)})
	if out := d2.Ctr(t, nil, "namespaces", "ls", "-q"); !strings.Contains(out, "keep") {
		t.Fatalf("namespace lost across restart:\n%s", out)
	}
}

func TestDaemonRequiredAndDisabledPlugins(t *testing.T) {
	d := hulltest.Start(t, hulltest.Options{Config: `version = 3
disabled_plugins = ["io.containerd.grpc.v1.leases"]
`})
	if out := d.Ctr(t, nil, "plugins", "ls"); strings.Contains(out, "grpc.v1    leases") || strings.Contains(out, "io.containerd.grpc.v1     leases") {
		t.Fatalf("disabled plugin listed:\n%s", out)
	}
	if out, err := d.CtrErr(nil, "leases", "ls"); err == nil || !strings.Contains(out, "Unimplemented") && !strings.Contains(out, "unknown service") {
		t.Fatalf("leases service still served: err=%v %s", err, out)
	}
	// A required plugin that is disabled stops the daemon with a clear error.
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(cfg, []byte(`version = 3
disabled_plugins = ["io.containerd.grpc.v1.leases"]
required_plugins = ["io.containerd.grpc.v1.leases"]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(hulltest.Binary(t), "--root", filepath.Join(dir, "r"), "--state", filepath.Join(dir, "s"), "--address", filepath.Join(dir, "s", "h.sock"), "--config", cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "io.containerd.grpc.v1.leases") {
		t.Fatalf("hulld with a disabled required plugin: err=%v\n%s", err, out)
	}
}

func TestDaemonDebugAndTCPListeners(t *testing.T) {
	dir := t.TempDir()
	dbg := filepath.Join(dir, "debug.sock")
	d := hulltest.Start(t, hulltest.Options{Config: `version = 3
[debug]
  address = "` + dbg + `"
[grpc]
  tcp_address = "127.0.0.1:0"
[metrics]
  address = "127.0.0.1:0"
  grpc_histogram = true
`})
	// pprof answers on the debug socket.
	client := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return net.Dial("unix", dbg)
	}}}
	resp, err := client.Get("http://hulld/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), "goroutine profile") {
		t.Fatalf("pprof answer: %.300s", body)
	}
	// The API answers on TCP too.
	re := regexp.MustCompile(`hulld serving on tcp" address=(127\.0\.0\.1:\d+)`)
	var m []string
	hulltest.Eventually(t, 5*time.Second, "hulld to log its tcp address", func() error {
		if m = re.FindStringSubmatch(d.Log()); m == nil {
			return fmt.Errorf("not in the log yet")
		}
		return nil
	})
	conn, err := grpc.NewClient(m[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	v, err := versionapi.NewVersionClient(conn).Version(context.Background(), &emptypb.Empty{})
	if err != nil || v.Version == "" {
		t.Fatalf("version over tcp: %v %v", v, err)
	}
	// Prometheus metrics count that call.
	mm := regexp.MustCompile(`msg="metrics listening" address=(127\.0\.0\.1:\d+)`).FindStringSubmatch(d.Log())
	if mm == nil {
		t.Fatalf("no metrics address in the log:\n%s", d.Log())
	}
	resp, err = http.Get("http://" + mm[1] + "/v1/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), `hull_grpc_calls_total{code="OK",method="/containerd.services.version.v1.Version/Version"} 1`) ||
		!strings.Contains(string(body), "hull_grpc_call_seconds_bucket") {
		t.Fatalf("metrics lack the version call:\n%.2000s", body)
	}
}
