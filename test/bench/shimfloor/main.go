// Command shimfloor is the floor under a shim's resident memory: a program
// that links only what any shim serving containerd's task API with runc
// containers must, and does nothing else. It serves the generated task
// service over ttrpc on the unix socket named by its argument, and reads
// the cgroup of the pid given as its second argument the way a shim does
// for Stats and OOM events, with containerd's cgroups library: cgroup1 or
// cgroup2 by the host's mode, the metrics marshalled into an Any.
//
// BenchmarkCRIPods30 starts one beside the pods and reports its RSS against
// a containerd shim's: what is left above it is the shim's own.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
)

// service answers Connect, which the benchmark calls to know the program
// serves; the rest of the task API is linked through the registration and
// never called.
type service struct {
	taskv2.TTRPCTaskService
}

func (s *service) Connect(ctx context.Context, r *taskv2.ConnectRequest) (*taskv2.ConnectResponse, error) {
	return &taskv2.ConnectResponse{ShimPid: uint32(os.Getpid())}, nil
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: shimfloor SOCKET PID")
		os.Exit(2)
	}
	pid, err := strconv.Atoi(os.Args[2])
	if err != nil {
		fail(err)
	}
	if err := readCgroup(pid); err != nil {
		fail(err)
	}
	l, err := net.Listen("unix", os.Args[1])
	if err != nil {
		fail(err)
	}
	s, err := ttrpc.NewServer()
	if err != nil {
		fail(err)
	}
	taskv2.RegisterTTRPCTaskService(s, &service{})
	// The socket accepts from here on: the benchmark waits for this line.
	fmt.Println("serving")
	if err := s.Serve(context.Background(), l); err != nil {
		fail(err)
	}
}

// readCgroup loads pid's cgroup, marshals its metrics into an Any as a
// Stats answer and starts watching it for OOM kills, as a shim does for
// its container.
func readCgroup(pid int) error {
	if cgroups.Mode() == cgroups.Unified {
		group, err := cgroup2.PidGroupPath(pid)
		if err != nil {
			return err
		}
		m, err := cgroup2.Load(group)
		if err != nil {
			return err
		}
		st, err := m.Stat()
		if err != nil {
			return err
		}
		events, errs := m.EventChan()
		go func() {
			for {
				select {
				case <-events:
				case <-errs:
					return
				}
			}
		}()
		_, err = typeurl.MarshalAny(st)
		return err
	}
	cg, err := cgroup1.Load(cgroup1.PidPath(pid))
	if err != nil {
		return err
	}
	st, err := cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return err
	}
	if fd, err := cg.OOMEventFD(); err == nil {
		f := os.NewFile(fd, "oom-eventfd")
		go func() {
			buf := make([]byte, 8)
			for {
				if _, err := f.Read(buf); err != nil {
					return
				}
			}
		}()
	}
	_, err = typeurl.MarshalAny(st)
	return err
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "shimfloor:", err)
	os.Exit(1)
}
