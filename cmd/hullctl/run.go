package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/client/cio"
	"github.com/hullrt/hull/client/oci"
)

// exitError makes hullctl exit with code without printing anything: the
// exit code of a container or exec that hullctl followed is its own, as
// with a shell running the command directly.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// exitWith returns nil for a zero code, else an exitError.
func exitWith(code uint32) error {
	if code == 0 {
		return nil
	}
	return exitError{int(code)}
}

// repeated is a flag value that may be given several times and, unlike
// cli.StringSlice, is never split on commas: mount specifications and
// environment values contain commas.
type repeated struct{ vals []string }

func (r *repeated) Set(v string) error { r.vals = append(r.vals, v); return nil }
func (r *repeated) String() string     { return strings.Join(r.vals, " ") }

// repeatedFlag declares a repeatable flag.
func repeatedFlag(name, usage string) cli.Flag {
	return &cli.GenericFlag{Name: name, Usage: usage, Value: &repeated{}}
}

// repeatedOf returns the values of a repeatedFlag.
func repeatedOf(c *cli.Context, name string) []string {
	if r, ok := c.Generic(name).(*repeated); ok && r != nil {
		return r.vals
	}
	return nil
}

// containerFlags are the flags that shape a new container, shared by run
// and containers create. They are new each time, as flags record whether
// they were set.
func containerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "name", Usage: "the container's id; the arguments are then IMAGE [COMMAND...]"},
		&cli.BoolFlag{Name: "generate-id", Usage: "make up a random id (printed); the arguments are then IMAGE [COMMAND...]"},
		snapshotterFlag(),
		&cli.StringFlag{Name: "runtime", Usage: "runtime of the task (default: $HULL_RUNTIME, " + client.DefaultRuntime + ")", EnvVars: []string{"HULL_RUNTIME"}},
		repeatedFlag("env", "set an environment variable KEY=VALUE (repeatable)"),
		repeatedFlag("env-file", "read KEY=VALUE lines from a file (# comments and blank lines ignored; repeatable)"),
		repeatedFlag("mount", "add a mount: type=bind,src=/host/dir,dst=/in/container,options=rbind:ro (repeatable)"),
		repeatedFlag("label", "label the container KEY=VALUE (repeatable)"),
		&cli.StringFlag{Name: "cwd", Usage: "working directory of the process (absolute)"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "user to run as: name, uid, name:group or uid:gid, resolved in the image's /etc/passwd and /etc/group"},
		&cli.StringFlag{Name: "hostname", Usage: "hostname of the container (default: its id)"},
		&cli.StringFlag{Name: "memory-limit", Usage: "memory limit, in bytes or with a unit: 64m, 1.5g, 512KiB (binary units)"},
		&cli.StringFlag{Name: "cpus", Usage: "CPU limit, in CPUs (1.5 = one and a half)"},
		&cli.BoolFlag{Name: "privileged", Usage: "every capability (of those hullctl itself may have), every device, no seccomp filter, no masked paths"},
		&cli.BoolFlag{Name: "net-host", Usage: "share the host's network namespace (and its /etc/hosts and /etc/resolv.conf)"},
		&cli.BoolFlag{Name: "read-only", Usage: "mount the root filesystem read-only"},
		&cli.BoolFlag{Name: "seccomp", Usage: "apply hull's default seccomp profile"},
		&cli.BoolFlag{Name: "no-new-privileges", Usage: "forbid gaining privileges through setuid binaries"},
		&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "give the process a terminal"},
	}
}

// containerArgs splits the positional arguments of run and containers
// create. Without --name or --generate-id they are ctr's IMAGE ID
// [COMMAND...]; with either, IMAGE [COMMAND...].
func containerArgs(c *cli.Context) (image, id string, cmd []string, err error) {
	args := c.Args().Slice()
	name, gen := c.String("name"), c.Bool("generate-id")
	switch {
	case name != "" && gen:
		return "", "", nil, errors.New("--name and --generate-id: give one or the other")
	case name != "" || gen:
		if len(args) < 1 {
			return "", "", nil, fmt.Errorf("usage: %s [flags] IMAGE [COMMAND [ARG...]] (with --name or --generate-id)", c.Command.HelpName)
		}
		id = name
		if gen {
			id = generateID()
		}
		return args[0], id, args[1:], nil
	}
	if len(args) < 2 {
		return "", "", nil, fmt.Errorf("usage: %s [flags] IMAGE ID [COMMAND [ARG...]] (or --name ID IMAGE [COMMAND...])", c.Command.HelpName)
	}
	return args[0], args[1], args[2:], nil
}

