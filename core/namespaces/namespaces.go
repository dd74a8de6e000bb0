// Package namespaces carries the namespace of a request in its context and
// checks namespace names.
//
// Every object hull stores lives in a namespace. The namespace travels from the
// client to the core in the context: the gRPC adapters read it from the
// "containerd-namespace" metadata header (exactly as containerd clients send
// it) and put it in the context with WithNamespace; the core reads it back with
// NamespaceRequired.
package namespaces

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
)

const (
	// GRPCHeader is the gRPC metadata key containerd clients use for the namespace.
	GRPCHeader = "containerd-namespace"
	// TTRPCHeader is the ttrpc metadata key containerd clients use for the namespace.
	TTRPCHeader = "containerd-namespace-ttrpc"
	// Default is the namespace clients use when none is given.
	Default = "default"
	// maxLength is containerd's limit on a namespace name.
	maxLength = 76
)

type key struct{}

// WithNamespace returns a context that carries namespace ns.
func WithNamespace(ctx context.Context, ns string) context.Context {
	return context.WithValue(ctx, key{}, ns)
}

// Namespace returns the namespace carried by ctx, if any.
func Namespace(ctx context.Context) (string, bool) {
	ns, ok := ctx.Value(key{}).(string)
	return ns, ok && ns != ""
}

// NamespaceRequired returns the namespace carried by ctx, checked with Validate.
// A missing namespace is a FailedPrecondition error, as in containerd.
func NamespaceRequired(ctx context.Context) (string, error) {
	ns, ok := Namespace(ctx)
	if !ok {
		return "", fmt.Errorf("namespace is required: set the %q request header: %w", GRPCHeader, errdefs.ErrFailedPrecondition)
	}
	if err := Validate(ns); err != nil {
		return "", err
	}
	return ns, nil
}

// Validate reports whether name is a valid namespace name: letters, digits,
// '.', '_' and '-', starting with a letter or digit, at most 76 characters.
// The error is InvalidArgument and names the value.
func Validate(name string) error {
	if name == "" {
		return fmt.Errorf("namespace name must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	if len(name) > maxLength {
		return fmt.Errorf("namespace name %q is %d characters long, the limit is %d: %w", name, len(name), maxLength, errdefs.ErrInvalidArgument)
	}
	if !validName(name) {
		return fmt.Errorf("namespace name %q is invalid: use letters, digits, '.', '_' and '-', starting and ending with a letter or digit: %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Store keeps the namespaces themselves. A namespace also comes into being
// when the first object is created in it, as in containerd.
type Store interface {
	Create(ctx context.Context, name string, labels map[string]string) error
	// Labels returns the labels of name; NotFound if it does not exist.
	Labels(ctx context.Context, name string) (map[string]string, error)
	// SetLabel sets (or, with an empty value, removes) one label of an
	// existing namespace; NotFound if it does not exist. (The namespaces
	// API's Update creates a missing one first, as containerd 2.x does.)
	SetLabel(ctx context.Context, name, key, value string) error
	List(ctx context.Context) ([]string, error)
	// Delete removes a namespace with its leases and ingests, as
	// containerd 2.x does; while it holds images, blobs, containers or
	// snapshots it is FailedPrecondition naming them, and a missing one
	// is NotFound.
	Delete(ctx context.Context, name string) error
}

// validName checks containerd's label grammar: components of letters and
// digits joined by single '.', '_' or '-', starting and ending with a letter
// or digit. Every request checks its namespace, so this is a plain loop
// rather than a regexp.
func validName(name string) bool {
	prevSep := true // the first character must not be a separator
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			prevSep = false
		case c == '.' || c == '_' || c == '-':
			if prevSep {
				return false
			}
			prevSep = true
		default:
			return false
		}
	}
	return !prevSep
}
