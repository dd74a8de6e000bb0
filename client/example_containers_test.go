package client_test

import (
	"bytes"
	"context"
	"fmt"
	"log"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/client/cio"
	"github.com/hullrt/hull/client/oci"
)

// Running a container: make its record from an image, create its task with
// stdout captured, start it, wait for the exit and delete what was made.
// (Compiled, not run: it needs a running hulld.)
func ExampleClient_NewContainer() {
	c, err := client.New("/run/hull/hull.sock", client.WithDefaultNamespace("default"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	img, err := c.GetImage(ctx, "docker.io/library/busybox:latest")
	if err != nil {
		log.Fatal(err)
	}
	ct, err := c.NewContainer(ctx, "hello",
		client.WithImage(img),
		client.WithNewSnapshot("hello-rootfs", img), // unpacks img if needed
		client.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("echo", "hi")),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer ct.Delete(ctx, client.WithSnapshotCleanup)

	var stdout bytes.Buffer
	task, err := ct.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, &stdout, nil)))
	if err != nil {
		log.Fatal(err)
	}
	exited, _ := task.Wait(ctx) // before Start, so that no exit is missed
	if err := task.Start(ctx); err != nil {
		log.Fatal(err)
	}
	code, _, err := (<-exited).Result()
	if err != nil {
		log.Fatal(err)
	}
	// Delete waits for the output to be copied before closing the FIFOs.
	if _, err := task.Delete(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("exit %d: %s", code, stdout.String())
}
