package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/hullrt/hull/core/diff"
	"github.com/hullrt/hull/core/labels"
	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/snapshots"
)

func snapshotterFlag() cli.Flag {
	return &cli.StringFlag{Name: "snapshotter", Usage: "snapshotter to use (default: hulld's default)", EnvVars: []string{"HULL_SNAPSHOTTER", "CONTAINERD_SNAPSHOTTER"}}
}

// snapshotCmd builds a snapshots subcommand with the snapshotter flag.
func snapshotCmd(e *env, name, usage, args string, min int, flags []cli.Flag, fn func(c *cli.Context, sn snapshots.Snapshotter, ctx context.Context) error) *cli.Command {
	return &cli.Command{
		Name: name, Usage: usage, ArgsUsage: args,
		Flags: append([]cli.Flag{snapshotterFlag()}, flags...),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, min, args); err != nil {
				return err
			}
			cl, err := e.connect()
			if err != nil {
				return err
			}
			return fn(c, cl.SnapshotService(c.String("snapshotter")), e.ctx(c))
		},
	}
}

func printMounts(e *env, ms []mount.Mount) error {
	if e.format == "json" {
		return e.printJSON(ms)
	}
	for _, m := range ms {
		fmt.Fprintf(e.stdout, "%s %s %s\n", m.Type, m.Source, strings.Join(m.Options, ","))
	}
	return nil
}

