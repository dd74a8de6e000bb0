package content

import (
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// ValidateDigest checks d, naming it in an InvalidArgument error. Every
// content call validates its digest, so the common sha256 form is checked
// with a loop before falling back to go-digest's regexp-based Validate.
func ValidateDigest(d digest.Digest) error {
	if isSHA256(d) {
		return nil
	}
	if err := d.Validate(); err != nil {
		return fmt.Errorf("invalid digest %q: %v: %w", d, err, errdefs.ErrInvalidArgument)
	}
	return nil
}

// isSHA256 reports whether d is "sha256:" and 64 lowercase hex digits.
func isSHA256(d digest.Digest) bool {
	const prefix = "sha256:"
	if len(d) != len(prefix)+64 || d[:len(prefix)] != prefix {
		return false
	}
	for i := len(prefix); i < len(d); i++ {
		if c := d[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
