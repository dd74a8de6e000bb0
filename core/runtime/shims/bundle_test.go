package shims

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// A bundle made while another task's removal deletes the namespace's
// directory it empties is still made: mkdirIn makes the parent again when
// it vanished between its MkdirAll and the Mkdir (this failed TestTaskStress
// with "mkdir .../s077: no such file or directory").
func TestMkdirInSurvivesParentRemoval(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "ns")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				os.Remove(parent) // succeeds whenever it is empty
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	for i := 0; i < 2000; i++ {
		dir := filepath.Join(parent, "b")
		if err := mkdirIn(dir, true); err != nil {
			t.Fatalf("try %d: %v", i, err)
		}
		if err := mkdirIn(dir, true); !errors.Is(err, os.ErrExist) {
			t.Fatalf("try %d: a second exclusive mkdir: %v, want ErrExist", i, err)
		}
		if err := mkdirIn(dir, false); err != nil {
			t.Fatalf("try %d: a second non-exclusive mkdir: %v", i, err)
		}
		if err := os.Remove(dir); err != nil {
			t.Fatal(err)
		}
	}
}
