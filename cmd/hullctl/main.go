// Command hullctl is hull's CLI: it runs containers the way nerdctl's and
// ctr's users expect (pull, run, ps, exec, logs, rm), and inspects and
// changes what hulld stores (namespaces, content, images, snapshots,
// leases, containers, tasks) and follows its events. It talks to the
// daemon only through package client, over containerd's v1 API, so it
// works against containerd too.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/internal/version"
)

// defaultAddress is where a packaged hulld listens.
const defaultAddress = "/run/hull/hull.sock"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newApp(os.Stdin, os.Stdout, os.Stderr, os.Getenv).RunContext(ctx, os.Args)
	stop()
	var exit exitError
	if errors.As(err, &exit) {
		// A followed container's or exec's own exit code.
		os.Exit(exit.code)
	}
	var unreachable *client.UnreachableError
	if errors.As(err, &unreachable) {
		// Whatever the command was doing, the news is that hulld is
		// not there, and that alone is said, with where to look.
		err = errors.New(unreachableAdvice(unreachable))
	}
	if err != nil {
		// Commands acting on several names report every failure, one
		// per line.
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(os.Stderr, "hullctl: %s\n", line)
		}
		os.Exit(1)
	}
}

// env is what every command works with: the streams, the global flags
// resolved, and the client, dialled on first use.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string

	address        string
	namespace      string
	timeout        time.Duration
	connectTimeout time.Duration
	format         string
	debug          bool
	client         *client.Client
	// logRoot is the directory of run -d's log files, once asked.
	logRoot string
}

func newApp(stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) *cli.App {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	app := &cli.App{
		Name:  "hullctl",
		Usage: "run containers and administer hulld: images, containers, tasks, snapshots, content, namespaces, leases, events",
		Description: `hullctl talks to hulld (or containerd) over containerd's v1 gRPC API.

The first commands are those nerdctl's and Docker's users type: run
(IMAGE [COMMAND...], pulling a missing image), ps, exec, logs, rm, pull,
push, images and rmi. The groups below them are ctr's, with ctr's aliases
(c containers, i images, t tasks, s snapshots, ns namespaces).

The socket is --address, else $HULL_ADDRESS, else $CONTAINERD_ADDRESS,
else ` + defaultAddress + `. The namespace is --namespace, else $HULL_NAMESPACE,
else $CONTAINERD_NAMESPACE, else "default". --debug tells which was used.`,
		Version:                version.Version,
		Writer:                 stdout,
		ErrWriter:              stderr,
		HideHelpCommand:        false,
		UseShortOptionHandling: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "address", Aliases: []string{"a"}, Usage: "hulld's socket (default: $HULL_ADDRESS, $CONTAINERD_ADDRESS, " + defaultAddress + ")"},
			&cli.StringFlag{Name: "namespace", Aliases: []string{"n"}, Usage: "namespace to act in (default: $HULL_NAMESPACE, $CONTAINERD_NAMESPACE, \"default\")"},
			&cli.DurationFlag{Name: "timeout", Usage: "limit for each API call (not for event subscriptions and ingests, which last as long as their input); 0 for none"},
			&cli.DurationFlag{Name: "connect-timeout", Value: client.DefaultConnectTimeout, Usage: "how long to wait, saying so on stderr, for hulld while its socket is missing or refuses connections (it is down or restarting); 0 to fail at once"},
			&cli.BoolFlag{Name: "debug", Usage: "tell on stderr how hullctl resolved its settings"},
			&cli.StringFlag{Name: "format", Value: "table", Usage: "output of listings: table or json"},
		},
		Before: func(c *cli.Context) error { return e.setup(c) },
		After: func(c *cli.Context) error {
			if e.client != nil {
				return e.client.Close()
			}
			return nil
		},
		Commands: slices.Concat(
			inCategory(categoryHabits, runCommand(e), psCommand(e), execCommand(e), logsCommand(e), rmCommand(e),
				pullCommand(e), pushCommand(e), rmiCommand(e)),
			inCategory(categoryObjects, imagesCommand(e), containersCommand(e), tasksCommand(e), snapshotsCommand(e),
				contentCommand(e), namespacesCommand(e), leasesCommand(e)),
			inCategory(categoryDaemon, versionCommand(e), infoCommand(e), pluginsCommand(e), eventsCommand(e),
				gcCommand(e), hostsCommand(e), debugCommand(e))),
		// Errors are printed once, by main, as "hullctl: ...".
		ExitErrHandler: func(*cli.Context, error) {},
		Action:         groupAction,
	}
	app.OnUsageError = usageError
	for _, cmd := range app.Commands {
		setUsageError(cmd)
	}
	return app
}

