// Package errgrpc maps between errdefs errors and gRPC status codes: the one
// place where hull decides which code an error travels with, in both
// directions, so that a NotFound in the core reaches a containerd client as
// codes.NotFound and comes back to hull's client library as errdefs.ErrNotFound.
package errgrpc

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var table = []struct {
	err  error
	code codes.Code
}{
	{errdefs.ErrInvalidArgument, codes.InvalidArgument},
	{errdefs.ErrNotFound, codes.NotFound},
	{errdefs.ErrAlreadyExists, codes.AlreadyExists},
	{errdefs.ErrFailedPrecondition, codes.FailedPrecondition},
	{errdefs.ErrConflict, codes.FailedPrecondition},
	{errdefs.ErrUnavailable, codes.Unavailable},
	{errdefs.ErrNotImplemented, codes.Unimplemented},
	{errdefs.ErrPermissionDenied, codes.PermissionDenied},
	{errdefs.ErrResourceExhausted, codes.ResourceExhausted},
	{errdefs.ErrAborted, codes.Aborted},
	{errdefs.ErrOutOfRange, codes.OutOfRange},
	{errdefs.ErrUnauthenticated, codes.Unauthenticated},
	{context.Canceled, codes.Canceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
}

// ToGRPC returns err as a gRPC status error with the code of the errdefs
// class it wraps (Unknown if none). The message is err's, whole: its class's
// words (": not found") included, as containerd sends them, because
// containerd 2.x's ctr and other clients print the message as it came and
// know nothing of the code. ToNative does not say the class twice.
func ToGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, e := range table {
		if errors.Is(err, e.err) {
			return status.Error(e.code, err.Error())
		}
	}
	return status.Error(codes.Unknown, err.Error())
}

// ToNative turns a gRPC status error back into an error that wraps the
// errdefs class of its code, keeping the server's message. The class is
// named after the message (": not found") unless the message already ends
// with it, as a bare errdefs sentinel's message or containerd's (which keeps
// the suffix on the wire) does: "not found: not found" helps nobody.
//
// Conflicts travel as FailedPrecondition, as in containerd; a
// FailedPrecondition whose message ends with the conflict's words comes
// back as both classes.
func ToNative(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := st.Message()
	if st.Code() == codes.FailedPrecondition && says(msg, errdefs.ErrConflict.Error()) {
		return &classified{msg: msg, class: []error{errdefs.ErrConflict, errdefs.ErrFailedPrecondition}}
	}
	for _, e := range table {
		if e.code == st.Code() && e.err != errdefs.ErrConflict {
			if msg == "" {
				return e.err
			}
			if says(msg, e.err.Error()) {
				return &classified{msg: msg, class: []error{e.err}}
			}
			return fmt.Errorf("%s: %w", msg, e.err)
		}
	}
	return errors.New(msg)
}

// says reports whether msg already ends with what the class says.
func says(msg, class string) bool {
	return msg == class || strings.HasSuffix(msg, ": "+class)
}

// classified is a message that already says its class.
type classified struct {
	msg   string
	class []error
}

func (e *classified) Error() string   { return e.msg }
func (e *classified) Unwrap() []error { return e.class }
