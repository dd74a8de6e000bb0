package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/urfave/cli/v2"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/labels"
)

// parseDigest checks a digest argument here, so that a typo is reported as
// such rather than as a missing blob.
func parseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", fmt.Errorf("invalid digest %q: %v", s, err)
	}
	return d, nil
}

func contentCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "content",
		Usage: "manage blobs and ingests",
		Subcommands: []*cli.Command{
			contentLs(e), contentGet(e), contentIngest(e), contentActive(e),
			contentAbort(e), contentRm(e), contentLabel(e), contentPrune(e),
		},
	}
}

func contentLs(e *env) *cli.Command {
	return &cli.Command{
		Name:      "ls",
		Aliases:   []string{"list"},
		Usage:     "list blobs matching any of the filters",
		ArgsUsage: "[FILTER...]",
		Flags:     listFlags(),
		Action: e.listAction(func(ctx context.Context, c *cli.Context, cl *client.Client) (listing, error) {
			type blob struct {
				Digest    digest.Digest     `json:"digest"`
				Size      int64             `json:"size"`
				CreatedAt string            `json:"created_at"`
				UpdatedAt string            `json:"updated_at"`
				Labels    map[string]string `json:"labels"`
			}
			l := listing{header: []string{"DIGEST", "SIZE", "AGE", "LABELS"}}
			js := []blob{}
			err := cl.ContentStore().Walk(ctx, func(i content.Info) error {
				l.add(i.Digest.String(), i.Digest.String(), humanSize(i.Size), age(i.CreatedAt), labelString(i.Labels))
				js = append(js, blob{i.Digest, i.Size, timeString(i.CreatedAt), timeString(i.UpdatedAt), nonNil(i.Labels)})
				return nil
			}, c.Args().Slice()...)
			if err != nil {
				return listing{}, err
			}
			l.json = js
			return l, nil
		}),
	}
}

func contentGet(e *env) *cli.Command {
	return &cli.Command{
		Name:      "get",
		Usage:     "write a blob to stdout",
		ArgsUsage: "DIGEST",
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, "DIGEST"); err != nil {
				return err
			}
			d, err := parseDigest(c.Args().First())
			if err != nil {
				return err
			}
			cl, err := e.connect()
			if err != nil {
				return err
			}
			ra, err := cl.ContentStore().ReaderAt(e.ctx(c), ocispec.Descriptor{Digest: d})
			if err != nil {
				return named("blob", d.String(), err)
			}
			defer ra.Close()
			// Wrapping hides WriterTo/ReaderFrom so that each read asks
			// for a full buffer, one round trip per MiB.
			buf := make([]byte, 1<<20)
			_, err = io.CopyBuffer(struct{ io.Writer }{e.stdout}, struct{ io.Reader }{io.NewSectionReader(ra, 0, ra.Size())}, buf)
			return err
		},
	}
}

func contentIngest(e *env) *cli.Command {
	return &cli.Command{
		Name:  "ingest",
		Usage: "store stdin as a blob through ingest REF and print its digest",
		Description: `A ref names the write: an interrupted ingest is resumed by running the same
command again with the same input (the bytes already stored are skipped).`,
		ArgsUsage: "REF",
		Flags: []cli.Flag{
			&cli.Int64Flag{Name: "expected-size", Usage: "fail unless the input has this many bytes"},
			&cli.StringFlag{Name: "expected-digest", Usage: "fail unless the input has this digest"},
			&cli.StringSliceFlag{Name: "label", Usage: "label the blob with KEY=VALUE (repeatable); containerd.io/gc.root=<anything> keeps an unreferenced blob from garbage collection"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, "REF"); err != nil {
				return err
			}
			ref := c.Args().First()
			var desc ocispec.Descriptor
			if s := c.String("expected-digest"); s != "" {
				d, err := parseDigest(s)
				if err != nil {
					return err
				}
				desc.Digest = d
			}
			labels, err := parseLabels(c.StringSlice("label"), false)
			if err != nil {
				return err
			}
			if desc.Size = c.Int64("expected-size"); desc.Size < 0 {
				return fmt.Errorf("--expected-size %d: must not be negative", desc.Size)
			}
			cl, err := e.connect()
			if err != nil {
				return err
			}
			ctx := e.ctx(c)
			w, err := cl.ContentStore().Writer(ctx, content.WithRef(ref), content.WithDescriptor(desc))
			if err != nil {
				if errdefs.IsAlreadyExists(err) && desc.Digest != "" {
					fmt.Fprintln(e.stdout, desc.Digest)
					return nil
				}
				return named("ingest", ref, err)
			}
			defer w.Close()
			if err := client.Copy(ctx, w, e.stdin, desc.Size, desc.Digest, content.WithLabels(labels)); err != nil {
				return named("ingest", ref, err)
			}
			fmt.Fprintln(e.stdout, w.Digest())
			return nil
		},
	}
}

