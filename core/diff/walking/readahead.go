package walking

import (
	"io"
	"sync"
)

// readAhead reads src in its own goroutine, a few chunks ahead of the
// consumer, so that decompressing and hashing a layer (the producer) runs on
// one core while writing its files (the consumer) runs on another, as
// `gzip -dc | tar -x` does. Memory is bounded by chunks*chunkSize.
type readAhead struct {
	filled chan []byte // chunks with data, in order
	free   chan []byte // chunks to reuse
	stop   chan struct{}
	cur    []byte // unread part of the chunk being read
	buf    []byte // the chunk cur belongs to, returned to free when read
	err    error  // the producer's final error, set before filled closes
	once   sync.Once
	done   chan struct{}
}

const (
	readAheadChunk  = 256 << 10
	readAheadChunks = 4
)

func newReadAhead(src io.Reader) *readAhead {
	r := &readAhead{
		filled: make(chan []byte, readAheadChunks), free: make(chan []byte, readAheadChunks+1),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	for i := 0; i < readAheadChunks+1; i++ {
		r.free <- make([]byte, readAheadChunk)
	}
	go r.produce(src)
	return r
}

func (r *readAhead) produce(src io.Reader) {
	defer close(r.done)
	defer close(r.filled)
	for {
		var buf []byte
		select {
		case buf = <-r.free:
		case <-r.stop:
			return
		}
		n, err := io.ReadFull(src, buf)
		if n > 0 {
			select {
			case r.filled <- buf[:n]:
			case <-r.stop:
				return
			}
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
// source after Apply returns.
func (r *readAhead) Close() error {
	r.once.Do(func() { close(r.stop) })
	<-r.done
	return nil
}
