package task

import (
	"encoding/json"
	"runtime"
	"testing"
	"time"

	tasktypes "github.com/containerd/containerd/api/types/task"

	"github.com/hullrt/hull/shim/reaper"
	"github.com/hullrt/hull/shim/stdio"
)

func TestClampSpecOOMScoreAdj(t *testing.T) {
	spec := []byte(`{"ociVersion":"1.0.2","process":{"args":["sh"],"oomScoreAdj":-999,"rlimits":[{"type":"RLIMIT_NOFILE","hard":18446744073709551615,"soft":1024}]},"x":{"y":1}}`)
	out, old, changed, err := ClampSpecOOMScoreAdj(spec, 0)
	if err != nil || !changed || old != -999 {
		t.Fatalf("%v %v %v", old, changed, err)
	}
	var doc struct {
		Process struct {
			OOMScoreAdj int `json:"oomScoreAdj"`
			Rlimits     []struct {
				Hard uint64 `json:"hard"`
			} `json:"rlimits"`
		} `json:"process"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Process.OOMScoreAdj != 0 || doc.Process.Rlimits[0].Hard != 18446744073709551615 {
		t.Fatalf("%s", out)
	}
	for _, keep := range []string{`{"process":{"oomScoreAdj":5}}`, `{"process":{}}`, `{}`} {
		if _, _, changed, err := ClampSpecOOMScoreAdj([]byte(keep), 0); err != nil || changed {
			t.Errorf("%s: changed=%v err=%v", keep, changed, err)
		}
	}
	if _, _, _, err := ClampSpecOOMScoreAdj([]byte(`{`), 0); err == nil {
		t.Fatal("bad JSON accepted")
	}
}

func TestDefaultRuncRoot(t *testing.T) {
	if got := DefaultRuncRoot("/s/io.containerd.runtime.v2.task/ns1/c1", "ns1"); got != "/s/runc/ns1" {
		t.Fatal(got)
	}
}

// An exit reaped before runc create's pid file is read is held and
// delivered when the pid is registered.
func TestMonitorEarlyExit(t *testing.T) {
	m := NewMonitor()
	p := newProcess("", stdio.Config{}, nil, nil)
	end := m.begin()
	m.Exit(reaper.Exit{Pid: 42, Status: 3})
	m.register(42, p)
	end()
	if err := waitProc(p); err != nil {
		t.Fatal(err)
	}
	if st, _, ok := p.Exit(); !ok || st != 3 {
		t.Fatalf("status %d %v", st, ok)
	}
	// Outside a create, unknown exits are dropped, not held.
	m.Exit(reaper.Exit{Pid: 43, Status: 1})
	q := newProcess("x", stdio.Config{}, nil, nil)
	m.register(43, q)
	if _, _, ok := q.Exit(); ok {
		t.Fatal("a stale exit was delivered")
	}
	m.Exit(reaper.Exit{Pid: 43, Status: 9})
	if err := waitProc(q); err != nil {
		t.Fatal(err)
	}
	if q.Status() != tasktypes.Status_STOPPED {
		t.Fatal(q.Status())
	}
}

// The exit of a process whose start is in progress is reported only after
// the start.
func TestExitWaitsForStart(t *testing.T) {
	m := NewMonitor()
	published := make(chan string, 2)
	p := newProcess("", stdio.Config{}, nil, func(*Process) { published <- "exit" })
	done := p.beginStart()
	m.register(7, p)
	m.Exit(reaper.Exit{Pid: 7})
	// The exit is reaped but held by the start in progress: it must not
	// be recorded however long the start takes. Its recording goroutine
	// waits on the start's channel; yield until it is parked there (the
	// exit is not recorded meanwhile, whatever the scheduling).
	for i := 0; i < 100; i++ {
		runtime.Gosched()
		if _, _, ok := p.Exit(); ok {
			t.Fatal("the exit was recorded while the start was in progress")
		}
	}
	published <- "start"
	done()
	if err := waitProc(p); err != nil {
		t.Fatal(err)
	}
	if first, second := <-published, <-published; first != "start" || second != "exit" {
		t.Fatalf("published %s then %s, want start then exit", first, second)
	}
}

func waitProc(p *Process) error {
	select {
	case <-p.exited:
		return nil
	case <-time.After(5 * time.Second):
		return errTimeout
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string { return "timed out" }

var errTimeout = timeoutErr{}

func FuzzClampSpecOOMScoreAdj(f *testing.F) {
	f.Add([]byte(`{"process":{"oomScoreAdj":-999}}`), 0)
	f.Add([]byte(`{"process":{"oomScoreAdj":1e3}}`), -5)
	f.Fuzz(func(t *testing.T, spec []byte, min int) {
		out, old, changed, err := ClampSpecOOMScoreAdj(spec, min)
		if err != nil || !changed {
			return
		}
		if old >= min {
			t.Fatalf("changed %d with floor %d", old, min)
		}
		if _, old2, changed2, err := ClampSpecOOMScoreAdj(out, min); err != nil || changed2 || old2 != min {
			t.Fatalf("not idempotent: %d %v %v", old2, changed2, err)
		}
	})
}
