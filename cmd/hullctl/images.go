package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/urfave/cli/v2"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/images"
)

func imagesCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:    "images",
		Aliases: []string{"image", "i"},
		Usage:   "list images (as images ls), or manage them with the commands below",
		Subcommands: []*cli.Command{
			imagesLs(e), imagesRm(e), imagesLabel(e), imagesTag(e), imagesImport(e), imagesExport(e), imagesPull(e), imagesPush(e), imagesUnpack(e), imagesMount(e), imagesUnmount(e), imagesCheck(e),
		},
		// Alone, images lists them, as in nerdctl and Docker.
		Flags: listFlags(),
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return unknownCommand(c)
			}
			return e.listAction(e.listImages)(c)
		},
	}
}

func imagesLs(e *env) *cli.Command {
	return &cli.Command{
		Name:      "ls",
		Aliases:   []string{"list"},
		Usage:     "list images matching any of the filters",
		ArgsUsage: "[FILTER...]",
		Flags:     listFlags(),
		Action:    e.listAction(e.listImages),
	}
}

func imagesRm(e *env) *cli.Command {
	return removeCommand(e, &cli.Command{
		Name:      "rm",
		Aliases:   []string{"remove", "delete", "del"},
		Usage:     "remove images",
		ArgsUsage: "NAME...",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "sync", Usage: "wait for the garbage collection of their content"}},
	}, removeImage)
}

// removeImage removes the image named name.
func removeImage(ctx context.Context, c *cli.Context, cl *client.Client, name string) error {
	{
		var opts []images.DeleteOpt
		if c.Bool("sync") {
			opts = append(opts, images.SynchronousDelete())
		}
		return named("image", name, cl.ImageService().Delete(ctx, name, opts...))
	}
}

func imagesLabel(e *env) *cli.Command {
	return labelCommand(e, "image", "NAME [KEY=VALUE...]", nil,
		func(ctx context.Context, cl *client.Client, name string, labels map[string]string) (map[string]string, error) {
			is := cl.ImageService()
			return updateLabels(labels, func() (map[string]string, error) {
				img, err := is.Get(ctx, name)
				return img.Labels, err
			}, func(set map[string]string, paths []string) (map[string]string, error) {
				img, err := is.Update(ctx, images.Image{Name: name, Labels: set}, paths...)
				return img.Labels, err
			})
		})
}

func imagesTag(e *env) *cli.Command {
	return &cli.Command{
		Name:      "tag",
		Usage:     "give an image more names, pointing at the same content",
		ArgsUsage: "SOURCE TARGET...",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "repoint targets that exist"}},
		Action: func(c *cli.Context) error {
			cl, ctx, err := e.connectFor(c, 2, "SOURCE TARGET...")
			if err != nil {
				return err
			}
			is := cl.ImageService()
			src, err := is.Get(ctx, c.Args().First())
			if err != nil {
				return named("image", c.Args().First(), err)
			}
			return each(c.Args().Tail(), func(dst string) error {
				img := images.Image{Name: dst, Target: src.Target, Labels: src.Labels}
				_, err := is.Create(ctx, img)
				if errdefs.IsAlreadyExists(err) && c.Bool("force") {
					// Update in place rather than delete and create, so
					// the content never loses its last reference.
					_, err = is.Update(ctx, img)
				}
				if err != nil {
					return named("image", dst, err)
				}
				fmt.Fprintln(e.stdout, dst)
				return nil
			})
		},
	}
}

func platformFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "all-platforms", Usage: "every platform of an index, not only this host's"},
		&cli.StringFlag{Name: "platform", Usage: "the platform to keep instead of this host's (os/arch[/variant])"},
	}
}

// platformOpts turns --all-platforms and --platform into the options of an
// import, an export or a registry transfer, each of which has its own
// option type.
func platformOpts[O any](c *cli.Context, all func() O, one func(ocispec.Platform) O) ([]O, error) {
	var opts []O
	if c.Bool("all-platforms") {
		opts = append(opts, all())
	}
	if v := c.String("platform"); v != "" {
		p, err := platforms.Parse(v)
		if err != nil {
			return nil, fmt.Errorf("--platform %q: %w", v, err)
		}
		opts = append(opts, one(p))
	}
	return opts, nil
}

