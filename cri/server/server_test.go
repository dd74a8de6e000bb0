package server

import (
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	criconfig "github.com/hullrt/hull/cri/config"
)

func TestLogPathStaysInTheLogDirectory(t *testing.T) {
	dir := "/var/log/pods/ns_pod_uid"
	for _, tc := range []struct {
		rel, want string
		bad       bool
	}{
		{"c/0.log", dir + "/c/0.log", false},
		{"", "", false},
		{"../x.log", "", true},
		{"c/../../x.log", "", true},
		{"/etc/passwd", "", true},
		{"..", "", true},
	} {
		got, err := logPath(dir, tc.rel)
		if tc.bad {
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.rel) {
				t.Errorf("logPath(%q) = %q, %v; want InvalidArgument naming it", tc.rel, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("logPath(%q) = %q, %v; want %q", tc.rel, got, err, tc.want)
		}
	}
	if _, err := logPath("", "c.log"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("a log path without a log directory: %v", err)
	}
}

func TestNamesAreReservedOnce(t *testing.T) {
	n := newNames()
	if err := n.reserve("pod_ns_uid_0", "a"); err != nil {
		t.Fatal(err)
	}
	if err := n.reserve("pod_ns_uid_0", "a"); err != nil {
		t.Fatalf("the holder again: %v", err)
	}
	err := n.reserve("pod_ns_uid_0", "b")
	if !errdefs.IsAlreadyExists(err) || !strings.Contains(err.Error(), `"a"`) {
		t.Fatalf("a second holder: %v; want AlreadyExists naming the first", err)
	}
	n.release("pod_ns_uid_0", "b") // not the holder: no effect
	if err := n.reserve("pod_ns_uid_0", "b"); err == nil {
		t.Fatal("released by a non-holder")
	}
	n.release("pod_ns_uid_0", "a")
	if err := n.reserve("pod_ns_uid_0", "b"); err != nil {
		t.Fatal(err)
	}
}

func TestIndexFindsByPrefix(t *testing.T) {
	x := newIndex[int]("container")
	x.add("abc123", 1)
	x.add("abd456", 2)
	if v, err := x.get("abc"); err != nil || v != 1 {
		t.Fatalf("unique prefix: %v %v", v, err)
	}
	if v, err := x.get("abd456"); err != nil || v != 2 {
		t.Fatalf("full id: %v %v", v, err)
	}
	if _, err := x.get("ab"); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "abc123") {
		t.Fatalf("ambiguous prefix: %v", err)
	}
	if _, err := x.get("zz"); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), `"zz"`) {
		t.Fatalf("unknown: %v", err)
	}
	if _, err := x.get(""); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("empty: %v", err)
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{
		"": syscall.SIGTERM, "SIGINT": syscall.SIGINT, "quit": syscall.SIGQUIT, "SIGRTMIN+3": syscall.SIGTERM,
		"9": syscall.SIGKILL, "SIGUSR1": syscall.SIGUSR1, "bogus": syscall.SIGTERM,
	} {
		if got := parseSignal(in); got != want {
			t.Errorf("parseSignal(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestCPURate(t *testing.T) {
	var c cpuSamples
	t0 := time.Unix(100, 0)
	if r := c.rate("a", t0, 1e9); r != 0 {
		t.Fatalf("first reading: %d", r)
	}
	if r := c.rate("a", t0.Add(2*time.Second), 2e9); r != 5e8 {
		t.Fatalf("half a core: %d", r)
	}
	if r := c.rate("a", t0.Add(3*time.Second), 1e9); r != 0 {
		t.Fatalf("a counter that went back (a new cgroup): %d", r)
	}
}

func TestContainerUserListsItsOwnGroupFirst(t *testing.T) {
	u := containerUser(&specs.Spec{Process: &specs.Process{User: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1234, 1000, 50000}}}})
	got := u.GetLinux().GetSupplementalGroups()
	if u.GetLinux().GetUid() != 1000 || len(got) != 3 || got[0] != 1000 || got[1] != 1234 || got[2] != 50000 {
		t.Fatalf("user: %v", u)
	}
}

func TestStatusSurvivesAsAFile(t *testing.T) {
	dir := t.TempDir()
	c := &container{dir: dir, rec: containerRecord{ID: "c"}}
	if err := c.update(func(st *containerStatus) { st.Pid, st.StartedAt = 42, 7 }); err != nil {
		t.Fatal(err)
	}
	st, err := readStatus(statusPath(dir))
	if err != nil || st.Pid != 42 || st.StartedAt != 7 {
		t.Fatalf("read back: %+v %v", st, err)
	}
	if c.state() != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("state %v", c.state())
	}
	// A status that cannot be written is not taken on.
	c.dir = filepath.Join(dir, "gone", "away")
	if err := c.update(func(st *containerStatus) { st.FinishedAt = 9 }); err == nil {
		t.Fatal("update into a missing directory succeeded")
	}
	if c.state() != runtime.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("an unrecorded exit was taken on: %v", c.state())
	}
}

func TestRecordExitOnce(t *testing.T) {
	s := &Service{hub: newEventHub()}
	c := &container{dir: t.TempDir(), rec: containerRecord{ID: "c"}, exited: make(chan struct{})}
	c.st.StartedAt = 1
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(code int32) {
			defer wg.Done()
			s.recordExit(c, code, time.Unix(10, 0), "Error", "")
		}(int32(i + 1))
	}
	wg.Wait()
	<-c.exited
	st := c.status()
	if st.FinishedAt == 0 || st.ExitCode == 0 || c.state() != runtime.ContainerState_CONTAINER_EXITED {
		t.Fatalf("status %+v", st)
	}
	onDisk, err := readStatus(statusPath(c.dir))
	if err != nil || onDisk != st {
		t.Fatalf("on disk %+v, in memory %+v (%v)", onDisk, st, err)
	}
}

func TestKeyedLocksSerialiseOneID(t *testing.T) {
	var k keyedLocks
	var mu sync.Mutex
	inside := map[string]int{}
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			unlock := k.lock(id)
			mu.Lock()
			inside[id]++
			if inside[id] > 1 {
				t.Errorf("two holders of %s", id)
			}
			mu.Unlock()
			mu.Lock()
			inside[id]--
			mu.Unlock()
			unlock()
		}([]string{"a", "b"}[i%2])
	}
	wg.Wait()
	if len(k.locks) != 0 {
		t.Fatalf("locks kept after use: %d", len(k.locks))
	}
}

func TestRuntimeOptions(t *testing.T) {
	o, err := runtimeOptions(criconfigHandler(map[string]any{"BinaryName": "/usr/sbin/runc", "Root": "/run/r", "SystemdCgroup": true}))
	if err != nil {
		t.Fatal(err)
	}
	if o == nil {
		t.Fatal("no options")
	}
	if _, err := runtimeOptions(criconfigHandler(map[string]any{"BinaryNmae": "x"})); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "BinaryNmae") {
		t.Fatalf("a misspelt option: %v", err)
	}
}

func criconfigHandler(opts map[string]any) criconfig.RuntimeHandler {
	return criconfig.RuntimeHandler{RuntimeType: "io.containerd.runc.v2", Options: opts}
}
