package client_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/images"
)

// These examples need a running hulld, so they are compiled but not run.

func ExampleNew() {
	c, err := client.New("/run/hull/hull.sock",
		client.WithDefaultNamespace("default"),
		client.WithTimeout(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	v, err := c.Version(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("hulld", v.Version)
}

func ExampleWithNamespace() {
	c, err := client.New("/run/hull/hull.sock")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := client.WithNamespace(context.Background(), "builds")
	imgs, err := c.ImageService().List(ctx, "labels.team==infra")
	if err != nil {
		log.Fatal(err)
	}
	for _, img := range imgs {
		fmt.Println(img.Name, img.Target.Digest)
	}
}

func ExampleClient_WithLease() {
	c, err := client.New("/run/hull/hull.sock", client.WithDefaultNamespace("default"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	// Everything written with ctx stays until done deletes the lease, so a
	// garbage collection cannot take a blob before an image refers to it.
	ctx, done, err := c.WithLease(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	defer done(context.Background())

	manifest := []byte(`{"schemaVersion":2}`)
	desc := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageManifest,
		Digest:    digest.FromBytes(manifest),
		Size:      int64(len(manifest)),
	}
	if err := client.WriteBlob(ctx, c.ContentStore(), "manifest-"+desc.Digest.String(), bytes.NewReader(manifest), desc); err != nil {
		log.Fatal(err)
	}
	if _, err := c.ImageService().Create(ctx, images.Image{Name: "example.com/app:1", Target: desc}); err != nil {
		log.Fatal(err)
	}
}

func ExampleWriteBlob() {
	c, err := client.New("/run/hull/hull.sock", client.WithDefaultNamespace("default"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	data := []byte("hello")
	desc := ocispec.Descriptor{Digest: digest.FromBytes(data), Size: int64(len(data))}
	// Run again after an interruption, this resumes the ingest "hello"
	// where it stopped; a blob already stored counts as written.
	err = client.WriteBlob(context.Background(), c.ContentStore(), "hello", bytes.NewReader(data), desc,
		content.WithLabels(map[string]string{"containerd.io/gc.root": time.Now().UTC().Format(time.RFC3339)}))
	if err != nil {
		log.Fatal(err)
	}
}

func ExampleClient_ContentStore() {
	c, err := client.New("/run/hull/hull.sock", client.WithDefaultNamespace("default"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	cs := c.ContentStore()
	err = cs.Walk(ctx, func(info content.Info) error {
		fmt.Println(info.Digest, info.Size)
		return nil
	}, "labels.\"containerd.io/gc.root\"")
	if err != nil {
		log.Fatal(err)
	}
	b, err := client.ReadBlob(ctx, cs, ocispec.Descriptor{Digest: "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", b)
}

func ExampleClient_EventService() {
	c, err := client.New("/run/hull/hull.sock")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ch, errs := c.EventService().Subscribe(ctx, `topic~="^/images/"`)
	for env := range ch {
		fmt.Println(env.Timestamp, env.Namespace, env.Topic, env.Event.GetTypeUrl())
	}
	if err := <-errs; err != nil {
		log.Fatal(err)
	}
}