// generateID makes a container id like Docker's short ones: 12 random
// hex digits.
func generateID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// parseMount reads ctr's mount syntax:
// type=bind,src=/a,dst=/b,options=rbind:ro. type defaults to bind, and a
// bind mount without bind or rbind among its options gets rbind, which is
// what a bind mount means to runc.
func parseMount(s string) (specs.Mount, error) {
	var m specs.Mount
	for _, field := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(field, "=")
		if !ok || k == "" {
			return m, fmt.Errorf("--mount %q: %q is not KEY=VALUE (keys: type, src, dst, options)", s, field)
		}
		switch k {
		case "type":
			m.Type = v
		case "src", "source":
			m.Source = v
		case "dst", "destination", "target":
			m.Destination = v
		case "options":
			for _, o := range strings.Split(v, ":") {
				if o == "" {
					return m, fmt.Errorf("--mount %q: empty option in %q", s, v)
				}
				m.Options = append(m.Options, o)
			}
		default:
			return m, fmt.Errorf("--mount %q: unknown key %q (keys: type, src, dst, options)", s, k)
		}
	}
	if m.Destination == "" {
		return m, fmt.Errorf("--mount %q: no dst", s)
	}
	if !path.IsAbs(m.Destination) {
		return m, fmt.Errorf("--mount %q: dst %q is not absolute", s, m.Destination)
	}
	if m.Type == "" {
		m.Type = "bind"
	}
	if m.Type == "bind" {
		if m.Source == "" {
			return m, fmt.Errorf("--mount %q: a bind mount needs src", s)
		}
		if !path.IsAbs(m.Source) {
			return m, fmt.Errorf("--mount %q: src %q is not absolute", s, m.Source)
		}
		bind := false
		for _, o := range m.Options {
			bind = bind || o == "bind" || o == "rbind"
		}
		if !bind {
			m.Options = append([]string{"rbind"}, m.Options...)
		}
	}
	return m, nil
}

// sizeUnits are the multipliers of parseSize; like Docker's, k, m and g
// are binary.
var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
	"t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
}

// parseSize reads a byte count such as 1048576, 64m, 1.5G or 512KiB.
func parseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := sizeUnits[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("size %q: write a number of bytes, optionally with a unit (k, m, g, t; 64m, 1.5g)", s)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %q is not a number", s, num)
	}
	v := f * mult
	if v < 1 || v >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is out of range (1 byte to 8 EiB)", s)
	}
	return uint64(v), nil
}

// parseCPUs reads --cpus: a positive number of CPUs.
func parseCPUs(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
		return 0, fmt.Errorf("--cpus %q: want a positive number of CPUs, such as 0.5 or 2", s)
	}
	return f, nil
}

// parseEnv checks KEY=VALUE entries of --env.
func parseEnv(entries []string) ([]string, error) {
	for _, kv := range entries {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, fmt.Errorf("--env %q: write KEY=VALUE", kv)
		}
	}
	return entries, nil
}

// readEnvFile reads an --env-file: KEY=VALUE lines, blank lines and lines
// starting with # ignored; values are taken as they are, without quotes
// removed, as Docker does.
func readEnvFile(r io.Reader, name string) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		k, _, ok := strings.Cut(strings.TrimLeft(line, " \t"), "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("--env-file %s:%d: %q is not KEY=VALUE", name, n, line)
		}
		out = append(out, strings.TrimLeft(line, " \t"))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--env-file %s: %w", name, err)
	}
	return out, nil
}

// containerSpec is what containerFlags ask for, checked before anything
// is sent to the daemon.
type containerSpec struct {
	image, id string
	args      []string
	labels    map[string]string
	specOpts  []oci.SpecOpts
	runtime   string
	tty       bool
}

// processOpts applies env and the --cwd and --user flags, which run and
// exec share, to a process's spec.
func processOpts(c *cli.Context, env []string) []oci.SpecOpts {
	var opts []oci.SpecOpts
	if len(env) > 0 {
		opts = append(opts, oci.WithEnv(env))
	}
	if cwd := c.String("cwd"); cwd != "" {
		opts = append(opts, oci.WithProcessCwd(cwd))
	}
	if u := c.String("user"); u != "" {
		opts = append(opts, oci.WithUser(u))
	}
	return opts
}

