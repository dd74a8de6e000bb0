package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/containerd/errdefs"
	"github.com/urfave/cli/v2"

	"github.com/hullrt/hull/client"
)

func containersCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:    "containers",
		Aliases: []string{"container", "c"},
		Usage:   "manage container records",
		Subcommands: []*cli.Command{
			containersCreate(e), containersLs(e), containersInfo(e), containersRm(e), containersLabel(e),
		},
	}
}

func containersCreate(e *env) *cli.Command {
	return &cli.Command{
		Name:      "create",
		Usage:     "make a container from an image without starting it (tasks start starts it); prints its id",
		ArgsUsage: "IMAGE ID [COMMAND [ARG...]]  or  --name ID IMAGE [COMMAND [ARG...]]",
		Description: `create takes ctr's form, IMAGE ID [COMMAND...], or with --name ID or
--generate-id IMAGE [COMMAND...]. The image must be in the namespace (run
pulls a missing one).`,
		Flags: containerFlags(),
		Action: func(c *cli.Context) error {
			cs, err := parseContainerFlags(c, ctrForm)
			if err != nil {
				return err
			}
			cl, err := e.connect()
			if err != nil {
				return err
			}
			if _, err := e.createContainer(e.ctx(c), c, cl, cs); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, cs.id)
			return nil
		},
	}
}

func containersLs(e *env) *cli.Command {
	return &cli.Command{
		Name:      "ls",
		Aliases:   []string{"list"},
		Usage:     "list containers matching any of the filters",
		ArgsUsage: "[FILTER...]",
		Flags:     listFlags(),
		Action: e.listAction(func(ctx context.Context, c *cli.Context, cl *client.Client) (listing, error) {
			recs, err := cl.ContainerService().List(ctx, c.Args().Slice()...)
			if err != nil {
				return listing{}, err
			}
			sort.Slice(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })
			type ctr struct {
				ID          string            `json:"id"`
				Image       string            `json:"image"`
				Runtime     string            `json:"runtime"`
				Sandbox     string            `json:"sandbox,omitempty"`
				Snapshotter string            `json:"snapshotter"`
				SnapshotKey string            `json:"snapshot_key"`
				Labels      map[string]string `json:"labels"`
				CreatedAt   string            `json:"created_at"`
			}
			// SANDBOX is the pod a CRI container belongs to (the
			// pause container's id; the pause container names itself).
			l := listing{header: []string{"CONTAINER", "IMAGE", "RUNTIME", "SANDBOX"}}
			js := []ctr{}
			for _, r := range recs {
				img := r.Image
				if img == "" {
					img = "-"
				}
				sandbox := r.SandboxID
				if sandbox == "" {
					sandbox = "-"
				}
				l.add(r.ID, r.ID, img, r.Runtime.Name, sandbox)
				js = append(js, ctr{r.ID, r.Image, r.Runtime.Name, r.SandboxID, r.Snapshotter, r.SnapshotKey, nonNil(r.Labels), timeString(r.CreatedAt)})
			}
			l.json = js
			return l, nil
		}),
	}
}

func containersInfo(e *env) *cli.Command {
	return &cli.Command{
		Name:      "info",
		Usage:     "print a container's record as JSON, its spec decoded",
		ArgsUsage: "CONTAINER",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "spec", Usage: "print only the OCI runtime spec"}},
		Action: func(c *cli.Context) error {
			cl, ctx, err := e.connectFor(c, 1, "CONTAINER")
			if err != nil {
				return err
			}
			id := c.Args().First()
			r, err := cl.ContainerService().Get(ctx, id)
			if err != nil {
				return named("container", id, err)
			}
			// The spec is JSON inside the Any; shown as such rather
			// than as base64.
			var spec json.RawMessage
			if r.Spec != nil && json.Valid(r.Spec.GetValue()) {
				spec = r.Spec.GetValue()
			}
			if c.Bool("spec") {
				if spec == nil {
					return fmt.Errorf("container %q has no JSON spec", id)
				}
				return e.printJSON(spec)
			}
			exts := map[string]string{}
			for k, v := range r.Extensions {
				exts[k] = v.GetTypeUrl()
			}
			runtimeOpts := ""
			if r.Runtime.Options != nil {
				runtimeOpts = r.Runtime.Options.GetTypeUrl()
			}
			return e.printJSON(map[string]any{
				"id": r.ID, "labels": nonNil(r.Labels), "image": r.Image,
				"runtime":     map[string]string{"name": r.Runtime.Name, "options_type": runtimeOpts},
				"snapshotter": r.Snapshotter, "snapshot_key": r.SnapshotKey, "sandbox": r.SandboxID,
				"created_at": timeString(r.CreatedAt), "updated_at": timeString(r.UpdatedAt),
				"extensions": exts, "spec": spec,
			})
		},
	}
}

func containersRm(e *env) *cli.Command {
	return removeCommand(e, &cli.Command{
		Name:      "rm",
		Aliases:   []string{"remove", "delete", "del"},
		Usage:     "delete containers, their root filesystem snapshots and the default log files run -d gave them (never a --log-file)",
		ArgsUsage: "CONTAINER...",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "keep-snapshot", Usage: "leave the root filesystem snapshot"},
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "kill and delete the container's task first"},
		},
	}, func(ctx context.Context, c *cli.Context, cl *client.Client, id string) error {
		var opts []client.DeleteOpts
		if !c.Bool("keep-snapshot") {
			opts = append(opts, client.WithSnapshotCleanup)
		}
		ct, err := cl.LoadContainer(ctx, id)
		if err != nil {
			return named("container", id, err)
		}
		if c.Bool("force") {
			if t, err := ct.Task(ctx, nil); err == nil {
				if _, err := t.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
					return named("task", id, err)
				}
			} else if !errdefs.IsNotFound(err) {
				return named("task", id, err)
			}
		}
		labels, err := ct.Labels(ctx)
		if err != nil {
			return named("container", id, err)
		}
		if err := ct.Delete(ctx, opts...); err != nil {
			if errdefs.IsFailedPrecondition(err) {
				return fmt.Errorf("%w (delete it with tasks rm, or use --force)", named("container", id, err))
			}
			return named("container", id, err)
		}
		return e.removeLog(ctx, cl, id, labels)
	})
}

func containersLabel(e *env) *cli.Command {
	return labelCommand(e, "container", "CONTAINER [KEY=VALUE...]", nil,
		func(ctx context.Context, cl *client.Client, id string, labels map[string]string) (map[string]string, error) {
			ct, err := cl.LoadContainer(ctx, id)
			if err != nil {
				return nil, err
			}
			return ct.SetLabels(ctx, labels)
		})
}
