package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReplayCyclesEachMethodsAnswers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "record")
	record := `{"method":"/a/X","code":0,"responses":["AQ=="]}
{"method":"/a/Y","code":5,"message":"nope","responses":[]}
{"method":"/a/X","code":0,"responses":["Ag==","Aw=="]}
`
	if err := os.WriteFile(path, []byte(record), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := load(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for range 3 {
		a, ok := r.take("/a/X")
		if !ok {
			t.Fatal("no answer for /a/X")
		}
		got = append(got, len(a.Responses))
	}
	if got[0] != 1 || got[1] != 2 || got[2] != 1 {
		t.Errorf("answers of /a/X had %v messages, want 1, 2, then 1 again", got)
	}
	if a, _ := r.take("/a/Y"); a.Code != 5 || a.Message != "nope" {
		t.Errorf("/a/Y answered %d %q, want 5 \"nope\"", a.Code, a.Message)
	}
	if _, ok := r.take("/a/Z"); ok {
		t.Error("an answer for /a/Z, which was not recorded")
	}
}

func TestReplayRefusesBadRecords(t *testing.T) {
	for name, record := range map[string]string{
		"empty":     "",
		"not json":  "{\n",
		"no method": `{"code":0}` + "\n",
	} {
		path := filepath.Join(t.TempDir(), "record")
		if err := os.WriteFile(path, []byte(record), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := load(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: load gave %v, want an error naming %s", name, err, path)
		}
	}
}
