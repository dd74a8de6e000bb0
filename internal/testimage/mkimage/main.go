// Command mkimage writes an OCI image layout archive of a busybox image built
// from Debian's static busybox, for the demo: mkimage -o FILE -ref NAME.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/hullrt/hull/internal/testimage"
)

func main() {
	out := flag.String("o", "busybox.tar", "output archive")
	ref := flag.String("ref", "docker.io/library/busybox:latest", "image name recorded in the archive")
	flag.Parse()
	files, err := testimage.BusyboxFiles()
	if err != nil {
		fmt.Fprintf(os.Stderr, "mkimage: %v (install busybox-static)\n", err)
		os.Exit(1)
	}
	img := testimage.New([]string{"/bin/sh"}, files)
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
	if err := testimage.WriteOCIArchive(f, *ref, img); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
	fmt.Printf("%s: %s (manifest %s)\n", *out, *ref, img.Manifest.Desc.Digest)
}
