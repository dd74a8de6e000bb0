// Package reference parses image references: host[:port]/path[:tag][@digest].
//
// The grammar and the normalisation are those of
// github.com/distribution/reference, the package Docker, containerd's CRI
// plugin and the kubelet use, so a name means the same image under hull as
// under them. This package keeps hull's small value type and the two ways
// the code base reads names:
//
// Parse accepts only fully qualified references in canonical form, which is
// what the core and the wire API deal in. ParseNormalized is for people
// typing names at a command line: it expands Docker Hub short names
// (busybox, user/app) and adds ":latest" the way docker does.
package reference

import (
	// go-digest only knows the algorithms whose hash is linked in; without
	// these, sha256 and sha512 digests would fail to validate.
	_ "crypto/sha256"
	_ "crypto/sha512"
	"errors"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	distref "github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

const (
	// DefaultHost is the registry short names resolve to.
	DefaultHost = "docker.io"
	// DefaultTag is added by ParseNormalized when neither tag nor digest
	// is given.
	DefaultTag = "latest"
)

// Reference is a parsed, fully qualified image reference.
type Reference struct {
	// Host is the registry, host[:port] (e.g. "docker.io", "localhost:5000").
	Host string
	// Path is the repository inside the registry (e.g. "library/busybox").
	Path string
	// Tag is empty when the reference has none.
	Tag string
	// Digest is empty when the reference has none.
	Digest digest.Digest
}

// Name returns host/path, the repository without tag or digest.
func (r Reference) Name() string { return r.Host + "/" + r.Path }

// Repository returns the path of the repository inside its registry, which
// is what the distribution API's URLs use.
func (r Reference) Repository() string { return r.Path }

// String returns the canonical form host/path[:tag][@digest].
func (r Reference) String() string {
	var b strings.Builder
	b.Grow(len(r.Host) + 1 + len(r.Path) + 1 + len(r.Tag) + 1 + len(r.Digest))
	b.WriteString(r.Host)
	b.WriteByte('/')
	b.WriteString(r.Path)
	if r.Tag != "" {
		b.WriteByte(':')
		b.WriteString(r.Tag)
	}
	if r.Digest != "" {
		b.WriteByte('@')
		b.WriteString(string(r.Digest))
	}
	return b.String()
}

// Parse parses a fully qualified reference in canonical form,
// host[:port]/path[:tag][@digest]: one that normalisation would leave as
// it is, so "busybox" and "docker.io/busybox" are refused (their canonical
// form is docker.io/library/busybox) while "localhost:5000/x" is taken.
// Errors are InvalidArgument and name the input and what is wrong with it.
func Parse(s string) (Reference, error) {
	named, err := distref.ParseNamed(s)
	if err != nil {
		if errors.Is(err, distref.ErrNameNotCanonical) {
			if full, ferr := distref.ParseNormalizedNamed(s); ferr == nil {
				return Reference{}, invalid(s, fmt.Errorf("not fully qualified: the full form is %s", full))
			}
		}
		return Reference{}, invalid(s, err)
	}
	if distref.Domain(named) == "" {
		// The library takes a first component that cannot be a host
		// ("0_0.0" has an '_') as part of a path with no host at all.
		return Reference{}, invalid(s, fmt.Errorf("not fully qualified: %q is no registry host", strings.SplitN(s, "/", 2)[0]))
	}
	return fromNamed(named), nil
}

// ParseNormalized parses s as docker would: a reference without a registry
// host is on Docker Hub (docker.io), a one-component Docker Hub name is in
// "library/", and a reference with neither tag nor digest gets ":latest".
// changed reports whether the canonical form differs from s, so a command
// line tool can tell the user which reference it actually used.
func ParseNormalized(s string) (ref Reference, changed bool, err error) {
	named, err := distref.ParseNormalizedNamed(s)
	if err != nil {
		return Reference{}, false, invalid(s, err)
	}
	if distref.Domain(named) == "" {
		return Reference{}, false, invalid(s, fmt.Errorf("%q looks like a registry host and is not one", strings.SplitN(s, "/", 2)[0]))
	}
	ref = fromNamed(distref.TagNameOnly(named))
	return ref, ref.String() != s, nil
}

// fromNamed copies a parsed reference into the value type.
func fromNamed(n distref.Named) Reference {
	r := Reference{Host: distref.Domain(n), Path: distref.Path(n)}
	if t, ok := n.(distref.Tagged); ok {
		r.Tag = t.Tag()
	}
	if d, ok := n.(distref.Digested); ok {
		r.Digest = d.Digest()
	}
	return r
}

// invalid names the input; the library's errors say what is wrong but not
// always with which value.
func invalid(s string, why error) error {
	switch {
	case s == "":
		return fmt.Errorf("invalid reference %q: must not be empty: %w", s, errdefs.ErrInvalidArgument)
	case errors.Is(why, distref.ErrReferenceInvalidFormat):
		// The library does not say which part is wrong: recall the
		// grammar.
		return fmt.Errorf("invalid reference %q: %w (want [host[:port]/]path[:tag][@algorithm:hex]; path components of lowercase letters and digits joined by '.', '_', '__' or '-'; tags of up to 128 letters, digits, '_', '.' and '-'): %w",
			s, why, errdefs.ErrInvalidArgument)
	}
	return fmt.Errorf("invalid reference %q: %w: %w", s, why, errdefs.ErrInvalidArgument)
}
