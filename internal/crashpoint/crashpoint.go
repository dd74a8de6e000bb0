// Package crashpoint lets tests kill hulld or a shim at a named point in a
// multi-step operation, to prove that every window between two durable
// steps is closed after a restart.
//
// Hit does nothing in a normal build: the points exist only in binaries
// built with the build tag hullcrash, which the chaos tests build for
// themselves. There, the environment variable HULL_CRASHPOINT names the
// point ("name", or "name@N" for its Nth hit) at which the process sends
// itself SIGKILL: no deferred function, no cleanup, as in a power cut of
// that one process.
package crashpoint

import (
	"fmt"
	"strconv"
	"strings"
)

// EnvVar is the variable a hullcrash build reads for the point to crash at.
const EnvVar = "HULL_CRASHPOINT"

// The named points. Each sits between two steps that must not be seen
// half done after a restart.
const (
	// TaskShimStarted: hulld started a task's shim but has not recorded
	// its address.
	TaskShimStarted = "task-shim-started"
	// TaskCreating: hulld recorded the shim and sent it the create, and
	// the shim is running runc create.
	TaskCreating = "task-creating"
	// ShimRuncCreated: the shim ran runc create and has not answered.
	ShimRuncCreated = "shim-runc-created"
	// TaskRecorded: hulld recorded the created task and has not answered
	// its client.
	TaskRecorded = "task-recorded"
	// TaskDeleting: the shim deleted the container and hulld has not
	// removed the bundle or stopped the shim.
	TaskDeleting = "task-deleting"
	// UnpackMid: a layer is half written into its snapshot.
	UnpackMid = "unpack-mid"
	// ContentCommit: a blob is in place on disk and not yet recorded in
	// the metadata database.
	ContentCommit = "content-commit"
	// GCSweep: the collector removed records from the database and has
	// not removed the blobs and snapshots they named.
	GCSweep = "gc-sweep"
	// SnapshotCommit: the snapshotter committed a snapshot and the
	// metadata database does not record it yet.
	SnapshotCommit = "snapshot-commit"
)

// All lists every point, for tests that must cover each.
var All = []string{TaskShimStarted, TaskCreating, ShimRuncCreated, TaskRecorded, TaskDeleting, UnpackMid, ContentCommit, GCSweep, SnapshotCommit}

// Hit kills the process if it was built with the hullcrash tag and
// HULL_CRASHPOINT names this point (and this is the hit it counts to).
func Hit(name string) { hit(name) }

// parse reads a HULL_CRASHPOINT value: a point's name, and after "@" the
// hit that crashes (1 when absent).
func parse(v string) (string, int64, error) {
	name, count, ok := strings.Cut(v, "@")
	if !ok {
		return name, 1, nil
	}
	n, err := strconv.ParseInt(count, 10, 64)
	if err != nil || n < 1 {
		return "", 0, fmt.Errorf("%s=%q: the hit count after @ must be a positive number", EnvVar, v)
	}
	return name, n, nil
}
