package errgrpc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestToNativeSaysTheClassOnce(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    error
		class error
		want  string
	}{
		// A message without the class's words (a server that leaves them
		// out) gets them once.
		{"bare message", status.Error(codes.NotFound, `image "x"`), errdefs.ErrNotFound, `image "x": not found`},
		{"hull message", ToGRPC(fmt.Errorf("image %q: %w", "x", errdefs.ErrNotFound)), errdefs.ErrNotFound, `image "x": not found`},
		// A bare sentinel travels as its own words, and containerd keeps
		// them at the end of every message.
		{"bare sentinel", ToGRPC(errdefs.ErrNotFound), errdefs.ErrNotFound, "not found"},
		{"containerd message", status.Error(codes.NotFound, "content digest sha256:abc: not found"), errdefs.ErrNotFound, "content digest sha256:abc: not found"},
		{"already exists", status.Error(codes.AlreadyExists, `image "x": already exists`), errdefs.ErrAlreadyExists, `image "x": already exists`},
		{"canceled", ToGRPC(context.Canceled), context.Canceled, "context canceled"},
		{"empty message", status.Error(codes.NotFound, ""), errdefs.ErrNotFound, "not found"},
		// Words that merely end like a class are not the class.
		{"lookalike", status.Error(codes.NotFound, "x is notnot found"), errdefs.ErrNotFound, "x is notnot found: not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ToNative(tc.in)
			if !errors.Is(got, tc.class) {
				t.Errorf("%v is not %v", got, tc.class)
			}
			if got.Error() != tc.want {
				t.Errorf("message %q, want %q", got.Error(), tc.want)
			}
		})
	}
}

func TestRoundTripKeepsMessageAndClass(t *testing.T) {
	for _, e := range table {
		err := fmt.Errorf("lease %q: %w", "l1", e.err)
		back := ToNative(ToGRPC(err))
		class := e.err
		if !errors.Is(back, class) {
			t.Errorf("%v came back as %v, not %v", err, back, class)
		}
		if class == errdefs.ErrConflict && !errors.Is(back, errdefs.ErrFailedPrecondition) {
			// Conflict travels as FailedPrecondition, as in containerd.
			t.Errorf("%v came back as %v, not also a failed precondition", err, back)
		}
		if want := `lease "l1": ` + class.Error(); back.Error() != want {
			t.Errorf("%v came back as %q, want %q", err, back.Error(), want)
		}
	}
}

// TestToGRPCKeepsTheClassWords checks the message on the wire: what
// containerd 2.x's ctr prints as it is must say the class, as containerd's
// does, and an error that wraps no class travels as Unknown with its words.
func TestToGRPCKeepsTheClassWords(t *testing.T) {
	for _, tc := range []struct {
		in   error
		code codes.Code
		msg  string
	}{
		{fmt.Errorf("container %q in namespace %q: %w", "nosuch", "default", errdefs.ErrNotFound), codes.NotFound, `container "nosuch" in namespace "default": not found`},
		{fmt.Errorf("lease %q: %w", "l", errdefs.ErrAlreadyExists), codes.AlreadyExists, `lease "l": already exists`},
		{fmt.Errorf("namespace %q must be empty, but it still has images: %w", "n", errdefs.ErrFailedPrecondition), codes.FailedPrecondition, `namespace "n" must be empty, but it still has images: failed precondition`},
		{fmt.Errorf("wrapped twice: %w", fmt.Errorf("ref %q: %w", "r", errdefs.ErrUnavailable)), codes.Unavailable, `wrapped twice: ref "r": unavailable`},
		{errors.New("plain"), codes.Unknown, "plain"},
		{status.Error(codes.Aborted, "already a status"), codes.Aborted, "already a status"},
	} {
		st, _ := status.FromError(ToGRPC(tc.in))
		if st.Code() != tc.code || st.Message() != tc.msg {
			t.Errorf("%v travels as %s %q, want %s %q", tc.in, st.Code(), st.Message(), tc.code, tc.msg)
		}
	}
	if ToGRPC(nil) != nil {
		t.Error("ToGRPC(nil) is not nil")
	}
}

// FuzzRoundTrip checks that whatever the message, a class survives the
// trip to gRPC and back and is named at most once at the end.
func FuzzRoundTrip(f *testing.F) {
	f.Add("image x", 1)
	f.Add("not found", 1)
	f.Add("", 0)
	f.Add("a: not found: not found", 1)
	f.Fuzz(func(t *testing.T, msg string, i int) {
		if i < 0 {
			i = -i
		}
		e := table[i%len(table)]
		if e.err == errdefs.ErrConflict {
			return
		}
		back := ToNative(status.Error(e.code, msg))
		if !errors.Is(back, e.err) {
			t.Fatalf("%q with code %s came back as %v, not %v", msg, e.code, back, e.err)
		}
		if !strings.HasSuffix(back.Error(), e.err.Error()) {
			t.Fatalf("%q came back as %q, which does not end with %q", msg, back.Error(), e.err.Error())
		}
		if says(msg, e.err.Error()) && back.Error() != msg {
			t.Fatalf("%q already says %q but came back as %q", msg, e.err.Error(), back.Error())
		}
		// Further trips may drop a repetition the server sent, but then
		// the message is stable.
		again := ToNative(ToGRPC(back))
		if !errors.Is(again, e.err) {
			t.Fatalf("a second trip turned %q into %v, not %v", back, again, e.err)
		}
		if third := ToNative(ToGRPC(again)); third.Error() != again.Error() {
			t.Fatalf("a third trip changed %q to %q", again.Error(), third.Error())
		}
	})
}
