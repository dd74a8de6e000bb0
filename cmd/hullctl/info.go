package main

import (
	"context"
	"fmt"
	"runtime"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/internal/version"
)

func versionCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the client's and the server's versions",
		Action: func(c *cli.Context) error {
			cl, ctx, err := e.dial(c)
			if err != nil {
				return err
			}
			v, si, err := serverIdentity(ctx, cl)
			if err != nil {
				return err
			}
			if e.format == "json" {
				return e.printJSON(map[string]any{
					"client": map[string]string{"version": version.Version, "revision": version.Revision, "go_version": runtime.Version()},
					"server": map[string]string{"version": v.Version, "revision": v.Revision, "uuid": si.UUID},
				})
			}
			fmt.Fprintf(e.stdout, "Client:\n  Version:  %s\n  Revision: %s\n  Go version: %s\n\n", version.Version, version.Revision, runtime.Version())
			fmt.Fprintf(e.stdout, "Server:\n  Version:  %s\n  Revision: %s\n  UUID: %s\n", v.Version, v.Revision, si.UUID)
			return nil
		},
	}
}

// serverIdentity asks hulld who it is: its version and its instance, which
// version and info both begin with.
func serverIdentity(ctx context.Context, cl *client.Client) (client.Version, client.ServerInfo, error) {
	v, err := cl.Version(ctx)
	if err != nil {
		return client.Version{}, client.ServerInfo{}, err
	}
	si, err := cl.Server(ctx)
	return v, si, err
}

// pluginStatus is ctr's STATUS column: skip for plugins that chose not to
// run, error for those that failed.
func pluginStatus(p client.PluginInfo) string {
	switch {
	case p.InitErr == "":
		return "ok"
	case p.Skipped():
		return "skip"
	}
	return "error"
}

func infoCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "info",
		Usage: "print the server's identity and a summary of its plugins",
		Action: func(c *cli.Context) error {
			cl, ctx, err := e.dial(c)
			if err != nil {
				return err
			}
			v, si, err := serverIdentity(ctx, cl)
			if err != nil {
				return err
			}
			ps, err := cl.Plugins(ctx)
			if err != nil {
				return err
			}
			counts := map[string]int{}
			var failed []client.PluginInfo
			for _, p := range ps {
				st := pluginStatus(p)
				counts[st]++
				if st != "ok" {
					failed = append(failed, p)
				}
			}
			if e.format == "json" {
				type notRunning struct {
					Type   string `json:"type"`
					ID     string `json:"id"`
					Status string `json:"status"`
					Error  string `json:"error"`
				}
				nr := []notRunning{}
				for _, p := range failed {
					nr = append(nr, notRunning{p.Type, p.ID, pluginStatus(p), p.InitErr})
				}
				return e.printJSON(map[string]any{
					"version": v.Version, "revision": v.Revision, "uuid": si.UUID, "pid": si.Pid, "pidns": si.Pidns,
					"address": cl.Address(), "plugins": map[string]int{"total": len(ps), "ok": counts["ok"], "skip": counts["skip"], "error": counts["error"]},
					"not_running": nr,
				})
			}
			fmt.Fprintf(e.stdout, "Server:\n  Address:  %s\n  Version:  %s\n  Revision: %s\n  UUID:     %s\n  PID:      %d\n  PID namespace: %d\n",
				cl.Address(), v.Version, v.Revision, si.UUID, si.Pid, si.Pidns)
			fmt.Fprintf(e.stdout, "Plugins: %d (%d ok, %d skipped, %d failed)\n", len(ps), counts["ok"], counts["skip"], counts["error"])
			for _, p := range failed {
				fmt.Fprintf(e.stdout, "  %s %s.%s: %s\n", pluginStatus(p), p.Type, p.ID, p.InitErr)
			}
			return nil
		},
	}
}

func pluginsCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:    "plugins",
		Aliases: []string{"plugin"},
		Usage:   "inspect the server's plugins",
		Subcommands: []*cli.Command{{
			Name:      "ls",
			Aliases:   []string{"list"},
			Usage:     "list plugins matching any of the filters",
			ArgsUsage: "[FILTER...]",
			Flags:     listFlags(),
			Action: e.listAction(func(ctx context.Context, c *cli.Context, cl *client.Client) (listing, error) {
				ps, err := cl.Plugins(ctx, c.Args().Slice()...)
				if err != nil {
					return listing{}, err
				}
				type plugin struct {
					Type         string            `json:"type"`
					ID           string            `json:"id"`
					Requires     []string          `json:"requires"`
					Platforms    []string          `json:"platforms"`
					Exports      map[string]string `json:"exports"`
					Capabilities []string          `json:"capabilities"`
					Status       string            `json:"status"`
					Error        string            `json:"error,omitempty"`
				}
				l := listing{header: []string{"TYPE", "ID", "PLATFORMS", "STATUS"}}
				js := []plugin{}
				for _, p := range ps {
					plat := "-"
					if len(p.Platforms) > 0 {
						plat = strings.Join(p.Platforms, ",")
					}
					l.rows = append(l.rows, []string{p.Type, p.ID, plat, pluginStatus(p)})
					l.ids = append(l.ids, p.Type+"."+p.ID)
					js = append(js, plugin{p.Type, p.ID, nonNilSlice(p.Requires), nonNilSlice(p.Platforms), nonNil(p.Exports), nonNilSlice(p.Capabilities), pluginStatus(p), p.InitErr})
				}
				l.json = js
				return l, nil
			}),
		}},
	}
}

func nonNilSlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
