// Package labels names the labels containerd gives a meaning to and checks
// object labels against containerd's limits, so that any label hull
// accepts is one a containerd client can store back.
//
// The names are containerd's: clients (ctr, the containerd Go client,
// nerdctl) set them, so hull must read the same keys.
package labels

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
)

// The labels that tie objects together for garbage collection.
const (
	// GCRoot on a blob or snapshot makes it a root: kept while the label
	// is there, whatever refers to it.
	GCRoot = "containerd.io/gc.root"
	// GCRefContent, and labels starting with GCRefContent + "." or "/",
	// hold the digest of a blob the labelled object keeps alive; see
	// IsGCRefContent.
	GCRefContent = "containerd.io/gc.ref.content"
	// GCRefSnapshot + <snapshotter> holds the key of a snapshot the
	// labelled object keeps alive (an image config keeps its top layer's).
	GCRefSnapshot = "containerd.io/gc.ref.snapshot."
	// GCExpire on a lease holds an RFC 3339 time after which the lease is
	// collected.
	GCExpire = "containerd.io/gc.expire"
)

// gcPrefix begins every label that garbage collection reads: the ones
// above, and the back references of mounts (containerd.io/gc.bref.*).
const gcPrefix = "containerd.io/gc."

// GCChanged reports whether an update from labels before to after changes
// any label that garbage collection reads: only such an update can make
// something collectable, so only it needs a collection to follow.
func GCChanged(before, after map[string]string) bool {
	for k, v := range before {
		if strings.HasPrefix(k, gcPrefix) {
			if w, ok := after[k]; !ok || w != v {
				return true
			}
		}
	}
	for k := range after {
		if strings.HasPrefix(k, gcPrefix) {
			if _, ok := before[k]; !ok {
				return true
			}
		}
	}
	return false
}

// GCOnly returns, in a map of its own, the labels of m that garbage
// collection reads (nil for none): what GCChanged needs of labels about
// to be changed in place.
func GCOnly(m map[string]string) map[string]string { return Prefixed(m, gcPrefix) }

// Prefixed returns, in a map of its own, the labels of m whose keys start
// with prefix (nil for none).
func Prefixed(m map[string]string, prefix string) map[string]string {
	var out map[string]string
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// SnapshotRef on a snapshot being prepared names the committed snapshot
// (an image layer's chain ID) the caller will commit it as, so a
// snapshotter that has it already can say so instead of having the layer
// unpacked again.
const SnapshotRef = "containerd.io/snapshot.ref"

// IsGCRefContent reports whether key is a content reference label:
// GCRefContent itself or GCRefContent followed by "." or "/" and a name
// of the caller's choosing (containerd.io/gc.ref.content.l.0).
func IsGCRefContent(key string) bool {
	rest, ok := strings.CutPrefix(key, GCRefContent)
	return ok && (rest == "" || rest[0] == '.' || rest[0] == '/')
}

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