// parseContainerFlags checks every container flag, so that bad input fails
// before a snapshot or record is made.
func parseContainerFlags(c *cli.Context) (*containerSpec, error) {
	image, id, args, err := containerArgs(c)
	if err != nil {
		return nil, err
	}
	cs := &containerSpec{image: image, id: id, args: args, runtime: c.String("runtime"), tty: c.Bool("tty")}
	if cs.labels, err = parseLabels(repeatedOf(c, "label"), false); err != nil {
		return nil, err
	}
	var env []string
	for _, f := range repeatedOf(c, "env-file") {
		fh, err := os.Open(f)
		if err != nil {
			return nil, fmt.Errorf("--env-file: %w", err)
		}
		vals, err := readEnvFile(fh, f)
		fh.Close()
		if err != nil {
			return nil, err
		}
		env = append(env, vals...)
	}
	flagEnv, err := parseEnv(repeatedOf(c, "env"))
	if err != nil {
		return nil, err
	}
	// --env after --env-file, so that the command line wins.
	env = append(env, flagEnv...)

	var mounts []specs.Mount
	for _, s := range repeatedOf(c, "mount") {
		m, err := parseMount(s)
		if err != nil {
			return nil, err
		}
		mounts = append(mounts, m)
	}
	if c.Bool("net-host") {
		// The host's network is of little use without its resolver
		// and host names.
		for _, f := range []string{"/etc/hosts", "/etc/resolv.conf"} {
			if _, err := os.Stat(f); err == nil {
				mounts = append(mounts, specs.Mount{Type: "bind", Source: f, Destination: f, Options: []string{"rbind", "ro"}})
			}
		}
	}
	if c.Bool("privileged") && c.Bool("seccomp") {
		return nil, errors.New("--privileged removes the seccomp filter that --seccomp asks for: give one or the other")
	}
	if cwd := c.String("cwd"); cwd != "" && !path.IsAbs(cwd) {
		return nil, fmt.Errorf("--cwd %q: the working directory must be absolute", cwd)
	}

	// The image's config first, then what the command line says.
	opts := processOpts(c, env)
	if h := c.String("hostname"); h != "" {
		opts = append(opts, oci.WithHostname(h))
	}
	if len(mounts) > 0 {
		opts = append(opts, oci.WithMounts(mounts))
	}
	if c.Bool("net-host") {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace))
	}
	if cs.tty {
		opts = append(opts, oci.WithTTY)
	}
	if v := c.String("memory-limit"); v != "" {
		n, err := parseSize(v)
		if err != nil {
			return nil, fmt.Errorf("--memory-limit: %w", err)
		}
		opts = append(opts, oci.WithMemoryLimit(n))
	}
	if v := c.String("cpus"); v != "" {
		n, err := parseCPUs(v)
		if err != nil {
			return nil, err
		}
		opts = append(opts, oci.WithCPUs(n))
	}
	if c.Bool("privileged") {
		opts = append(opts, oci.WithPrivileged)
	}
	if c.Bool("read-only") {
		opts = append(opts, oci.WithReadonlyRootfs)
	}
	if c.Bool("no-new-privileges") {
		opts = append(opts, oci.WithNoNewPrivileges)
	}
	if c.Bool("seccomp") {
		// Last: the profile depends on the capabilities set above.
		opts = append(opts, oci.WithSeccompDefault)
	}
	cs.specOpts = opts
	return cs, nil
}

