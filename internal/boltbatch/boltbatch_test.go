package boltbatch

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openBolt(t *testing.T) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "batch.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("b"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestBatcherConcurrent has many goroutines update at once, some of them
// failing after they wrote: every update that succeeded is there, none of
// a failed one is, and each caller gets its own error.
func TestBatcherConcurrent(t *testing.T) {
	db := openBolt(t)
	b := New(db)
	const n = 200
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.Update(func(tx *bolt.Tx) error {
				bk := tx.Bucket([]byte("b"))
				if err := bk.Put(fmt.Appendf(nil, "k%03d", i), []byte("v")); err != nil {
					return err
				}
				if i%7 == 3 {
					return fmt.Errorf("update %d fails", i)
				}
				return nil
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if i%7 == 3 {
			if err == nil || err.Error() != fmt.Sprintf("update %d fails", i) {
				t.Errorf("update %d: error %v; want its own", i, err)
			}
		} else if err != nil {
			t.Errorf("update %d: %v", i, err)
		}
	}
	db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte("b"))
		for i := range n {
			got := bk.Get(fmt.Appendf(nil, "k%03d", i)) != nil
			if want := i%7 != 3; got != want {
				t.Errorf("key of update %d there: %v; want %v", i, got, want)
			}
		}
		return nil
	})
}

// holdOpen starts an update that keeps its transaction open until the
// returned release is called, and returns once it is open: updates made
// meanwhile queue behind it. wg counts the update.
func holdOpen(b *Batcher, wg *sync.WaitGroup) (release func()) {
	entered, hold := make(chan struct{}), make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.Update(func(tx *bolt.Tx) error {
			close(entered)
			<-hold
			return nil
		})
	}()
	<-entered
	return func() { close(hold) }
}

// waitQueued waits until n updates are queued behind the open
// transaction.
func waitQueued(t *testing.T, b *Batcher, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		got := len(b.queue)
		b.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d updates queued, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestBatcherSharesCommits holds a transaction open while updates queue
// behind it, and checks that they then commit together.
func TestBatcherSharesCommits(t *testing.T) {
	db := openBolt(t)
	b := New(db)
	var wg sync.WaitGroup
	release := holdOpen(b, &wg)
	const queued = 10
	var runs sync.Map // the transaction each queued update ran in
	for i := range queued {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.Update(func(tx *bolt.Tx) error {
				runs.Store(i, tx.ID())
				return tx.Bucket([]byte("b")).Put(fmt.Appendf(nil, "q%d", i), []byte("v"))
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	waitQueued(t, b, queued)
	release()
	wg.Wait()
	ids := map[any]bool{}
	runs.Range(func(_, id any) bool { ids[id] = true; return true })
	if len(ids) != 1 {
		t.Errorf("the %d queued updates ran in %d transactions; want 1", queued, len(ids))
	}
}

// TestBatcherPanic checks that a panic in an update reaches its own
// caller, and that the updates batched with it still commit.
func TestBatcherPanic(t *testing.T) {
	db := openBolt(t)
	b := New(db)
	var wg sync.WaitGroup
	release := holdOpen(b, &wg)
	wg.Add(2)
	var recovered any
	go func() {
		defer wg.Done()
		defer func() { recovered = recover() }()
		b.Update(func(tx *bolt.Tx) error {
			tx.Bucket([]byte("b")).Put([]byte("panicker"), []byte("v"))
			panic("boom")
		})
	}()
	var err error
	go func() {
		defer wg.Done()
		err = b.Update(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("b")).Put([]byte("ok"), []byte("v"))
		})
	}()
	waitQueued(t, b, 2)
	release()
	wg.Wait()
	if recovered != "boom" {
		t.Errorf("recovered %v; want the update's own panic", recovered)
	}
	if err != nil {
		t.Errorf("update batched with a panicking one: %v", err)
	}
	db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte("b"))
		if bk.Get([]byte("panicker")) != nil {
			t.Error("the panicking update's write was committed")
		}
		if bk.Get([]byte("ok")) == nil {
			t.Error("the other update's write is missing")
		}
		return nil
	})
}

// TestBatcherPrefixRunsAgain checks what an update before a failing one
// sees: the same database on its second run, and its result once.
func TestBatcherPrefixRunsAgain(t *testing.T) {
	db := openBolt(t)
	b := New(db)
	var wg sync.WaitGroup
	release := holdOpen(b, &wg)
	var seen []string
	var mu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.Update(func(tx *bolt.Tx) error {
			v := tx.Bucket([]byte("b")).Get([]byte("x"))
			mu.Lock()
			seen = append(seen, string(v))
			mu.Unlock()
			return tx.Bucket([]byte("b")).Put([]byte("x"), append(v, 'a'))
		})
	}()
	waitQueued(t, b, 1) // first in the queue
	wg.Add(1)
	var failErr error
	go func() {
		defer wg.Done()
		failErr = b.Update(func(tx *bolt.Tx) error { return errors.New("no") })
	}()
	waitQueued(t, b, 2)
	release()
	wg.Wait()
	if failErr == nil || failErr.Error() != "no" {
		t.Errorf("failing update: %v", failErr)
	}
	db.View(func(tx *bolt.Tx) error {
		if v := string(tx.Bucket([]byte("b")).Get([]byte("x"))); v != "a" {
			t.Errorf("x = %q; want %q (one run committed)", v, "a")
		}
		return nil
	})
	if len(seen) != 2 {
		t.Errorf("the update before the failing one ran %d times; want 2", len(seen))
	}
	for _, s := range seen {
		if s != "" {
			t.Errorf("a run saw %q; every run must see the database as it was", s)
		}
	}
}
