package client

import (
	"errors"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A daemon that dies between the dial and gRPC's preface leaves no dial
// error: the wait is told in gRPC's words, without its wrapping.
func TestReasonUnwrapsGRPCsAccount(t *testing.T) {
	r := &reach{address: "/x.sock"}
	reset := status.Error(codes.Unavailable, `connection error: desc = "error reading server preface: connection reset by peer"`)
	if got := r.reason(reset).Error(); got != "error reading server preface: connection reset by peer" {
		t.Fatalf("reason = %q", got)
	}
	other := status.Error(codes.Unavailable, "the daemon is shutting down")
	if got := r.reason(other); got != other {
		t.Fatalf("an Unavailable that is not a connection error changed: %v", got)
	}
	r.lastDial = syscall.ECONNREFUSED
	if got := r.reason(reset); !errors.Is(got, syscall.ECONNREFUSED) {
		t.Fatalf("the dial error did not win: %v", got)
	}
}