// createContainer makes the container cs describes: the image (a short
// reference is normalised) is unpacked into the snapshotter if it is not
// yet, a snapshot named after the container is prepared on it, and the
// spec is the image's config with the flags applied.
func (e *env) createContainer(ctx context.Context, c *cli.Context, cl *client.Client, cs *containerSpec) (*client.Container, error) {
	ref, err := e.fullRef(cs.image)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", cs.image, err)
	}
	img, err := cl.GetImage(ctx, ref)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, &restated{fmt.Sprintf("image %q not found in namespace %q: pull or import it first", ref, e.namespace), err}
		}
		return nil, named("image", ref, err)
	}
	// Asked first, so that a duplicate id is reported as such rather
	// than as a clash of snapshot keys.
	if _, err := cl.LoadContainer(ctx, cs.id); err == nil {
		return nil, fmt.Errorf("container %q already exists: %w", cs.id, errdefs.ErrAlreadyExists)
	} else if !errdefs.IsNotFound(err) {
		return nil, named("container", cs.id, err)
	}
	var imgOpt oci.SpecOpts = oci.WithImageConfig(img)
	if len(cs.args) > 0 {
		imgOpt = oci.WithImageConfigArgs(img, cs.args)
	}
	opts := []client.NewContainerOpts{client.WithImage(img)}
	if sn := c.String("snapshotter"); sn != "" {
		opts = append(opts, client.WithContainerSnapshotter(sn))
	}
	if cs.runtime != "" {
		opts = append(opts, client.WithRuntime(cs.runtime, nil))
	}
	if len(cs.labels) > 0 {
		opts = append(opts, client.WithContainerLabels(cs.labels))
	}
	opts = append(opts,
		client.WithNewSnapshot(cs.id, img),
		client.WithNewSpec(append([]oci.SpecOpts{imgOpt}, cs.specOpts...)...))
	ct, err := cl.NewContainer(ctx, cs.id, opts...)
	if err != nil {
		return nil, named("container", cs.id, err)
	}
	return ct, nil
}

// ioFlags are the flags of commands that make a process's stdio.
func ioFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "fifo-dir", Usage: "directory for the stdio FIFOs (default: " + cio.DefaultFIFODir() + ")"},
		&cli.StringFlag{Name: "log-file", Usage: "with --detach: the process's stdout and stderr go to this file (absolute path) instead of nowhere"},
		&cli.DurationFlag{Name: "stop-timeout", Value: 10 * time.Second, Usage: "after forwarding SIGINT or SIGTERM, how long to wait before SIGKILL (a second Ctrl-C kills at once); 0 waits forever"},
	}
}

func runCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "make a container from an image and run it",
		ArgsUsage: "IMAGE ID [COMMAND [ARG...]]  or  --name ID IMAGE [COMMAND [ARG...]]",
		Description: `run creates a container and its task and, unless --detach, follows it:
stdio are connected, SIGINT and SIGTERM (and SIGHUP, SIGQUIT, SIGUSR1,
SIGUSR2) are forwarded to it, and hullctl exits with the container's exit
code (128+N for a container killed by signal N). A container that does not
exit within --stop-timeout of a forwarded SIGINT or SIGTERM is killed.

The arguments are ctr's, IMAGE ID [COMMAND...], unless --name ID or
--generate-id is given: then they are IMAGE [COMMAND...]. A short image
name is expanded as by hullctl images (busybox is
docker.io/library/busybox:latest); the image is unpacked into the
snapshotter if it is not yet.

The task is deleted after it exits; --rm deletes the container and its
snapshot too. --detach starts the task and prints the container's id.`,
		Flags: append(append(containerFlags(), ioFlags()...),
			&cli.BoolFlag{Name: "rm", Usage: "delete the container and its snapshot once it exits"},
			&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "start the container and print its id without waiting"},
		),
		Action: func(c *cli.Context) error {
			cs, err := parseContainerFlags(c)
			if err != nil {
				return err
			}
			detach, rm := c.Bool("detach"), c.Bool("rm")
			if detach && rm {
				return errors.New("--rm and --detach: hullctl cannot delete a container it does not wait for")
			}
			if c.String("log-file") != "" && !detach {
				return errors.New("--log-file goes with --detach")
			}
			cl, err := e.connect()
			if err != nil {
				return err
			}
			// Ctrl-C stops the creation (the client's lease drops what
			// was made); once the task exists it is forwarded to the
			// container instead, and hullctl still has to clean up, so
			// the rest is not cancelled by it.
			ct, err := e.createContainer(e.ctx(c), c, cl, cs)
			if err != nil {
				return err
			}
			ctx := context.WithoutCancel(e.ctx(c))
			if c.Bool("generate-id") && !detach {
				fmt.Fprintln(e.stderr, cs.id)
			}
			code, err := e.startTask(ctx, c, ct, cs.tty, detach)
			if rm {
				if derr := ct.Delete(ctx, client.WithSnapshotCleanup); derr != nil {
					err = errors.Join(err, named("container", cs.id, derr))
				}
			}
			if err != nil {
				return err
			}
			if detach {
				fmt.Fprintln(e.stdout, cs.id)
				return nil
			}
			return exitWith(code)
		},
	}
}