func usageError(c *cli.Context, err error, _ bool) error {
	return fmt.Errorf("%w (see %s --help)", err, c.Command.HelpName)
}

func setUsageError(cmd *cli.Command) {
	cmd.OnUsageError = usageError
	for _, sub := range cmd.Subcommands {
		setUsageError(sub)
	}
	if len(cmd.Subcommands) > 0 && cmd.Action == nil {
		cmd.Action = groupAction
	}
}

// groupAction runs for a command that only groups others: it lists them, or
// names the unknown one it was given, with the nearest known one.
func groupAction(c *cli.Context) error {
	if c.Args().Present() {
		return unknownCommand(c)
	}
	if c.Command != nil && c.Command.Name != "" {
		return cli.ShowSubcommandHelp(c)
	}
	return cli.ShowAppHelp(c)
}

// unknownCommand is the error of a group given a name it does not have.
// main puts "hullctl: " before it already, so the group is named without
// it.
func unknownCommand(c *cli.Context) error {
	name, cmds := "hullctl", c.App.Commands
	if c.Command != nil && c.Command.Name != "" {
		name, cmds = c.Command.HelpName, c.Command.Subcommands
	}
	arg := c.Args().First()
	hint := ""
	if near := nearestCommand(arg, cmds); near != "" {
		hint = fmt.Sprintf(": did you mean %q?", near)
	}
	if sub := strings.TrimPrefix(name, "hullctl "); sub != name {
		return fmt.Errorf("%s: unknown command %q%s (see %s --help)", sub, arg, hint, name)
	}
	return fmt.Errorf("unknown command %q%s (see %s --help)", arg, hint, name)
}

// The categories of hullctl's commands in its help.
const (
	categoryHabits  = "Containers and images (nerdctl's habits)"
	categoryObjects = "Objects hulld stores (ctr's groups)"
	categoryDaemon  = "The daemon"
)

// inCategory puts cmds in category for the help listing.
func inCategory(category string, cmds ...*cli.Command) []*cli.Command {
	for _, c := range cmds {
		c.Category = category
	}
	return cmds
}

// unreachableAdvice says that hulld does not answer and where to look:
// systemd runs a packaged hulld, and a socket that is there but refuses
// is a hulld that stopped; a wrong --address is the other usual cause.
func unreachableAdvice(err *client.UnreachableError) string {
	if !err.Running() {
		return err.Error()
	}
	return err.Error() + " see systemctl status hull"
}

// setup resolves the global flags; the connection waits for the first
// command that needs it.
func (e *env) setup(c *cli.Context) error {
	addr, addrWhy := resolveAddress(c, e.getenv)
	e.address = addr
	e.timeout = c.Duration("timeout")
	e.debug = c.Bool("debug")
	e.format = c.String("format")
	if e.format != "table" && e.format != "json" {
		return fmt.Errorf("--format %q: the formats are table and json", e.format)
	}
	if e.timeout < 0 {
		return fmt.Errorf("--timeout %s: must not be negative", e.timeout)
	}
	e.connectTimeout = c.Duration("connect-timeout")
	if e.connectTimeout < 0 {
		return fmt.Errorf("--connect-timeout %s: must not be negative", e.connectTimeout)
	}
	ns, why := resolveNamespace(c, e.getenv)
	e.namespace = ns
	if e.debug {
		fmt.Fprintf(e.stderr, "debug: address %q %s\n", e.address, addrWhy)
		fmt.Fprintf(e.stderr, "debug: namespace %q %s\n", ns, why)
	}
	return nil
}

// resolveAddress is like resolveNamespace for the socket; the environment
// is read here rather than by the flag so that --debug can tell the source.
func resolveAddress(c *cli.Context, getenv func(string) string) (addr, why string) {
	if c.IsSet("address") {
		return c.String("address"), "from --address"
	}
	if v := getenv("HULL_ADDRESS"); v != "" {
		return v, "from $HULL_ADDRESS"
	}
	if v := getenv("CONTAINERD_ADDRESS"); v != "" {
		return v, "from $CONTAINERD_ADDRESS"
	}
	return defaultAddress, "(the default)"
}

// resolveNamespace applies the documented precedence and says which source
// won, since a stray $CONTAINERD_NAMESPACE is a classic surprise.
func resolveNamespace(c *cli.Context, getenv func(string) string) (ns, why string) {
	if c.IsSet("namespace") {
		return c.String("namespace"), "from --namespace"
	}
	if v := getenv("HULL_NAMESPACE"); v != "" {
		return v, "from $HULL_NAMESPACE"
	}
	if v := getenv("CONTAINERD_NAMESPACE"); v != "" {
		return v, "from $CONTAINERD_NAMESPACE"
	}
	return "default", "(the default: --namespace, $HULL_NAMESPACE and $CONTAINERD_NAMESPACE are unset)"
}

// connect dials hulld once per run.
func (e *env) connect() (*client.Client, error) {
	if e.client != nil {
		return e.client, nil
	}
	opts := []client.Opt{client.WithDefaultNamespace(e.namespace),
		client.WithConnectTimeout(e.connectTimeout), client.WithConnectWait(e.waitNotice)}
	if e.timeout > 0 {
		opts = append(opts, client.WithDialOpts(
			grpc.WithChainUnaryInterceptor(unaryTimeout(e.timeout)),
			grpc.WithChainStreamInterceptor(streamTimeout(e.timeout))))
	}
	c, err := client.New(e.address, opts...)
	if err != nil {
		return nil, err
	}
	e.client = c
	return c, nil
}

// waitNotice says on stderr why hullctl is not getting on while it waits
// for hulld: the client calls it when a wait begins and every few seconds.
func (e *env) waitNotice(w client.ConnectWait) {
	why := w.Reason.Error()
	var errno syscall.Errno
	if errors.As(w.Reason, &errno) {
		why = errno.Error()
	}
	if w.Waited < time.Second {
		fmt.Fprintf(e.stderr, "waiting for hulld at %s (%s)...\n", w.Address, why)
		return
	}
	fmt.Fprintf(e.stderr, "still waiting for hulld at %s (%s): %s of --connect-timeout %s...\n", w.Address, why, w.Waited.Round(time.Second), w.Limit)
}

// unaryTimeout bounds each unary call by d.
func unaryTimeout(d time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if unbounded(method) {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// unbounded tells the calls that last as long as their input or the user
// wants: an event subscription, an ingest fed from stdin, the wait for a
// process to exit.
func unbounded(method string) bool {
	switch method {
	case "/containerd.services.events.v1.Events/Subscribe", "/containerd.services.content.v1.Content/Write",
		"/containerd.services.tasks.v1.Tasks/Wait":
		return true
	}
	return false
}

// streamTimeout bounds each other stream (listings, one read of a blob) by
// d, from its start to its last message.
func streamTimeout(d time.Duration) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if unbounded(method) {
			return streamer(ctx, desc, cc, method, opts...)
		}
		ctx, cancel := context.WithTimeout(ctx, d)
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			cancel()
			return nil, err
		}
		return &cancelStream{ClientStream: s, cancel: cancel}, nil
	}
}

// cancelStream releases its timeout's timer when the stream ends; one that
// is abandoned is released when the timeout fires.
type cancelStream struct {
	grpc.ClientStream
	cancel context.CancelFunc
}

func (s *cancelStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil {
		s.cancel()
	}
	return err
}

// ctx returns the context of a command's calls, in the chosen namespace.
func (e *env) ctx(c *cli.Context) context.Context {
	return client.WithNamespace(c.Context, e.namespace)
}

// listFlags are the flags of listing commands: -q, and --format again, as
// it is natural to write it after the command too. They are new each time,
// since a flag records whether it was set.
func listFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only the IDs"},
		&cli.StringFlag{Name: "format", Usage: "table or json (default: the global --format)"},
	}
}

// formatOf returns the output format of c: its own --format, else the
// global one.
func (e *env) formatOf(c *cli.Context) (string, error) {
	f := c.String("format")
	switch f {
	case "":
		return e.format, nil
	case "table", "json":
		return f, nil
	}
	return "", fmt.Errorf("--format %q: the formats are table and json", f)
}

// listing is what a listing command prints, in each of the formats.
type listing struct {
	header []string
	rows   [][]string
	ids    []string
	json   any
}

// print writes l as -q, --format and the global --format ask.
func (e *env) print(c *cli.Context, l listing) error {
	format, err := e.formatOf(c)
	if err != nil {
		return err
	}
	switch {
	case c.Bool("quiet"):
		for _, id := range l.ids {
			fmt.Fprintln(e.stdout, id)
		}
		return nil
	case format == "json":
		return e.printJSON(l.json)
	}
	return e.printTable(l)
}

// printTable writes l as a table whatever the format flags say.
func (e *env) printTable(l listing) error {
	tw := tabwriter.NewWriter(e.stdout, 1, 8, 1, ' ', 0)
	fmt.Fprintln(tw, strings.Join(l.header, "\t"))
	for _, r := range l.rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// printJSON writes v indented, for people and jq alike.
func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// labelString shows labels as ctr does: sorted k=v joined by commas, "-"
// for none.
func labelString(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + m[k])
	}
	return b.String()
}

// nonNil keeps JSON output an object rather than null for no labels.
func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// parseLabels reads KEY=VALUE arguments; with allowRemove, "KEY" and
// "KEY=" mean an empty value (which removes the label).
func parseLabels(args []string, allowRemove bool) (map[string]string, error) {
	out := map[string]string{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if k == "" {
			return nil, fmt.Errorf("label %q: the key is empty; write KEY=VALUE", a)
		}
		if !ok && !allowRemove {
			return nil, fmt.Errorf("label %q: write KEY=VALUE", a)
		}
		out[k] = v
	}
	return out, nil
}

// named makes sure an error about name mentions it, without repeating it when
// the daemon's message already does.
func named(kind, name string, err error) error {
	if err == nil || strings.Contains(err.Error(), name) {
		return err
	}
	return fmt.Errorf("%s %q: %w", kind, name, err)
}

// restated is an error told in a command's own words, which say all that
// its message said and more; it still unwraps to it, so that its class
// holds.
type restated struct {
	msg string
	err error
}

func (r *restated) Error() string { return r.msg }
func (r *restated) Unwrap() error { return r.err }

// needArgs checks the count of positional arguments.
func needArgs(c *cli.Context, min int, usage string) error {
	if c.NArg() < min {
		return fmt.Errorf("usage: %s %s", c.Command.HelpName, usage)
	}
	return nil
}

// each runs fn on every argument, going on after failures so that one bad
// name does not stop the rest, and returns the failures joined. A daemon
// that cannot be reached stops it, as every other name would wait for it
// in vain.
func each(args []string, fn func(string) error) error {
	var errs []error
	for _, a := range args {
		if err := fn(a); err != nil {
			errs = append(errs, err)
			var unreachable *client.UnreachableError
			if errors.As(err, &unreachable) {
				break
			}
		}
	}
	return errors.Join(errs...)
}

// age shows how long ago t was, like ctr's listings.
func age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d seconds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d minutes", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d hours", int(d.Hours()))
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

// humanSize shows bytes in binary units as ctr does.
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB"}
	i := -1
	for f >= unit && i < len(units)-1 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

// timeString formats a time for tables and JSON; empty for the zero time.
func timeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// labelUpdate turns KEY=VALUE arguments (an empty value removes the key) into
// the labels to set and the "labels.<key>" field paths of an update, which
// name the removed keys too.
func labelUpdate(labels map[string]string) (set map[string]string, paths []string) {
	set = map[string]string{}
	for k, v := range labels {
		paths = append(paths, "labels."+k)
		if v != "" {
			set[k] = v
		}
	}
	return set, paths
}

// printLabels prints the labels an object has after a label command.
func (e *env) printLabels(labels map[string]string) error {
	if e.format == "json" {
		return e.printJSON(nonNil(labels))
	}
	if len(labels) > 0 {
		fmt.Fprintln(e.stdout, labelString(labels))
	}
	return nil
}
