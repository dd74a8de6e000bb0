// Package labels checks object labels against containerd's limits, so that
// any label hull accepts is one a containerd client can store back.
package labels

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// MaxSize is containerd's limit on a label's key plus value, in bytes.
const MaxSize = 4096

// Validate checks one label.
func Validate(k, v string) error {
	if k == "" {
		return fmt.Errorf("label key must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	if len(k)+len(v) > MaxSize {
		short := k
		if len(short) > 64 {
			short = short[:64] + "..."
		}
		return fmt.Errorf("label %q: key and value are %d bytes, the limit is %d: %w", short, len(k)+len(v), MaxSize, errdefs.ErrInvalidArgument)
	}
	return nil
}

// ValidateAll checks every label of m.
func ValidateAll(m map[string]string) error {
	for k, v := range m {
		if err := Validate(k, v); err != nil {
			return err
		}
	}
	return nil
}
