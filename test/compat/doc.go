// Package compat runs containerd's own conformance suites against hull:
// containerd's snapshotter suite (core/snapshots/testsuite) against hull's
// overlayfs and native snapshotters and against hulld's snapshots service,
// and its content suite (core/content/testsuite) against hull's local
// content store and against hulld's content service.
//
// It is a module of its own because containerd v2, which the suites come
// with, is heavy and must not weigh on hull's main module; the main
// module's `go test ./...` does not descend into it. Everything here is
// test code: the adapters between hull's interfaces and containerd's live in
// the _test.go files.
package compat
