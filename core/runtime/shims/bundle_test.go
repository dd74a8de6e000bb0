package shims

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Removing a bundle leaves its namespace's directory, so that a bundle
// being made in it at the same moment is made (TestTaskStress failed with
// "mkdir .../s077: no such file or directory" when removal deleted the
// directory it had just emptied).
func TestBundleRemoveRacesCreate(t *testing.T) {
	state, root := t.TempDir(), t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for i := 0; i < 400; i++ {
		wg.Add(1)
		b := bundlePaths(state, root, "ns", fmt.Sprintf("c%d", i))
		go func() {
			defer wg.Done()
			if err := b.create([]byte(`{}`)); err != nil {
				errs <- err
				return
			}
			if err := b.remove(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(state, "ns")); err != nil {
		t.Errorf("the namespace's directory went with its last bundle: %v", err)
	}
	if err := mkdirIn(filepath.Join(state, "ns", "x"), true); err != nil {
		t.Fatal(err)
	}
	if err := mkdirIn(filepath.Join(state, "ns", "x"), true); !errors.Is(err, os.ErrExist) {
		t.Fatalf("a second exclusive mkdir: %v, want ErrExist", err)
	}
}