// Snapshots made from the command line carry a gc.root label: the user
// manages them, and removes them with snapshots rm, instead of garbage
// collection taking them for want of a lease.
func snapshotsCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:    "snapshots",
		Aliases: []string{"snapshot", "s"},
		Usage:   "manage snapshots",
		Subcommands: []*cli.Command{
			snapshotCmd(e, "ls", "list snapshots", "[FILTER...]", 0, listFlags(), func(c *cli.Context, sn snapshots.Snapshotter, ctx context.Context) error {
				var infos []snapshots.Info
				if err := sn.Walk(ctx, func(_ context.Context, i snapshots.Info) error { infos = append(infos, i); return nil }, c.Args().Slice()...); err != nil {
					return err
				}
				sort.Slice(infos, func(i, j int) bool { return infos[i].Name < infos[j].Name })
				l := listing{header: []string{"KEY", "PARENT", "KIND"}}
				type row struct {
					Key    string            `json:"key"`
					Parent string            `json:"parent"`
					Kind   string            `json:"kind"`
					Labels map[string]string `json:"labels"`
				}
				js := []row{}
				for _, i := range infos {
					l.add(i.Name, i.Name, i.Parent, i.Kind.String())
					js = append(js, row{i.Name, i.Parent, i.Kind.String(), nonNil(i.Labels)})
				}
				l.json = js
				return e.print(c, l)
			}),
			snapshotCmd(e, "tree", "show snapshots as a tree of parents and children", "", 0, nil, func(c *cli.Context, sn snapshots.Snapshotter, ctx context.Context) error {
				children := map[string][]string{}
				if err := sn.Walk(ctx, func(_ context.Context, i snapshots.Info) error {
					children[i.Parent] = append(children[i.Parent], i.Name)
					return nil
				}); err != nil {
					return err
				}
				var show func(key string, depth int)
				show = func(key string, depth int) {
					kids := children[key]
					sort.Strings(kids)
					for _, k := range kids {
						fmt.Fprintf(e.stdout, "%s%s\n", strings.Repeat("  ", depth), k)
						show(k, depth+1)
					}
				}
				show("", 0)
				return nil
			}),
			snapshotCmd(e, "info", "show a snapshot's record", "KEY", 1, nil, func(c *cli.Context, sn snapshots.Snapshotter, ctx context.Context) error {
				i, err := sn.Stat(ctx, c.Args().First())
				if err != nil {
					return err
				}
				return e.printJSON(map[string]any{"name": i.Name, "parent": i.Parent, "kind": i.Kind.String(), "labels": nonNil(i.Labels), "created": timeString(i.Created), "updated": timeString(i.Updated)})
			}),
			snapshotCmd(e, "mounts", "print the mounts of an active snapshot or view", "KEY", 1, nil, func(c *cli.Context, sn snapshots.Snapshotter, ctx context.Context) error {
				ms, err := sn.Mounts(ctx, c.Args().First())
				if err != nil {
					return err
				}
				return printMounts(e, ms)
			}),
			snapshotCmd(e, "usage", "show the disk snapshots use (all if none named)", "[KEY...]", 0, nil, func(c *cli.Context, sn snapshots.Snapshotter, ctx context.Context) error {
				keys := c.Args().Slice()
				if len(keys) == 0 {
					if err := sn.Walk(ctx, func(_ context.Context, i snapshots.Info) error { keys = append(keys, i.Name); return nil }); err != nil {
						return err
					}
				}
				l := listing{header: []string{"KEY", "SIZE", "INODES"}}
				var js []map[string]any
				for _, k := range keys {
					u, err := sn.Usage(ctx, k)
					if err != nil {
						return err
					}
					l.add(k, k, humanSize(u.Size), fmt.Sprint(u.Inodes))
					js = append(js, map[string]any{"key": k, "size": u.Size, "inodes": u.Inodes})
				}
				l.json = js
				return e.print(c, l)
			}),
			snapshotCmd(e, "prepare", "make an active snapshot of PARENT (or an empty one) and print its mounts", "KEY [PARENT]", 1, nil, func(c *cli.Context, sn snapshots.Snapshotter, ctx context.Context) error {
				ms, err := sn.Prepare(ctx, c.Args().First(), c.Args().Get(1), gcRoot())
				if err != nil {
					return err
				}
				return printMounts(e, ms)
			}),
			snapshotCmd(e, "view", "make a read-only view of PARENT and print its mounts", "KEY PARENT", 2, nil, func(c *cli.Context, sn snapshots.Snapshotter, ctx context.Context) error {
				ms, err := sn.View(ctx, c.Args().First(), c.Args().Get(1), gcRoot())
				if err != nil {
					return err
				}
				return printMounts(e, ms)
			}),
			snapshotCmd(e, "commit", "commit active snapshot KEY as NAME", "NAME KEY", 2, nil, func(c *cli.Context, sn snapshots.Snapshotter, ctx context.Context) error {
				return sn.Commit(ctx, c.Args().First(), c.Args().Get(1), gcRoot())
			}),
			snapshotCmd(e, "rm", "remove snapshots", "KEY...", 1, nil, func(c *cli.Context, sn snapshots.Snapshotter, ctx context.Context) error {
				return each(c.Args().Slice(), func(k string) error {
					if err := sn.Remove(ctx, k); err != nil {
						return named("snapshot", k, err)
					}
					fmt.Fprintln(e.stdout, k)
					return nil
				})
			}),
			{
				Name:      "diff",
				Usage:     "make a layer of the changes in snapshot KEY over its parent (or over PARENT) and print its descriptor",
				ArgsUsage: "KEY [PARENT]",
				Flags: []cli.Flag{snapshotterFlag(),
					&cli.StringFlag{Name: "media-type", Usage: "layer media type", Value: "application/vnd.oci.image.layer.v1.tar+gzip"},
				},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 1, "KEY [PARENT]"); err != nil {
						return err
					}
					cl, err := e.connect()
					if err != nil {
						return err
					}
					ctx, done, err := cl.WithLease(e.ctx(c))
					if err != nil {
						return err
					}
					defer done(context.WithoutCancel(ctx))
					sn := cl.SnapshotService(c.String("snapshotter"))
					key := c.Args().First()
					info, err := sn.Stat(ctx, key)
					if err != nil {
						return err
					}
					parent := c.Args().Get(1)
					if parent == "" {
						parent = info.Parent
					}
					var upper, lower []mount.Mount
					tmp := fmt.Sprintf("hullctl-diff-%d", time.Now().UnixNano())
					if info.Kind == snapshots.KindActive {
						upper, err = sn.Mounts(ctx, key)
					} else {
						upper, err = sn.View(ctx, tmp+"-upper", key)
						defer sn.Remove(ctx, tmp+"-upper")
					}
					if err != nil {
						return err
					}
					if parent != "" {
						lower, err = sn.View(ctx, tmp+"-lower", parent)
						if err != nil {
							return err
						}
						defer sn.Remove(ctx, tmp+"-lower")
					}
					desc, err := cl.DiffService().Compare(ctx, lower, upper, diff.WithMediaType(c.String("media-type")),
						diff.WithLabels(map[string]string{labels.GCRoot: time.Now().UTC().Format(time.RFC3339)}))
					if err != nil {
						return err
					}
					return e.printJSON(desc)
				},
			},
			snapshotCmd(e, "label", "set labels (KEY=VALUE) or remove them (KEY or KEY=) and print the result", "SNAPSHOT [KEY=VALUE...]", 1, nil, func(c *cli.Context, sn snapshots.Snapshotter, ctx context.Context) error {
				labels, err := parseLabels(c.Args().Tail(), true)
				if err != nil {
					return err
				}
				// Not labelCommand: the labels are read after hulld is
				// dialled here, and the snapshotter comes from a flag.
				key := c.Args().First()
				all, err := updateLabels(labels, func() (map[string]string, error) {
					info, err := sn.Stat(ctx, key)
					return info.Labels, err
				}, func(set map[string]string, paths []string) (map[string]string, error) {
					info, err := sn.Update(ctx, snapshots.Info{Name: key, Labels: set}, paths...)
					return info.Labels, err
				})
				if err != nil {
					return named("snapshot", key, err)
				}
				return e.printLabels(all)
			}),
		},
	}
}
