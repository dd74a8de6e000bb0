package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/hullrt/hull/client"
)

// connectFor is how most actions begin: the argument count is checked
// before hulld is dialled, so that a usage mistake is told as such whatever
// the state of the daemon. It returns the client and the context of the
// command's calls.
func (e *env) connectFor(c *cli.Context, min int, usage string) (*client.Client, context.Context, error) {
	if err := needArgs(c, min, usage); err != nil {
		return nil, nil, err
	}
	return e.dial(c)
}

// dial returns the client, dialled on first use, with the context of the
// command's calls, which every action that talks to hulld needs together.
func (e *env) dial(c *cli.Context) (*client.Client, context.Context, error) {
	cl, err := e.connect()
	return cl, e.ctx(c), err
}

// eachNamed dials hulld and does fn to every object named by c's
// arguments, going on after a failure as each does. The caller checks the
// arguments first, as some have flags to read before the daemon is dialled.
func (e *env) eachNamed(c *cli.Context, fn func(ctx context.Context, cl *client.Client, name string) error) error {
	cl, ctx, err := e.dial(c)
	if err != nil {
		return err
	}
	return each(c.Args().Slice(), func(name string) error { return fn(ctx, cl, name) })
}

// removeCommand gives cmd, an rm-like subcommand (its names, usage and
// flags set by the caller), the action every kind of object shares: each
// name is removed in turn and printed once gone, so that a script can tell
// which went when some fail. remove returns its errors naming the object.
func removeCommand(e *env, cmd *cli.Command, remove func(ctx context.Context, c *cli.Context, cl *client.Client, name string) error) *cli.Command {
	cmd.Action = func(c *cli.Context) error {
		if err := needArgs(c, 1, cmd.ArgsUsage); err != nil {
			return err
		}
		return e.eachNamed(c, func(ctx context.Context, cl *client.Client, name string) error {
			if err := remove(ctx, c, cl, name); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, name)
			return nil
		})
	}
	return cmd
}

// labelCommand builds the label subcommand of a kind of object: every kind
// takes NAME [KEY=VALUE...], where KEY or KEY= removes a label, and prints
// the labels the object has afterwards. check, if not nil, vets the name
// first, since every argument is read before hulld is dialled; set applies
// the labels the kind's own way and returns the object's labels; its errors
// are reported as about the kind's object of that name.
func labelCommand(e *env, kind, argsUsage string, check func(name string) error,
	set func(ctx context.Context, cl *client.Client, name string, labels map[string]string) (map[string]string, error)) *cli.Command {
	return &cli.Command{
		Name:      "label",
		Usage:     "set labels (KEY=VALUE) or remove them (KEY or KEY=) and print the result",
		ArgsUsage: argsUsage,
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, argsUsage); err != nil {
				return err
			}
			name := c.Args().First()
			if check != nil {
				if err := check(name); err != nil {
					return err
				}
			}
			labels, err := parseLabels(c.Args().Tail(), true)
			if err != nil {
				return err
			}
			cl, ctx, err := e.dial(c)
			if err != nil {
				return err
			}
			all, err := set(ctx, cl, name, labels)
			if err != nil {
				return named(kind, name, err)
			}
			return e.printLabels(all)
		},
	}
}

// updateLabels applies labels (an empty value removes the key) to an
// object whose store updates by field paths, and returns its labels. With
// no labels it only reads the object, since an update naming no fields
// would replace all of them.
func updateLabels(labels map[string]string, get func() (map[string]string, error),
	update func(set map[string]string, paths []string) (map[string]string, error)) (map[string]string, error) {
	set, paths := labelUpdate(labels)
	if len(paths) == 0 {
		return get()
	}
	return update(set, paths)
}

// listAction is the action of a listing command: list gathers the objects
// (most commands take their arguments as filters) and the listing is
// printed as -q and --format ask.
func (e *env) listAction(list func(ctx context.Context, c *cli.Context, cl *client.Client) (listing, error)) cli.ActionFunc {
	return func(c *cli.Context) error {
		cl, ctx, err := e.dial(c)
		if err != nil {
			return err
		}
		l, err := list(ctx, c, cl)
		if err != nil {
			return err
		}
		return e.print(c, l)
	}
}

// add puts one object in both the table and the -q form of the listing, so
// that the two never disagree on what is listed.
func (l *listing) add(id string, row ...string) {
	l.ids = append(l.ids, id)
	l.rows = append(l.rows, row)
}
