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
//
// Run it as root (the snapshotter suite mounts): `make test` does, after
// hull's own tests, or `cd test/compat && go test ./...`, which builds
// hulld from the main module unless HULLD_BIN names one.
//
// hull is required through `replace github.com/hullrt/hull => ../..`, so
// this module's requirements must stay at least those of the main module:
// after a change to the main module's go.mod, `go mod tidy` here follows
// it (the go command says so when it is needed).
package compat
