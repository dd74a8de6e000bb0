package main

import (
	"encoding/json"
	"strings"
	"testing"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	runcopts "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func anyOf(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// rowValue returns the value of the row named name.
func rowValue(rows [][]string, name string) (string, bool) {
	for _, r := range rows {
		if r[0] == name {
			return r[1], true
		}
	}
	return "", false
}

func TestMetricRows(t *testing.T) {
	v1 := &v1stats.Metrics{
		Pids:   &v1stats.PidsStat{Current: 3, Limit: 100},
		CPU:    &v1stats.CPUStat{Usage: &v1stats.CPUUsage{Total: 12345, PerCPU: []uint64{1, 2}}},
		Memory: &v1stats.MemoryStat{Cache: 7, Usage: &v1stats.MemoryEntry{Usage: 4096, Limit: 64 << 20}},
	}
	rows, js, err := metricRows(anyOf(t, v1))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"pids.current": "3", "pids.limit": "100", "cpuacct.usage": "12345", "cpuacct.usage_percpu": "[1 2]",
		"memory.usage_in_bytes": "4096", "memory.limit_in_bytes": "67108864", "memory.stat.cache": "7",
	} {
		if got, ok := rowValue(rows, name); !ok || got != want {
			t.Errorf("v1 %s = %q (listed %v), want %q", name, got, ok, want)
		}
	}
	if !json.Valid(js) || !strings.Contains(string(js), "67108864") {
		t.Errorf("v1 json %s", js)
	}

	v2 := &v2stats.Metrics{
		Pids:         &v2stats.PidsStat{Current: 2, Limit: 50},
		CPU:          &v2stats.CPUStat{UsageUsec: 999},
		Memory:       &v2stats.MemoryStat{Usage: 8192, UsageLimit: 1 << 30, Anon: 5},
		MemoryEvents: &v2stats.MemoryEvents{OomKill: 1},
	}
	rows, _, err = metricRows(anyOf(t, v2))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"pids.current": "2", "pids.max": "50", "cpu.stat.usage_usec": "999", "memory.current": "8192",
		"memory.max": "1073741824", "memory.stat.anon": "5", "memory.events.oom_kill": "1",
	} {
		if got, ok := rowValue(rows, name); !ok || got != want {
			t.Errorf("v2 %s = %q (listed %v), want %q", name, got, ok, want)
		}
	}

	if _, _, err := metricRows(nil); err == nil {
		t.Error("no statistics: no error")
	}
	other := anyOf(t, &runcopts.ProcessDetails{ExecID: "x"})
	if _, _, err := metricRows(other); err == nil || !strings.Contains(err.Error(), other.GetTypeUrl()) {
		t.Errorf("statistics of another type: %v", err)
	}
	if _, _, err := metricRows(&anypb.Any{TypeUrl: "example.test/unknown"}); err == nil || !strings.Contains(err.Error(), "example.test/unknown") {
		t.Errorf("statistics of an unknown type: %v", err)
	}
}

func TestExecIDOf(t *testing.T) {
	a, err := typeurl.MarshalAny(&runcopts.ProcessDetails{ExecID: "e1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := execIDOf(a); got != "e1" {
		t.Fatalf("execIDOf = %q", got)
	}
	if got := execIDOf(nil); got != "" {
		t.Fatalf("execIDOf(nil) = %q", got)
	}
}
