// Command containerd-shim-hull-v2 is hull's shim v2 for runc: containerd
// (or hulld) starts it per container, or per group of containers, to run
// them with runc and report their exits. See package shim/bootstrap for the
// command line and shim/service for the task API it serves.
package main

import (
	"os"

	"github.com/hullrt/hull/shim/bootstrap"
)

func main() {
	os.Exit(bootstrap.Main(os.Args[1:]))
}
