package cgroup

import "unsafe"

// unsafePointer views the start of b as a kernel struct; the caller checks
// the length.
func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }
