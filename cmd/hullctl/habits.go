package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/core/reference"
)

// The commands here are the ones ctr's and nerdctl's users type first
// (pull, push, images, ps, exec, logs, rm, rmi): short forms of the
// grouped commands, with the same flags and behaviour.

// logLabel is the container label that names the file:// URI a detached
// container's stdout and stderr go to, so that logs finds it whoever ran
// the container and whatever --log-file said.
const logLabel = "io.hull.log-uri"

// fallbackLogDir is where detached containers' logs go when the daemon
// does not say where its state directory is (containerd's introspection
// exports nothing): the default state directory of a packaged hulld.
const fallbackLogDir = "/run/hull/logs"

// logURI is the file:// URI of path, as the shim takes it.
func logURI(path string) string {
	return (&url.URL{Scheme: "file", Path: path}).String()
}

// logFileOf returns the log file a container's labels name, if any.
func logFileOf(labels map[string]string) (string, bool) {
	u, err := url.Parse(labels[logLabel])
	if err != nil || u.Scheme != "file" || !filepath.IsAbs(u.Path) {
		return "", false
	}
	return filepath.Clean(u.Path), true
}

// logDir is the directory of default log files: logs/ under hulld's state
// directory, which its introspection plugin exports, so that they live
// and go with the rest of hulld's runtime state; fallbackLogDir when the
// daemon does not tell. Asked once per run.
func (e *env) logDir(ctx context.Context, cl *client.Client) (string, error) {
	if e.logRoot != "" {
		return e.logRoot, nil
	}
	ps, err := cl.Plugins(ctx, "id==introspection")
	if err != nil {
		return "", err
	}
	e.logRoot = fallbackLogDir
	for _, p := range ps {
		if st := p.Exports["state"]; st != "" && filepath.IsAbs(st) {
			e.logRoot = filepath.Join(st, "logs")
			break
		}
	}
	return e.logRoot, nil
}

// defaultLogPath is where run -d puts container id's log in the current
// namespace.
func (e *env) defaultLogPath(ctx context.Context, cl *client.Client, id string) (string, error) {
	dir, err := e.logDir(ctx, cl)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, e.namespace, id+".log"), nil
}

// logPathFor is the log file of a container that run -d makes: --log-file
// (absolute, as checkLogFile made sure), else the default one.
func (e *env) logPathFor(c *cli.Context, cl *client.Client, id string) (string, error) {
	if f := c.String("log-file"); f != "" {
		return filepath.Clean(f), nil
	}
	return e.defaultLogPath(e.ctx(c), cl, id)
}

// removeLog deletes a container's log file if it is the default one:
// a --log-file the user named is theirs to keep, and a label naming any
// other file must not make rm delete it.
func (e *env) removeLog(ctx context.Context, cl *client.Client, id string, labels map[string]string) error {
	path, ok := logFileOf(labels)
	if !ok {
		return nil
	}
	def, err := e.defaultLogPath(ctx, cl, id)
	if err != nil || path != def {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("log of container %q: %w", id, err)
	}
	return nil
}

func logsCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "logs",
		Usage:     "print the output of a container started with run -d",
		ArgsUsage: "CONTAINER",
		Description: `logs prints the log file that run -d gave the container (its stdout and
stderr, interleaved as written). With --follow it keeps printing what is
added until the container's task exits or hullctl is interrupted.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new output until the container exits"},
		},
		Action: func(c *cli.Context) error {
			cl, ctx, err := e.connectFor(c, 1, "CONTAINER")
			if err != nil {
				return err
			}
			id := c.Args().First()
			ct, err := cl.LoadContainer(ctx, id)
			if err != nil {
				return named("container", id, err)
			}
			labels, err := ct.Labels(ctx)
			if err != nil {
				return named("container", id, err)
			}
			path, ok := logFileOf(labels)
			if !ok {
				return fmt.Errorf("container %q has no log file: only containers started with hullctl run -d have one: %w", id, errdefs.ErrNotFound)
			}
			f, err := os.Open(path)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("log file %s of container %q does not exist (the task never wrote it, or it was removed): %w", path, id, errdefs.ErrNotFound)
				}
				return fmt.Errorf("log of container %q: %w", id, err)
			}
			defer f.Close()
			if !c.Bool("follow") {
				_, err = io.Copy(e.stdout, f)
				return err
			}
			return e.follows(ctx, ct, f)
		},
	}
}

// followPoll is how often logs --follow looks for new output: the process
// writes the file itself, so there is nothing to be told by.
const followPoll = 200 * time.Millisecond

// follows copies f to stdout as it grows until ct's task exits (or there
// is none) or ctx ends; what the process wrote before its exit is all in
// the file by then, so one last copy gets the rest.
func (e *env) follows(ctx context.Context, ct *client.Container, f *os.File) error {
	if _, err := io.Copy(e.stdout, f); err != nil {
		return err
	}
	t, err := ct.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return named("task", ct.ID(), err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	exited, err := t.Wait(wctx)
	if err != nil {
		return named("task", ct.ID(), err)
	}
	tick := time.NewTicker(followPoll)
	defer tick.Stop()
	for {
		select {
		case <-exited:
			_, err := io.Copy(e.stdout, f)
			return err
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if _, err := io.Copy(e.stdout, f); err != nil {
				return err
			}
		}
	}
}

func psCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "ps",
		Usage: "list containers with their tasks' status (running ones; --all for every one)",
		Flags: append(listFlags(), &cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "list containers without a running task too"}),
		Action: e.listAction(func(ctx context.Context, c *cli.Context, cl *client.Client) (listing, error) {
			if c.Args().Present() {
				return listing{}, fmt.Errorf("usage: %s [--all] (no arguments)", c.Command.HelpName)
			}
			recs, err := cl.ContainerService().List(ctx)
			if err != nil {
				return listing{}, err
			}
			ts, err := cl.Tasks(ctx, "")
			if err != nil {
				return listing{}, err
			}
			tasks := map[string]client.TaskState{}
			for _, t := range ts {
				if t.ExecID == "" {
					tasks[t.ContainerID] = t
				}
			}
			sort.Slice(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })
			type psEntry struct {
				ID        string  `json:"id"`
				Image     string  `json:"image"`
				Command   string  `json:"command"`
				CreatedAt string  `json:"created_at"`
				Status    string  `json:"status"`
				Pid       uint32  `json:"pid,omitempty"`
				ExitCode  *uint32 `json:"exit_code,omitempty"`
			}
			l := listing{header: []string{"CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS"}}
			js := []psEntry{}
			for _, r := range recs {
				t, hasTask := tasks[r.ID]
				status := "created"
				var exit *uint32
				if hasTask {
					status = string(t.Status.Status)
					if t.Status.Status == client.Stopped {
						code := t.Status.ExitStatus
						exit = &code
						status = fmt.Sprintf("exited (%d)", code)
					}
				}
				if !c.Bool("all") && (!hasTask || t.Status.Status != client.Running) {
					continue
				}
				command := commandOf(r.Spec.GetValue())
				img := r.Image
				if img == "" {
					img = "-"
				}
				l.add(r.ID, r.ID, img, quoteShort(command, 30), age(r.CreatedAt)+" ago", status)
				js = append(js, psEntry{r.ID, r.Image, command, timeString(r.CreatedAt), status, t.Pid, exit})
			}
			l.json = js
			return l, nil
		}),
	}
}

// commandOf returns the process arguments of a JSON OCI spec, joined; ""
// if it has none.
func commandOf(spec []byte) string {
	var s specs.Spec
	if json.Unmarshal(spec, &s) != nil || s.Process == nil {
		return ""
	}
	return strings.Join(s.Process.Args, " ")
}

// quoteShort quotes a command for a table column, cut to n characters.
func quoteShort(s string, n int) string {
	if len([]rune(s)) > n {
		s = string([]rune(s)[:n-1]) + "…"
	}
	return fmt.Sprintf("%q", s)
}

// rmCommand is containers rm as nerdctl's rm: containers, their
// snapshots and their default log files.
func rmCommand(e *env) *cli.Command {
	cmd := containersRm(e)
	cmd.Aliases = nil
	cmd.Usage = "delete containers, their root filesystem snapshots and their default logs (= containers rm)"
	return cmd
}

// rmiCommand is images rm taking short names as nerdctl's rmi does
// (busybox is docker.io/library/busybox:latest); images rm takes names as
// they are stored, as ctr's does.
func rmiCommand(e *env) *cli.Command {
	return removeCommand(e, &cli.Command{
		Name:      "rmi",
		Usage:     "remove images; short names are expanded as pull expands them (= images rm)",
		ArgsUsage: "NAME...",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "sync", Usage: "wait for the garbage collection of their content"}},
	}, func(ctx context.Context, c *cli.Context, cl *client.Client, name string) error {
		full, _, err := reference.ParseNormalized(name)
		if err != nil {
			// Not a reference: a name stored as it is.
			return removeImage(ctx, c, cl, name)
		}
		return removeImage(ctx, c, cl, full.String())
	})
}

// execCommand is tasks exec.
func execCommand(e *env) *cli.Command {
	cmd := tasksExec(e)
	cmd.Usage += " (= tasks exec)"
	return cmd
}

// pullCommand is images pull.
func pullCommand(e *env) *cli.Command {
	cmd := imagesPull(e)
	cmd.Usage += " and unpack it (= images pull)"
	return cmd
}

// pushCommand is images push.
func pushCommand(e *env) *cli.Command {
	cmd := imagesPush(e)
	cmd.Usage += " (= images push)"
	return cmd
}
