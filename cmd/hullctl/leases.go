package main

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/core/leases"
)

func leasesCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:    "leases",
		Aliases: []string{"lease"},
		Usage:   "manage leases, which keep content from garbage collection",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a lease and print its ID",
				ArgsUsage: "[KEY=VALUE...]",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "id", Usage: "the lease's ID (default: chosen by the daemon)"},
					&cli.DurationFlag{Name: "expires", Aliases: []string{"x"}, Value: 24 * time.Hour, Usage: "lifetime; 0 for none"},
				},
				Action: func(c *cli.Context) error {
					labels, err := parseLabels(c.Args().Slice(), false)
					if err != nil {
						return err
					}
					if d := c.Duration("expires"); d > 0 {
						labels[leases.ExpireLabel] = time.Now().Add(d).UTC().Format(time.RFC3339)
					} else if d < 0 {
						return fmt.Errorf("--expires %s: must not be negative", d)
					}
					cl, err := e.connect()
					if err != nil {
						return err
					}
					l, err := cl.LeasesService().Create(e.ctx(c), c.String("id"), labels)
					if err != nil {
						return named("lease", c.String("id"), err)
					}
					fmt.Fprintln(e.stdout, l.ID)
					return nil
				},
			},
			{
				Name:      "ls",
				Aliases:   []string{"list"},
				Usage:     "list leases matching any of the filters",
				ArgsUsage: "[FILTER...]",
				Flags:     listFlags(),
				Action: e.listAction(func(ctx context.Context, c *cli.Context, cl *client.Client) (listing, error) {
					ls, err := cl.LeasesService().List(ctx, c.Args().Slice()...)
					if err != nil {
						return listing{}, err
					}
					type lease struct {
						ID        string            `json:"id"`
						CreatedAt string            `json:"created_at"`
						Labels    map[string]string `json:"labels"`
					}
					l := listing{header: []string{"ID", "CREATED AT", "LABELS"}}
					js := []lease{}
					for _, ls := range ls {
						l.add(ls.ID, ls.ID, timeString(ls.CreatedAt), labelString(ls.Labels))
						js = append(js, lease{ls.ID, timeString(ls.CreatedAt), nonNil(ls.Labels)})
					}
					l.json = js
					return l, nil
				}),
			},
			removeCommand(e, &cli.Command{
				Name:      "rm",
				Aliases:   []string{"remove", "delete"},
				Usage:     "remove leases",
				ArgsUsage: "ID...",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "sync", Usage: "wait for the garbage collection that frees what they held"}},
			}, func(ctx context.Context, c *cli.Context, cl *client.Client, id string) error {
				return named("lease", id, cl.LeasesService().Delete(ctx, id, c.Bool("sync")))
			}),
		},
	}
}

func gcCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "gc",
		Usage: "run a garbage collection now and wait for it",
		Action: func(c *cli.Context) error {
			cl, err := e.connect()
			if err != nil {
				return err
			}
			if err := cl.GarbageCollect(e.ctx(c)); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, "garbage collection done")
			return nil
		},
	}
}
