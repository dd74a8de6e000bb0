package main

import (
	"fmt"
	"sort"

	"github.com/urfave/cli/v2"
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
				Action: func(c *cli.Context) error {
					cl, err := e.connect()
					if err != nil {
						return err
					}
					ctx := e.ctx(c)
					ns := cl.NamespaceService()
					names, err := ns.List(ctx)
					if err != nil {
						return err
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
					return e.print(c, l)
				},
			},
			{
				Name:      "rm",
				Aliases:   []string{"remove", "delete"},
				Usage:     "remove empty namespaces",
				ArgsUsage: "NAME...",
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 1, "NAME..."); err != nil {
						return err
					}
					cl, err := e.connect()
					if err != nil {
						return err
					}
					return each(c.Args().Slice(), func(name string) error {
						if err := cl.NamespaceService().Delete(e.ctx(c), name); err != nil {
							return named("namespace", name, err)
						}
						fmt.Fprintln(e.stdout, name)
						return nil
					})
				},
			},
			{
				Name:      "label",
				Usage:     "set labels (KEY=VALUE) or remove them (KEY or KEY=) and print the result",
				ArgsUsage: "NAME [KEY=VALUE...]",
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 1, "NAME [KEY=VALUE...]"); err != nil {
						return err
					}
					name := c.Args().First()
					labels, err := parseLabels(c.Args().Tail(), true)
					if err != nil {
						return err
					}
					cl, err := e.connect()
					if err != nil {
						return err
					}
					ctx := e.ctx(c)
					ns := cl.NamespaceService()
					keys := make([]string, 0, len(labels))
					for k := range labels {
						keys = append(keys, k)
					}
					sort.Strings(keys)
					for _, k := range keys {
						if err := ns.SetLabel(ctx, name, k, labels[k]); err != nil {
							return named("namespace", name, err)
						}
					}
					got, err := ns.Labels(ctx, name)
					if err != nil {
						return named("namespace", name, err)
					}
					return e.printLabels(got)
				},
			},
		},
	}
}
