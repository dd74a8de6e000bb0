package main

import (
	"context"
	"sort"

	"github.com/urfave/cli/v2"

	"github.com/hullrt/hull/client"
)

func namespacesCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:    "namespaces",
		Aliases: []string{"namespace", "ns"},
		Usage:   "manage namespaces",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a namespace",
				ArgsUsage: "NAME [KEY=VALUE...]",
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 1, "NAME [KEY=VALUE...]"); err != nil {
						return err
					}
					name := c.Args().First()
					labels, err := parseLabels(c.Args().Tail(), false)
					if err != nil {
						return err
					}
					cl, err := e.connect()
					if err != nil {
						return err
					}
					return named("namespace", name, cl.NamespaceService().Create(e.ctx(c), name, labels))
				},
			},
			{
				Name:    "ls",
				Aliases: []string{"list"},
				Usage:   "list namespaces",
				Flags:   listFlags(),
				Action: e.listAction(func(ctx context.Context, c *cli.Context, cl *client.Client) (listing, error) {
					ns := cl.NamespaceService()
					names, err := ns.List(ctx)
					if err != nil {
						return listing{}, err
					}
					sort.Strings(names)
					type namespace struct {
						Name   string            `json:"name"`
						Labels map[string]string `json:"labels"`
					}
					l := listing{header: []string{"NAME", "LABELS"}, ids: names}
					js := []namespace{}
					for _, n := range names {
						var labels map[string]string
						if !c.Bool("quiet") {
							if labels, err = ns.Labels(ctx, n); err != nil {
								continue // removed since List
							}
						}
						l.rows = append(l.rows, []string{n, labelString(labels)})
						js = append(js, namespace{n, nonNil(labels)})
					}
					l.json = js
					return l, nil
				}),
			},
			removeCommand(e, &cli.Command{
				Name:      "rm",
				Aliases:   []string{"remove", "delete"},
				Usage:     "remove empty namespaces",
				ArgsUsage: "NAME...",
			}, func(ctx context.Context, c *cli.Context, cl *client.Client, name string) error {
				return named("namespace", name, cl.NamespaceService().Delete(ctx, name))
			}),
			labelCommand(e, "namespace", "NAME [KEY=VALUE...]", nil,
				func(ctx context.Context, cl *client.Client, name string, labels map[string]string) (map[string]string, error) {
					ns := cl.NamespaceService()
					keys := make([]string, 0, len(labels))
					for k := range labels {
						keys = append(keys, k)
					}
					sort.Strings(keys)
					for _, k := range keys {
						if err := ns.SetLabel(ctx, name, k, labels[k]); err != nil {
							return nil, err
						}
					}
					return ns.Labels(ctx, name)
				}),
		},
	}
}
