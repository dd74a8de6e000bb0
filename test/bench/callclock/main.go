// Command callclock is a measuring stick for the benchmarks, not a part of
// hull: a transparent gRPC proxy that passes every call, unary or
// streaming, of any service between a client and one daemon, unchanged
// (the messages are forwarded as bytes, with the metadata), and records how
// long each call took as the daemon answered it. Put in front of hulld and
// of containerd alike, it shows where a client's time goes call by call,
// so that a benchmark can tell the calls that are the daemon's own work
// from those that wait on a shim or runc.
//
// Usage:
//
//	callclock LISTEN TARGET LOG [RECORD]
//
// It serves on the unix socket LISTEN, forwards to the unix socket TARGET,
// and appends a line to the file LOG as each call ends: its start in
// milliseconds since callclock started, its duration in milliseconds, its
// method and its error, if any. With RECORD, it also appends each call's
// answer to the file RECORD as a line of JSON (a recorded.Answer), for replayfloor
// to give the same answers again. It runs until killed.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/hullrt/hull/test/bench/internal/recorded"
)

// clock forwards calls to target and logs their times.
type clock struct {
	target *grpc.ClientConn
	start  time.Time
	mu     sync.Mutex
	log    io.Writer
	record *json.Encoder // nil unless answers are recorded
}

// forward is the handler of every method: it opens the same call on the
// target, copies messages both ways until both ends are done, and logs
// the call.
func (c *clock) forward(_ any, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	md, _ := metadata.FromIncomingContext(ss.Context())
	t0 := time.Now()
	cs, err := c.target.NewStream(metadata.NewOutgoingContext(ss.Context(), md),
		&grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	if err != nil {
		return err
	}
	go func() {
		for {
			var b []byte
			if err := ss.RecvMsg(&b); err != nil {
				cs.CloseSend()
				return
			}
			if err := cs.SendMsg(&b); err != nil {
				return
			}
		}
	}()
	var callErr error
	var responses [][]byte
	if h, err := cs.Header(); err == nil {
		ss.SendHeader(h)
	}
	for {
		var b []byte
		if err := cs.RecvMsg(&b); err != nil {
			if err != io.EOF {
				callErr = err
			}
			break
		}
		if c.record != nil {
			responses = append(responses, b)
		}
		if err := ss.SendMsg(&b); err != nil {
			callErr = err
			break
		}
	}
	ss.SetTrailer(cs.Trailer())
	c.mu.Lock()
	fmt.Fprintf(c.log, "%.3f %.3f %s %v\n", ms(t0.Sub(c.start)), ms(time.Since(t0)), method, callErr)
	var recErr error
	if c.record != nil {
		st := status.Convert(callErr)
		recErr = c.record.Encode(recorded.Answer{Method: method, Code: uint32(st.Code()), Message: st.Message(), Responses: responses})
	}
	c.mu.Unlock()
	if recErr != nil {
		fmt.Fprintln(os.Stderr, "callclock: recording:", recErr)
		os.Exit(1)
	}
	return callErr
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func main() {
	if len(os.Args) != 4 && len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: callclock LISTEN TARGET LOG [RECORD]")
		os.Exit(2)
	}
	listen, target, logFile := os.Args[1], os.Args[2], os.Args[3]
	log, err := os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var record *json.Encoder
	if len(os.Args) == 5 {
		f, err := os.OpenFile(os.Args[4], os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		record = json.NewEncoder(f)
	}
	cc, err := grpc.NewClient("unix://"+target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(recorded.Codec{})))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	c := &clock{target: cc, start: time.Now(), log: log, record: record}
	l, err := net.Listen("unix", listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s := grpc.NewServer(grpc.UnknownServiceHandler(c.forward), grpc.ForceServerCodec(recorded.Codec{}))
	if err := s.Serve(l); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
