// Command replayfloor is a measuring stick for the benchmarks, not a part
// of hull: a gRPC server on hulld's transport and settings that answers
// every call of any service with an answer callclock recorded from a
// daemon, without looking at the request. A client run against it pays
// for its own work, the transport and one round trip per call, and
// nothing of a daemon's: with the time of the shim's work that a daemon
// waits on added, that is the floor under any daemon for the same calls.
//
// Usage:
//
//	replayfloor SOCKET RECORD
//
// RECORD is callclock's record of one client run (one JSON answer a line).
// Each method's calls get the method's recorded answers in the order they
// were recorded, from the first again after the last, so that a client
// making the same calls run after run gets the same answers each time. A
// method that was not recorded is Unimplemented. An answer recorded as
// Canceled (a stream the client ended) sends its messages and then stays
// open until the client ends the call.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hullrt/hull/test/bench/internal/floor"
	"github.com/hullrt/hull/test/bench/internal/recorded"
)

// replayer answers calls from the recorded answers.
type replayer struct {
	mu      sync.Mutex
	answers map[string][]recorded.Answer
	next    map[string]int
}

// load reads the record at path.
func load(path string) (*replayer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := &replayer{answers: map[string][]recorded.Answer{}, next: map[string]int{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for line := 1; sc.Scan(); line++ {
		var a recorded.Answer
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, line, err)
		}
		if a.Method == "" {
			return nil, fmt.Errorf("%s line %d: no method", path, line)
		}
		r.answers[a.Method] = append(r.answers[a.Method], a)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(r.answers) == 0 {
		return nil, fmt.Errorf("%s: no answers", path)
	}
	return r, nil
}

// take returns the next answer to a call of method.
func (r *replayer) take(method string) (recorded.Answer, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	as := r.answers[method]
	if len(as) == 0 {
		return recorded.Answer{}, false
	}
	i := r.next[method]
	r.next[method] = (i + 1) % len(as)
	return as[i], true
}

// serve is the handler of every method.
func (r *replayer) serve(_ any, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	a, ok := r.take(method)
	if !ok {
		return status.Errorf(codes.Unimplemented, "replayfloor: %s was not recorded", method)
	}
	// The requests are read and dropped, as the client may send more
	// than one.
	go func() {
		for {
			var b []byte
			if ss.RecvMsg(&b) != nil {
				return
			}
		}
	}()
	for _, m := range a.Responses {
		if err := ss.SendMsg(&m); err != nil {
			return err
		}
	}
	if codes.Code(a.Code) == codes.Canceled {
		<-ss.Context().Done()
		return ss.Context().Err()
	}
	if a.Code == uint32(codes.OK) {
		return nil
	}
	return status.Error(codes.Code(a.Code), a.Message)
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: replayfloor SOCKET RECORD")
		os.Exit(2)
	}
	r, err := load(os.Args[2])
	if err == nil {
		err = floor.Serve(os.Args[1], func(*grpc.Server) {}, grpc.UnknownServiceHandler(r.serve), grpc.ForceServerCodec(recorded.Codec{}))
	}
	if err != nil && err != context.Canceled {
		fmt.Fprintln(os.Stderr, "replayfloor:", err)
		os.Exit(1)
	}
}