func imagesImport(e *env) *cli.Command {
	return &cli.Command{
		Name:      "import",
		Usage:     "import the images of an OCI image layout or docker save archive (FILE, or - for stdin)",
		ArgsUsage: "FILE|-",
		Flags: append(platformFlags(),
			&cli.StringFlag{Name: "index-name", Usage: "also record the archive's index as an image of this name"},
			&cli.BoolFlag{Name: "digests", Usage: "also record each image as NAME@DIGEST"},
		),
		Action: func(c *cli.Context) error {
			cl, ctx, err := e.connectFor(c, 1, "FILE|-")
			if err != nil {
				return err
			}
			opts, err := platformOpts(c, client.WithImportAllPlatforms, client.WithImportPlatform)
			if err != nil {
				return err
			}
			if v := c.String("index-name"); v != "" {
				opts = append(opts, client.WithIndexName(v))
			}
			if c.Bool("digests") {
				opts = append(opts, client.WithDigestImages())
			}
			var r io.Reader = e.stdin
			if name := c.Args().First(); name != "-" {
				f, err := os.Open(name)
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			imgs, err := cl.Import(ctx, r, opts...)
			if err != nil {
				return err
			}
			for _, img := range imgs {
				fmt.Fprintf(e.stdout, "%s %s\n", img.Name, img.Target.Digest)
			}
			return nil
		},
	}
}

func imagesExport(e *env) *cli.Command {
	return &cli.Command{
		Name:      "export",
		Usage:     "write images to an OCI image layout archive (with a docker manifest.json) (FILE, or - for stdout)",
		ArgsUsage: "FILE|- NAME...",
		Flags:     platformFlags(),
		Action: func(c *cli.Context) error {
			cl, ctx, err := e.connectFor(c, 2, "FILE|- NAME...")
			if err != nil {
				return err
			}
			opts, err := platformOpts(c, client.WithExportAllPlatforms, client.WithExportPlatform)
			if err != nil {
				return err
			}
			w := e.stdout
			var f *os.File
			if name := c.Args().First(); name != "-" {
				// Written beside the target and renamed at the end, so a
				// failed export leaves no half archive under its name.
				f, err = os.CreateTemp(filepath.Dir(name), ".hullctl-export-*")
				if err != nil {
					return err
				}
				defer os.Remove(f.Name())
				defer f.Close()
				w = f
			}
			if err := cl.Export(ctx, w, c.Args().Slice()[1:], opts...); err != nil {
				return err
			}
			if f != nil {
				if err := f.Close(); err != nil {
					return err
				}
				return os.Rename(f.Name(), c.Args().First())
			}
			return nil
		},
	}
}

// listImages lists the images matching any of c's filter arguments. The
// SIZE column is ctr's: what this host's platform of the image takes in
// the store (the index, the host's manifest, its config and layers); the
// JSON size is every blob the image reaches that is known, all platforms'.
func (e *env) listImages(ctx context.Context, c *cli.Context, cl *client.Client) (listing, error) {
	imgs, err := cl.ImageService().List(ctx, c.Args().Slice()...)
	if err != nil {
		return listing{}, err
	}
	sort.Slice(imgs, func(i, j int) bool { return imgs[i].Name < imgs[j].Name })
	type image struct {
		Name      string             `json:"name"`
		Target    ocispec.Descriptor `json:"target"`
		Size      int64              `json:"size"`
		Platforms []string           `json:"platforms"`
		Labels    map[string]string  `json:"labels"`
		CreatedAt string             `json:"created_at"`
		UpdatedAt string             `json:"updated_at"`
	}
	l := listing{header: []string{"NAME", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"}}
	js := []image{}
	cs := cl.ContentStore()
	for _, img := range imgs {
		l.ids = append(l.ids, img.Name)
		if c.Bool("quiet") {
			continue
		}
		var w images.Contents
		if err := w.Walk(ctx, cs, img.Target); err != nil {
			return listing{}, fmt.Errorf("image %q: %w", img.Name, err)
		}
		plats := make([]string, 0, len(w.Platforms))
		for _, p := range w.Platforms {
			plats = append(plats, platforms.Format(p))
		}
		sort.Strings(plats)
		platStr := "-"
		if len(plats) > 0 {
			platStr = strings.Join(plats, ",")
		}
		sizeStr := "-"
		if n, ok := hostSize(ctx, cs, img.Target, platforms.Default()); ok {
			sizeStr = humanSize(n)
		}
		l.rows = append(l.rows, []string{img.Name, img.Target.MediaType, img.Target.Digest.String(), sizeStr, platStr, labelString(img.Labels)})
		js = append(js, image{img.Name, img.Target, w.Size(), plats, nonNil(img.Labels), timeString(img.CreatedAt), timeString(img.UpdatedAt)})
	}
	l.json = js
	return l, nil
}

// hostSize is ctr's image size: the sum of the sizes of the descriptors a
// walk from root reaches when each index is followed only into the one
// manifest that suits m best (those without a platform come after the
// others). false when an index or manifest on that path is not stored or
// does not decode, as the size is then unknown.
func hostSize(ctx context.Context, p content.Provider, root ocispec.Descriptor, m platforms.MatchComparer) (int64, bool) {
	var size int64
	seen := map[digest.Digest]bool{}
	queue := []ocispec.Descriptor{root}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		if seen[d.Digest] {
			continue
		}
		seen[d.Digest] = true
		size += d.Size
		index := images.IsIndex(d.MediaType)
		if !index && !images.IsManifest(d.MediaType) {
			continue
		}
		data, err := images.ReadManifest(ctx, p, d)
		if err != nil {
			return 0, false
		}
		children, _, err := images.ParseChildren(d, data)
		if err != nil {
			return 0, false
		}
		if index {
			children = bestManifest(children, m)
		}
		queue = append(queue, children...)
	}
	return size, true
}

// bestManifest keeps, of an index's entries, the one m prefers: entries
// for other platforms go, and of the rest those with a platform come first,
// in m's order.
func bestManifest(children []ocispec.Descriptor, m platforms.MatchComparer) []ocispec.Descriptor {
	var kept []ocispec.Descriptor
	for _, c := range children {
		if c.Platform == nil || m.Match(*c.Platform) {
			kept = append(kept, c)
		}
	}
	sort.SliceStable(kept, func(i, j int) bool {
		if kept[i].Platform == nil {
			return false
		}
		if kept[j].Platform == nil {
			return true
		}
		return m.Less(*kept[i].Platform, *kept[j].Platform)
	})
	if len(kept) > 1 {
		kept = kept[:1]
	}
	return kept
}
