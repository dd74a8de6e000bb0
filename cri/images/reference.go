package images

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// normalizeRef returns ref as the fully qualified name images are recorded
// under: "busybox" is docker.io/library/busybox:latest, and a reference with
// both a tag and a digest keeps the digest only, as docker's
// ParseDockerRef does. A reference that does not parse is InvalidArgument
// naming it.
func normalizeRef(ref string) (reference.Named, error) {
	if ref == "" {
		return nil, fmt.Errorf("image reference is empty: %w", errdefs.ErrInvalidArgument)
	}
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %v: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	return named, nil
}

// nameKind is what an image record's name says about the image.
type nameKind int

const (
	// kindOther: a name that is no normalizable reference ("foo/bar"
	// without a tag, or anything a tool chose).
	kindOther nameKind = iota
	// kindID: the image id itself, "sha256:<config digest>".
	kindID
	// kindTag: repo:tag.
	kindTag
	// kindDigest: repo@sha256:<target digest>.
	kindDigest
)

// classifyName returns what the record name says and, for a tag or a
// digest, its normalized form (the key Resolve looks it up under and the
// form CRI reports). Names recorded by other tools need not be normalized
// ("busybox:latest"); they are reported as the CRI would name them.
func classifyName(name string) (nameKind, string) {
	if _, err := digest.Parse(name); err == nil {
		return kindID, name
	}
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return kindOther, ""
	}
	if c, ok := named.(reference.Canonical); ok {
		// A tag beside the digest says nothing the digest does not.
		out, err := reference.WithDigest(reference.TrimNamed(c), c.Digest())
		if err != nil {
			return kindOther, ""
		}
		return kindDigest, out.String()
	}
	if t, ok := named.(reference.NamedTagged); ok {
		return kindTag, t.String()
	}
	return kindOther, ""
}

// idPrefix returns the hex digits of s if s may be a shortened (or full)
// image id: "sha256:" followed by hex, or hex alone, at most 64 digits.
func idPrefix(s string) (string, bool) {
	hex := strings.TrimPrefix(s, digest.SHA256.String()+":")
	if hex == "" || len(hex) > 64 {
		return "", false
	}
	for i := 0; i < len(hex); i++ {
		c := hex[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", false
		}
	}
	return hex, true
}

// userFromImage reads an image config's User ("name", "uid", "uid:gid",
// "name:group") as the CRI reports it: the uid when the user part is
// numeric, the user name otherwise, neither when it is empty.
func userFromImage(user string) (uid *int64, username string) {
	user, _, _ = strings.Cut(user, ":")
	if user == "" {
		return nil, ""
	}
	n, err := strconv.ParseInt(user, 10, 64)
	if err != nil {
		return nil, user
	}
	return &n, ""
}
