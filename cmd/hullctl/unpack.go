package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/urfave/cli/v2"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/labels"
	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/snapshots"
)

func unpackProgress(e *env) func(ocispec.Descriptor, digest.Digest, string) {
	return func(layer ocispec.Descriptor, chain digest.Digest, status string) {
		fmt.Fprintf(e.stdout, "unpack layer-%s: %s (%s)\n", layer.Digest, status, chain)
	}
}

func imagesUnpack(e *env) *cli.Command {
	return &cli.Command{
		Name:      "unpack",
		Usage:     "apply an image's layers into snapshots",
		ArgsUsage: "REF",
		Flags:     []cli.Flag{snapshotterFlag()},
		Action: func(c *cli.Context) error {
			ref, err := e.refArg(c, 1, "REF")
			if err != nil {
				return err
			}
			cl, sn, err := e.snapshotterClient(c)
			if err != nil {
				return err
			}
			chain, err := cl.Unpack(e.ctx(c), ref, client.WithSnapshotter(sn), client.WithUnpackProgress(unpackProgress(e)))
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s: unpacked into %s, top layer %s\n", ref, sn, chain)
			return nil
		},
	}
}

// snapshotter returns --snapshotter or hulld's default.
func (e *env) snapshotter(c *cli.Context, cl *client.Client) (string, error) {
	if s := c.String("snapshotter"); s != "" {
		return s, nil
	}
	return cl.DefaultSnapshotter(e.ctx(c))
}

// snapshotterClient dials hulld and returns it with the snapshotter the
// command works in, which may take asking hulld for its default.
func (e *env) snapshotterClient(c *cli.Context) (*client.Client, string, error) {
	cl, err := e.connect()
	if err != nil {
		return nil, "", err
	}
	sn, err := e.snapshotter(c, cl)
	return cl, sn, err
}

// chainOf returns the chain ID of the top layer of the host's manifest of
// image ref: the snapshot its root filesystem is built from.
func chainOf(ctx context.Context, cl *client.Client, ref string) (digest.Digest, error) {
	img, err := cl.ImageService().Get(ctx, ref)
	if err != nil {
		return "", err
	}
	m, err := cl.PlatformManifest(ctx, img.Target, platforms.Default())
	if err != nil {
		return "", err
	}
	data, err := images.ReadManifest(ctx, cl.ContentStore(), m)
	if err != nil {
		return "", err
	}
	var man ocispec.Manifest
	if err := json.Unmarshal(data, &man); err != nil {
		return "", err
	}
	cfgData, err := client.ReadBlob(ctx, cl.ContentStore(), man.Config)
	if err != nil {
		return "", err
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(cfgData, &cfg); err != nil {
		return "", err
	}
	if len(cfg.RootFS.DiffIDs) == 0 {
		return "", fmt.Errorf("image %s has no layers: %w", ref, errdefs.ErrFailedPrecondition)
	}
	return identity.ChainID(cfg.RootFS.DiffIDs), nil
}

func imagesMount(e *env) *cli.Command {
	return &cli.Command{
		Name:      "mount",
		Usage:     "mount an image's root filesystem at TARGET (unpacking it first if needed)",
		ArgsUsage: "REF TARGET",
		Flags:     []cli.Flag{snapshotterFlag(), &cli.BoolFlag{Name: "rw", Usage: "writable (the changes go to a snapshot named TARGET)"}},
		Action: func(c *cli.Context) error {
			ref, err := e.refArg(c, 2, "REF TARGET")
			if err != nil {
				return err
			}
			target := c.Args().Get(1)
			cl, sn, err := e.snapshotterClient(c)
			if err != nil {
				return err
			}
			ctx := e.ctx(c)
			chain, err := cl.Unpack(ctx, ref, client.WithSnapshotter(sn))
			if err != nil {
				return err
			}
			s := cl.SnapshotService(sn)
			var ms []mount.Mount
			if c.Bool("rw") {
				ms, err = s.Prepare(ctx, target, chain.String(), gcRoot())
			} else {
				ms, err = s.View(ctx, target, chain.String(), gcRoot())
			}
			if err != nil {
				return err
			}
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			if err := mount.All(ms, target); err != nil {
				s.Remove(ctx, target)
				return err
			}
			fmt.Fprintln(e.stdout, target)
			return nil
		},
	}
}

func imagesUnmount(e *env) *cli.Command {
	return &cli.Command{
		Name:      "unmount",
		Usage:     "unmount TARGET and remove its snapshot",
		ArgsUsage: "TARGET",
		Flags:     []cli.Flag{snapshotterFlag(), &cli.BoolFlag{Name: "keep", Usage: "keep the snapshot"}},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, "TARGET"); err != nil {
				return err
			}
			target := c.Args().First()
			if err := mount.UnmountAll(target); err != nil {
				return err
			}
			if c.Bool("keep") {
				return nil
			}
			cl, sn, err := e.snapshotterClient(c)
			if err != nil {
				return err
			}
			if err := cl.SnapshotService(sn).Remove(e.ctx(c), target); err != nil && !errdefs.IsNotFound(err) {
				return err
			}
			fmt.Fprintln(e.stdout, target)
			return nil
		},
	}
}

func imagesCheck(e *env) *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "tell for each image whether its content is complete and where it is unpacked",
		ArgsUsage: "[FILTER...]",
		Flags:     listFlags(),
		Action: e.listAction(func(ctx context.Context, c *cli.Context, cl *client.Client) (listing, error) {
			imgs, err := cl.ImageService().List(ctx, c.Args().Slice()...)
			if err != nil {
				return listing{}, err
			}
			names, err := cl.Snapshotters(ctx)
			if err != nil {
				return listing{}, err
			}
			l := listing{header: []string{"REF", "COMPLETE", "UNPACKED"}}
			var js []map[string]any
			for _, img := range imgs {
				complete := cl.Complete(ctx, img.Target, platforms.Default()) == nil
				var unpacked []string
				if chain, err := chainOf(ctx, cl, img.Name); err == nil {
					for _, sn := range names {
						if _, err := cl.SnapshotService(sn).Stat(ctx, chain.String()); err == nil {
							unpacked = append(unpacked, sn)
						}
					}
				}
				u := "-"
				if len(unpacked) > 0 {
					u = fmt.Sprint(unpacked)
				}
				l.add(img.Name, img.Name, fmt.Sprint(complete), u)
				js = append(js, map[string]any{"ref": img.Name, "complete": complete, "unpacked": nonNilSlice(unpacked)})
			}
			l.json = js
			return l, nil
		}),
	}
}

// gcRoot labels a mount's snapshot so that gc keeps it until unmount
// removes it.
func gcRoot() snapshots.Opt {
	return snapshots.WithLabels(map[string]string{labels.GCRoot: time.Now().UTC().Format(time.RFC3339)})
}
