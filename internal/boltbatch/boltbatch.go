// Package boltbatch runs concurrent read-write transactions of a bbolt
// database as one (group commit), for the stores that keep their records
// in bbolt: the metadata store and the snapshotters' record stores.
package boltbatch

import (
	"errors"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// maxBatch bounds how many updates share one transaction, so that the
// caller leading a batch is not held up by an unbounded queue behind it.
const maxBatch = 64

// Batcher runs concurrent read-write transactions of the database as one
// (group commit). bbolt lets one writer in at a time and every commit
// writes the pages from each changed bucket up to the root, then syncs
// twice; updates that arrive while a commit is under way share the next
// one instead of each paying for their own.
//
// A lone update runs at once in its own transaction: nothing waits to
// gather a batch. The caller that finds no transaction running leads: it
// runs the queued updates in order in one transaction and, when more
// arrived meanwhile, hands the lead to the first of them.
//
// When an update of a batch fails, the transaction is rolled back, the
// updates before it are run again and committed, the failed one runs
// alone and the rest follow as a batch of their own: each update's result
// is then the one it would have had alone, in queue order. The updates
// before it see the same database as the first time, so an update that
// depends only on the database and its own arguments does the same again;
// its callers must not keep effects of an earlier run: an update sets its
// outputs afresh on each run, and what it does outside the database must
// be safe to do again.
type Batcher struct {
	db *bolt.DB

	mu      sync.Mutex
	running bool
	queue   []*batchCall
}

// batchCall is one queued update.
type batchCall struct {
	fn   func(*bolt.Tx) error
	err  error
	done chan struct{} // closed once err is final
	lead chan struct{} // closed when this call is to lead the next batch

	panicked bool
	panicVal any
}

// errPanicked stands for an update that panicked, within the batch.
var errPanicked = errors.New("bbolt update panicked")

// New returns a Batcher of db's updates.
func New(db *bolt.DB) *Batcher { return &Batcher{db: db} }

// Update runs fn in a read-write transaction, possibly shared with other
// updates, and returns fn's error or the commit's. A panic of fn comes
// back in the caller's goroutine.
func (b *Batcher) Update(fn func(*bolt.Tx) error) error {
	c := &batchCall{fn: fn, done: make(chan struct{}), lead: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, c)
	if b.running {
		b.mu.Unlock()
		select {
		case <-c.done:
			return c.result()
		case <-c.lead:
		}
	} else {
		b.running = true
		b.mu.Unlock()
	}
	for {
		b.mu.Lock()
		n := min(len(b.queue), maxBatch)
		calls := b.queue[:n:n]
		b.queue = b.queue[n:]
		if len(b.queue) == 0 {
			b.queue = nil // not to keep the finished calls reachable
		}
		b.mu.Unlock()
		b.run(calls)
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.running = false
			b.mu.Unlock()
			break
		}
		if !isDone(c) {
			// This caller is still queued (the first batch was
			// full): it keeps the lead.
			b.mu.Unlock()
			continue
		}
		close(b.queue[0].lead)
		b.mu.Unlock()
		break
	}
	return c.result()
}

func isDone(c *batchCall) bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// run runs calls in one transaction and gives each its result; see
// Batcher for what happens when one fails.
func (b *Batcher) run(calls []*batchCall) {
	if len(calls) == 0 {
		return
	}
	failed := -1
	err := b.db.Update(func(tx *bolt.Tx) error {
		for i, c := range calls {
			if err := c.call(tx); err != nil {
				failed = i
				return err
			}
		}
		return nil
	})
	if failed < 0 || len(calls) == 1 {
		// All committed, or the commit failed for all; or a lone
		// update's own result.
		for _, c := range calls {
			c.finish(err)
		}
		return
	}
	b.run(calls[:failed])
	f := calls[failed]
	if f.panicked {
		f.finish(errPanicked)
	} else {
		b.run(calls[failed : failed+1])
	}
	b.run(calls[failed+1:])
}

// call runs the update's function, turning a panic into an error for the
// batch; result raises it again for the caller.
func (c *batchCall) call(tx *bolt.Tx) (err error) {
	defer func() {
		if v := recover(); v != nil {
			c.panicked, c.panicVal = true, v
			err = errPanicked
		}
	}()
	c.panicked, c.panicVal = false, nil
	return c.fn(tx)
}

func (c *batchCall) finish(err error) {
	c.err = err
	close(c.done)
}

func (c *batchCall) result() error {
	if c.panicked {
		panic(c.panicVal)
	}
	return c.err
}
