package walking

import (
	"io"
	"sync"
)

// readAhead reads src in its own goroutine, a few chunks ahead of the
// consumer, so that decompressing and hashing a layer (the producer) runs on
// one core while writing its files (the consumer) runs on another, as
// `gzip -dc | tar -x` does. Memory is bounded by chunks*chunkSize; chunks
// are taken from a pool only as the producer gets ahead, so a small layer
// uses one, and go back to it on Close.
type readAhead struct {
	pool      *chunkPool
	allocated int         // chunks taken from pool; the producer's alone
	filled    chan []byte // chunks with data, in order
	free      chan []byte // chunks to reuse
	stop      chan struct{}
	cur       []byte // unread part of the chunk being read
	buf       []byte // the chunk cur belongs to, returned to free when read
	err       error  // the producer's final error, set before filled closes
	once      sync.Once
	done      chan struct{}
}

const (
	readAheadChunk  = 256 << 10
	readAheadChunks = 4
)

// chunkPool holds read-ahead chunks between layers.
type chunkPool struct{ p sync.Pool }

func (c *chunkPool) get() []byte {
	if b, ok := c.p.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, readAheadChunk)
}

func (c *chunkPool) put(b []byte) {
	b = b[:cap(b)]
	c.p.Put(&b)
}

func newReadAhead(src io.Reader, pool *chunkPool) *readAhead {
	r := &readAhead{
		pool:   pool,
		filled: make(chan []byte, readAheadChunks), free: make(chan []byte, readAheadChunks+1),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	go r.produce(src)
	return r
}

// next returns a chunk to fill: a free one, a new one while fewer than the
// bound are out, else the next one the consumer frees; nil once stopped.
func (r *readAhead) next() []byte {
	select {
	case buf := <-r.free:
		return buf
	default:
	}
	if r.allocated < readAheadChunks+1 {
		r.allocated++
		return r.pool.get()
	}
	select {
	case buf := <-r.free:
		return buf
	case <-r.stop:
		return nil
	}
}

func (r *readAhead) produce(src io.Reader) {
	defer close(r.done)
	defer close(r.filled)
	for {
		buf := r.next()
		if buf == nil {
			return
		}
		n, err := io.ReadFull(src, buf)
		if n > 0 {
			select {
			case r.filled <- buf[:n]:
			case <-r.stop:
				r.free <- buf
				return
			}
		} else {
			r.free <- buf
		}
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		if err != nil {
			// Written before filled closes: the consumer reads it after
			// seeing the close.
			r.err = err
			return
		}
	}
}

func (r *readAhead) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.buf != nil {
			r.free <- r.buf[:cap(r.buf)]
			r.buf = nil
		}
		chunk, ok := <-r.filled
		if !ok {
			return 0, r.err
		}
		r.cur, r.buf = chunk, chunk
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// Close stops the producer and waits for it, so that nothing reads the
// source after Apply returns, and gives the chunks back to the pool.
func (r *readAhead) Close() error {
	r.once.Do(func() {
		close(r.stop)
		<-r.done
		if r.buf != nil {
			r.pool.put(r.buf)
			r.buf, r.cur = nil, nil
		}
		for buf := range r.filled {
			r.pool.put(buf)
		}
		for {
			select {
			case buf := <-r.free:
				r.pool.put(buf)
				continue
			default:
			}
			break
		}
	})
	return nil
}
