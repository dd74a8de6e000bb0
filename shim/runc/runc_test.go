package runc

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParsePs(t *testing.T) {
	pids, err := ParsePs([]byte("[12,34]\n"))
	if err != nil || len(pids) != 2 || pids[1] != 34 {
		t.Fatalf("%v %v", pids, err)
	}
	if pids, err := ParsePs([]byte("null")); err != nil || len(pids) != 0 {
		t.Fatalf("null: %v %v", pids, err)
	}
	if _, err := ParsePs([]byte("PID CMD")); err == nil {
		t.Fatal("table output accepted")
	}
}

func TestParseState(t *testing.T) {
	s, err := ParseState([]byte(`{"ociVersion":"1.0.2-dev","id":"c1","pid":42,"status":"running","bundle":"/b","rootfs":"/b/rootfs","created":"2024-01-02T03:04:05.000000006Z","owner":""}`))
	if err != nil || s.ID != "c1" || s.Pid != 42 || s.Status != "running" || s.Created.Nanosecond() != 6 {
		t.Fatalf("%+v %v", s, err)
	}
	if _, err := ParseState([]byte(`{}`)); err == nil {
		t.Fatal("state without id accepted")
	}
}

func TestLastError(t *testing.T) {
	log := `{"level":"info","msg":"starting","time":"t"}
not json at all
{"level":"error","msg":"first","time":"t"}
{"level":"error","msg":"runc create failed: unable to start container process: exec: \"nosuch\": executable file not found in $PATH","time":"t"}
{"level":"warning","msg":"later warning","time":"t"}
`
	if got := LastError([]byte(log)); got != `runc create failed: unable to start container process: exec: "nosuch": executable file not found in $PATH` {
		t.Fatalf("%q", got)
	}
	if got := LastError([]byte(`{"level":"info","msg":"x"}`)); got != "" {
		t.Fatalf("%q", got)
	}
}

func TestClassify(t *testing.T) {
	if err := classify(errors.New("runc kill failed: container not running")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("%v", err)
	}
	if err := classify(errors.New("runc create failed: container with id exists: already exists")); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("%v", err)
	}
	if err := classify(errors.New("other")); errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("%v", err)
	}
}

func FuzzParsePs(f *testing.F) {
	f.Add([]byte("[1,2,3]"))
	f.Add([]byte("null"))
	f.Fuzz(func(t *testing.T, data []byte) { ParsePs(data) })
}

func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"id":"c1","pid":1,"status":"created","created":"2024-01-02T03:04:05Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if s, err := ParseState(data); err == nil && s.ID == "" {
			t.Fatal("accepted without id")
		}
	})
}

func FuzzLastError(f *testing.F) {
	f.Add([]byte(`{"level":"error","msg":"x"}` + "\n" + `{"level":"info"}`))
	f.Fuzz(func(t *testing.T, data []byte) { LastError(data) })
}
