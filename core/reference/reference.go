// Package reference parses image references: host[:port]/path[:tag][@digest].
//
// Parse accepts only fully qualified references, which is what the core and
// the wire API deal in. ParseNormalized is for people typing names at a
// command line: it expands Docker Hub short names (busybox,
// user/app) the way docker and nerdctl do, so the same words pull the same
// image everywhere.
package reference

import (
	"sync"
	// go-digest only knows the algorithms whose hash is linked in; without
	// these, sha256 and sha512 digests would fail to validate.
	_ "crypto/sha256"
	_ "crypto/sha512"
	"fmt"
	"regexp"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

const (
	// DefaultHost is the registry short names resolve to.
	DefaultHost = "docker.io"
	// DefaultTag is added by ParseNormalized when neither tag nor digest
	// is given.
	DefaultTag = "latest"
	// legacyDefaultHost is Docker Hub's old name; docker rewrites it to
	// DefaultHost, so a reference written with it names the same image.
	legacyDefaultHost = "index.docker.io"
	// officialPrefix is the Docker Hub namespace of one-component names.
	officialPrefix = "library/"
	// maxNameLength is the limit docker/distribution puts on host/path.
	maxNameLength = 255
)

var (
	// hostRe is a DNS name or a bracketed IPv6 address, with an optional
	// port. Upper case is allowed: host names are case-insensitive and
	// docker accepts them.
	hostRe = lazyRegexp(`^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$`)
	// componentRe is one path component of the distribution spec.
	componentRe = lazyRegexp(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	// tagRe is the distribution spec's tag grammar.
	tagRe = lazyRegexp(`^\w[\w.-]{0,127}$`)
	// imageIDRe catches an image ID typed where a name was expected: it
	// would otherwise become docker.io/library/<hex>:latest.
	imageIDRe = lazyRegexp(`^[a-f0-9]{64}$`)
)

// lazyRegexp compiles expr on first use: every CLI invocation links this
// package, and most never parse a reference.
func lazyRegexp(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}

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

// Parse parses a fully qualified reference, host[:port]/path[:tag][@digest].
// The host must look like one (contain '.' or ':', or be "localhost") so
// that a short name is never mistaken for a registry. Errors are
// InvalidArgument and name the input and what is wrong with it.
func Parse(s string) (Reference, error) {
	if s == "" {
		return Reference{}, invalid(s, "reference must not be empty")
	}
	rest, tag, dgst, err := splitTagDigest(s, s)
	if err != nil {
		return Reference{}, err
	}
	slash := strings.IndexByte(rest, '/')
	if slash < 0 {
		return Reference{}, invalid(s, "not fully qualified: expected host/path (for example docker.io/library/busybox)")
	}
	host := rest[:slash]
	if !looksLikeHost(host) {
		return Reference{}, invalid(s, fmt.Sprintf("not fully qualified: %q is not a registry host (a host contains '.' or ':' or is localhost)", host))
	}
	return build(s, host, rest[slash+1:], tag, dgst)
}

// ParseNormalized parses s as docker would: a reference without a registry
// host is on Docker Hub (docker.io), a one-component Docker Hub name is in
// "library/", and a reference with neither tag nor digest gets ":latest".
// changed reports whether the canonical form differs from s, so a command
// line tool can tell the user which reference it actually used.
func ParseNormalized(s string) (ref Reference, changed bool, err error) {
	if s == "" {
		return Reference{}, false, invalid(s, "reference must not be empty")
	}
	if imageIDRe().MatchString(s) {
		return Reference{}, false, invalid(s, "this is an image ID (64 hex digits), not a reference; use a name such as busybox or docker.io/library/busybox")
	}
	rest, tag, dgst, err := splitTagDigest(s, s)
	if err != nil {
		return Reference{}, false, err
	}
	host, path := DefaultHost, rest
	if slash := strings.IndexByte(rest, '/'); slash >= 0 && looksLikeHost(rest[:slash]) {
		host, path = rest[:slash], rest[slash+1:]
	}
	if host == legacyDefaultHost {
		host = DefaultHost
	}
	if host == DefaultHost && !strings.Contains(path, "/") {
		path = officialPrefix + path
	}
	if tag == "" && dgst == "" {
		tag = DefaultTag
	}
	ref, err = build(s, host, path, tag, dgst)
	if err != nil {
		return Reference{}, false, err
	}
	return ref, ref.String() != s, nil
}

// splitTagDigest takes the optional "@digest" and ":tag" off s. The tag's
// colon is the last one after the last '/', so a host's port is not taken
// for a tag.
func splitTagDigest(orig, s string) (rest, tag string, dgst digest.Digest, err error) {
	if at := strings.IndexByte(s, '@'); at >= 0 {
		d := s[at+1:]
		if d == "" {
			return "", "", "", invalid(orig, "empty digest after '@'")
		}
		parsed, perr := digest.Parse(d)
		if perr != nil {
			return "", "", "", invalid(orig, fmt.Sprintf("invalid digest %q: %v (expected algorithm:hex, e.g. sha256:<64 hex digits>)", d, perr))
		}
		dgst, s = parsed, s[:at]
	}
	if colon := strings.LastIndexByte(s, ':'); colon > strings.LastIndexByte(s, '/') {
		tag, s = s[colon+1:], s[:colon]
		if tag == "" {
			return "", "", "", invalid(orig, "empty tag after ':'")
		}
		if !tagRe().MatchString(tag) {
			return "", "", "", invalid(orig, fmt.Sprintf("invalid tag %q: use up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'", tag))
		}
	}
	return s, tag, dgst, nil
}

// looksLikeHost is docker's rule for telling a registry host from the
// first path component of a Docker Hub name.
func looksLikeHost(s string) bool {
	return strings.ContainsAny(s, ".:") || s == "localhost"
}

// build validates the parts and assembles the Reference.
func build(orig, host, path, tag string, dgst digest.Digest) (Reference, error) {
	if host == "" {
		return Reference{}, invalid(orig, "empty registry host")
	}
	if !hostRe().MatchString(host) {
		return Reference{}, invalid(orig, fmt.Sprintf("invalid registry host %q: expected a DNS name or [IPv6 address], optionally with :port", host))
	}
	if path == "" {
		return Reference{}, invalid(orig, "empty repository path")
	}
	for _, c := range strings.Split(path, "/") {
		if err := checkComponent(orig, path, c); err != nil {
			return Reference{}, err
		}
	}
	if n := len(host) + 1 + len(path); n > maxNameLength {
		return Reference{}, invalid(orig, fmt.Sprintf("repository name is %d characters long, the limit is %d", n, maxNameLength))
	}
	return Reference{Host: host, Path: path, Tag: tag, Digest: dgst}, nil
}

// checkComponent explains what is wrong with one path component, picking
// out the mistakes people actually make.
func checkComponent(orig, path, c string) error {
	switch {
	case c == "":
		return invalid(orig, fmt.Sprintf("repository path %q has an empty component", path))
	case componentRe().MatchString(c):
		return nil
	case strings.ToLower(c) != c && componentRe().MatchString(strings.ToLower(c)):
		return invalid(orig, fmt.Sprintf("repository path %q must be lowercase", path))
	default:
		return invalid(orig, fmt.Sprintf("invalid repository path component %q: use lowercase letters and digits separated by '.', '_', '__' or '-'", c))
	}
}

func invalid(s, why string) error {
	return fmt.Errorf("invalid reference %q: %s: %w", s, why, errdefs.ErrInvalidArgument)
}
