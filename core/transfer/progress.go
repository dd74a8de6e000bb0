package transfer

import (
	"sync"
	"time"
)

// progressInterval is how often a transfer's progress reaches its client
// at most: a display's refresh, not a log. It is containerd's (its
// transfer service reports its jobs every 300ms), which ctr's display is
// made for: ctr redraws its whole tree of jobs for every event it gets, so
// each event costs it in proportion to the image's blobs.
const progressInterval = 300 * time.Millisecond

// coalescer passes progress events on at most every interval, each job
// (event name) with only its latest state. A pull of many small layers
// goes through waiting, downloading, complete and extracted for each of
// them in a fraction of a second; a client that redraws its display for
// every event (ctr does) spent more on the events than on the pull. Only
// states in passing (waiting, downloading, uploading, complete) are
// replaced, as containerd reports a job once a round in its latest state:
// "already exists" is passed on even when another state follows
// ("extracted"), so that a client learns which blobs were not downloaded.
// Events without a name (a step of the whole transfer, such as resolving)
// are passed on at once, after what was pending, so the order of steps is
// kept. close passes on what is left: every job's last state arrives.
type coalescer struct {
	send     func(Progress)
	interval time.Duration

	// sendMu keeps the sends of one flush together and in order.
	sendMu sync.Mutex

	mu      sync.Mutex
	pending []Progress
	index   map[string]int // job name -> its place in pending
	timer   *time.Timer
	closed  bool
}

func newCoalescer(send func(Progress), interval time.Duration) *coalescer {
	return &coalescer{send: send, interval: interval, index: map[string]int{}}
}

// add queues p, or passes it on at once when it has no name.
func (c *coalescer) add(p Progress) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if p.Name == "" {
		c.mu.Unlock()
		c.flushThen(&p)
		return
	}
	// A job's new state replaces its pending one in passing and goes
	// last: events leave in the order of their latest states.
	if i, ok := c.index[p.Name]; ok && inPassing(c.pending[i].Event) {
		c.pending[i].Name, c.pending[i].Event = "", ""
	}
	c.index[p.Name] = len(c.pending)
	c.pending = append(c.pending, p)
	if c.timer == nil {
		c.timer = time.AfterFunc(c.interval, func() { c.flushThen(nil) })
	}
	c.mu.Unlock()
}

// The events of a blob that a later one may replace, in containerd's
// words: on its way to being stored, and stored ("complete") but maybe
// not yet extracted.
const (
	eventWaiting     = "waiting"
	eventDownloading = "downloading"
	eventUploading   = "uploading"
	eventComplete    = "complete"
)

// inPassing reports whether event is a state that a later state of the
// job may replace.
func inPassing(event string) bool {
	switch event {
	case eventWaiting, eventDownloading, eventUploading, eventComplete:
		return true
	}
	return false
}

// flushThen passes on what is pending, then then (if not nil).
func (c *coalescer) flushThen(then *Progress) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.mu.Lock()
	out := c.pending
	c.pending, c.index = nil, map[string]int{}
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.mu.Unlock()
	for _, p := range out {
		if p.Name != "" { // not replaced by a later state
			c.send(p)
		}
	}
	if then != nil {
		c.send(*then)
	}
}

// close passes on what is pending; later events are dropped.
func (c *coalescer) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.flushThen(nil)
}