func contentActive(e *env) *cli.Command {
	return &cli.Command{
		Name:      "active",
		Usage:     "list ingests in progress matching any of the filters",
		ArgsUsage: "[FILTER...]",
		Flags:     listFlags(),
		Action: e.listAction(func(ctx context.Context, c *cli.Context, cl *client.Client) (listing, error) {
			sts, err := cl.ContentStore().ListStatuses(ctx, c.Args().Slice()...)
			if err != nil {
				return listing{}, err
			}
			sort.Slice(sts, func(i, j int) bool { return sts[i].Ref < sts[j].Ref })
			type ingest struct {
				Ref       string        `json:"ref"`
				Offset    int64         `json:"offset"`
				Total     int64         `json:"total"`
				Expected  digest.Digest `json:"expected,omitempty"`
				StartedAt string        `json:"started_at"`
				UpdatedAt string        `json:"updated_at"`
			}
			l := listing{header: []string{"REF", "OFFSET", "TOTAL", "EXPECTED", "AGE"}}
			js := []ingest{}
			for _, s := range sts {
				total, exp := "-", "-"
				if s.Total > 0 {
					total = strconv.FormatInt(s.Total, 10)
				}
				if s.Expected != "" {
					exp = s.Expected.String()
				}
				l.add(s.Ref, s.Ref, strconv.FormatInt(s.Offset, 10), total, exp, age(s.StartedAt))
				js = append(js, ingest{s.Ref, s.Offset, s.Total, s.Expected, timeString(s.StartedAt), timeString(s.UpdatedAt)})
			}
			l.json = js
			return l, nil
		}),
	}
}

func contentAbort(e *env) *cli.Command {
	return removeCommand(e, &cli.Command{
		Name:      "abort",
		Usage:     "discard ingests in progress",
		ArgsUsage: "REF...",
	}, func(ctx context.Context, c *cli.Context, cl *client.Client, ref string) error {
		return named("ingest", ref, cl.ContentStore().Abort(ctx, ref))
	})
}

func contentRm(e *env) *cli.Command {
	return removeCommand(e, &cli.Command{
		Name:      "rm",
		Aliases:   []string{"remove", "delete", "del"},
		Usage:     "remove blobs from the namespace",
		ArgsUsage: "DIGEST...",
	}, func(ctx context.Context, c *cli.Context, cl *client.Client, arg string) error {
		// A valid digest prints as the argument it was parsed from.
		d, err := parseDigest(arg)
		if err != nil {
			return err
		}
		return named("blob", d.String(), cl.ContentStore().Delete(ctx, d))
	})
}

func contentLabel(e *env) *cli.Command {
	return labelCommand(e, "blob", "DIGEST [KEY=VALUE...]",
		func(arg string) error {
			_, err := parseDigest(arg)
			return err
		},
		func(ctx context.Context, cl *client.Client, arg string, labels map[string]string) (map[string]string, error) {
			// The check has made arg a valid digest.
			d := digest.Digest(arg)
			cs := cl.ContentStore()
			return updateLabels(labels, func() (map[string]string, error) {
				info, err := cs.Info(ctx, d)
				return info.Labels, err
			}, func(set map[string]string, paths []string) (map[string]string, error) {
				info, err := cs.Update(ctx, content.Info{Digest: d, Labels: set}, paths...)
				return info.Labels, err
			})
		})
}

func contentPrune(e *env) *cli.Command {
	return &cli.Command{
		Name:  "prune",
		Usage: "remove the blobs of the namespace that no image uses, printing their digests",
		Description: `A blob is kept if an image's index or manifest refers to it (directly or
through other manifests), if a kept blob refers to it with a
containerd.io/gc.ref.content label, if it is labelled containerd.io/gc.root,
or if a lease holds it. Everything else in the namespace is removed.`,
		Flags: []cli.Flag{&cli.BoolFlag{Name: "dry-run", Usage: "print what would be removed, remove nothing"}},
		Action: func(c *cli.Context) error {
			cl, ctx, err := e.dial(c)
			if err != nil {
				return err
			}
			cs := cl.ContentStore()
			// List the blobs first: a blob stored after this is not
			// considered, so a concurrent pull loses nothing it wrote
			// after the list (what it wrote before should be leased).
			infos := map[digest.Digest]content.Info{}
			var order []digest.Digest
			if err := cs.Walk(ctx, func(i content.Info) error {
				infos[i.Digest] = i
				order = append(order, i.Digest)
				return nil
			}); err != nil {
				return err
			}
			imgs, err := cl.ImageService().List(ctx)
			if err != nil {
				return err
			}
			var w images.Contents
			for _, img := range imgs {
				if err := w.Walk(ctx, cs, img.Target); err != nil {
					return fmt.Errorf("image %q: %w", img.Name, err)
				}
			}
			keep := map[digest.Digest]bool{}
			var queue []digest.Digest
			mark := func(d digest.Digest) {
				if !keep[d] {
					keep[d] = true
					queue = append(queue, d)
				}
			}
			for d := range w.Blobs {
				mark(d)
			}
			for d, i := range infos {
				if _, ok := i.Labels[labels.GCRoot]; ok {
					mark(d)
				}
			}
			ls, err := cl.LeasesService().List(ctx)
			if err != nil {
				return err
			}
			for _, l := range ls {
				rs, err := cl.LeasesService().ListResources(ctx, l.ID)
				if err != nil {
					if errdefs.IsNotFound(err) {
						continue
					}
					return err
				}
				for _, r := range rs {
					if r.Type == "content" {
						mark(digest.Digest(r.ID))
					}
				}
			}
			for len(queue) > 0 {
				d := queue[0]
				queue = queue[1:]
				for k, v := range infos[d].Labels {
					if labels.IsGCRefContent(k) {
						mark(digest.Digest(v))
					}
				}
			}
			var errs []error
			for _, d := range order {
				if keep[d] {
					continue
				}
				if !c.Bool("dry-run") {
					if err := cs.Delete(ctx, d); err != nil {
						if !errdefs.IsNotFound(err) {
							errs = append(errs, named("blob", d.String(), err))
						}
						continue
					}
				}
				fmt.Fprintln(e.stdout, d)
			}
			return errors.Join(errs...)
		},
	}
}
