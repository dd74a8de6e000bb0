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
	"slices"
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
func repeatedFlag(name, usage string, aliases ...string) cli.Flag {
	return &cli.GenericFlag{Name: name, Aliases: aliases, Usage: usage, Value: &repeated{}}
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
// they were set. The one-letter aliases are nerdctl's and Docker's (-e, -v,
// -w, -u, -t), so that the habits of their users carry over.
func containerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "name", Usage: "the container's id"},
		&cli.BoolFlag{Name: "generate-id", Usage: "make up a random id and print it (run makes one up anyway when --name is absent)"},
		snapshotterFlag(),
		&cli.StringFlag{Name: "runtime", Usage: "runtime of the task (default: $HULL_RUNTIME, " + client.DefaultRuntime + ")", EnvVars: []string{"HULL_RUNTIME"}},
		repeatedFlag("env", "set an environment variable KEY=VALUE (repeatable)", "e"),
		repeatedFlag("env-file", "read KEY=VALUE lines from a file (# comments and blank lines ignored; repeatable)"),
		repeatedFlag("mount", "add a mount: type=bind,src=/host/dir,dst=/in/container,options=rbind:ro (repeatable)"),
		repeatedFlag("volume", "bind-mount a host directory or file: /host/path:/in/container[:ro] (repeatable)", "v"),
		repeatedFlag("publish", "not supported: hull gives containers no network of their own to publish from (use --net-host)", "p"),
		repeatedFlag("label", "label the container KEY=VALUE (repeatable)"),
		&cli.StringFlag{Name: "cwd", Aliases: []string{"workdir", "w"}, Usage: "working directory of the process (absolute)"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "user to run as: name, uid, name:group or uid:gid, resolved in the image's /etc/passwd and /etc/group"},
		&cli.StringFlag{Name: "hostname", Usage: "hostname of the container (default: its id)"},
		&cli.StringFlag{Name: "memory-limit", Aliases: []string{"memory"}, Usage: "memory limit, in bytes or with a unit: 64m, 1.5g, 512KiB (binary units)"},
		&cli.StringFlag{Name: "cpus", Usage: "CPU limit, in CPUs (1.5 = one and a half)"},
		&cli.BoolFlag{Name: "privileged", Usage: "every capability (of those hullctl itself may have), every device, no seccomp filter, no masked paths"},
		&cli.BoolFlag{Name: "net-host", Usage: "share the host's network namespace (and its /etc/hosts and /etc/resolv.conf)"},
		&cli.BoolFlag{Name: "read-only", Usage: "mount the root filesystem read-only"},
		&cli.BoolFlag{Name: "seccomp", Usage: "apply hull's default seccomp profile"},
		&cli.BoolFlag{Name: "no-new-privileges", Usage: "forbid gaining privileges through setuid binaries"},
		&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "give the process a terminal"},
	}
}

// argsForm says how the positional arguments of a command that makes a
// container read.
type argsForm int

const (
	// ctrForm is ctr's IMAGE ID [COMMAND...] (IMAGE [COMMAND...] with
	// --name or --generate-id), which containers create keeps.
	ctrForm argsForm = iota
	// nerdctlForm is IMAGE [COMMAND...], the id from --name or made up:
	// run's, as in nerdctl and Docker.
	nerdctlForm
)

// containerArgs splits the positional arguments of run and containers
// create as form says.
func containerArgs(c *cli.Context, form argsForm) (image, id string, cmd []string, err error) {
	args := c.Args().Slice()
	name, gen := c.String("name"), c.Bool("generate-id")
	switch {
	case name != "" && gen:
		return "", "", nil, errors.New("--name and --generate-id: give one or the other")
	case name != "" || gen || form == nerdctlForm:
		if len(args) < 1 {
			return "", "", nil, fmt.Errorf("usage: %s [flags] IMAGE [COMMAND [ARG...]]", c.Command.HelpName)
		}
		id = name
		if id == "" {
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

// parseVolume reads Docker's and nerdctl's bind mount syntax,
// /host/path:/in/container[:ro|rw], into a bind mount as --mount makes.
// Named volumes do not exist in hull, so the host path must be absolute.
func parseVolume(s string) (specs.Mount, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return specs.Mount{}, fmt.Errorf("-v %q: write /host/path:/in/container[:ro]", s)
	}
	src, dst := parts[0], parts[1]
	if !path.IsAbs(src) {
		return specs.Mount{}, fmt.Errorf("-v %q: host path %q is not absolute (hull has no named volumes)", s, src)
	}
	if !path.IsAbs(dst) {
		return specs.Mount{}, fmt.Errorf("-v %q: container path %q is not absolute", s, dst)
	}
	opts := []string{"rbind"}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			opts = append(opts, "ro")
		case "rw":
		default:
			return specs.Mount{}, fmt.Errorf("-v %q: option %q: the options are ro and rw", s, parts[2])
		}
	}
	return specs.Mount{Type: "bind", Source: src, Destination: dst, Options: opts}, nil
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
func parseContainerFlags(c *cli.Context, form argsForm) (*containerSpec, error) {
	image, id, args, err := containerArgs(c, form)
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
	for _, s := range repeatedOf(c, "volume") {
		m, err := parseVolume(s)
		if err != nil {
			return nil, err
		}
		mounts = append(mounts, m)
	}
	if p := repeatedOf(c, "publish"); len(p) > 0 {
		// Said rather than ignored: a user who publishes a port expects
		// it to answer, and nothing would.
		return nil, fmt.Errorf("-p %s: not supported: hull gives containers no network of their own to publish a port from "+
			"(they have only loopback); with --net-host the container's ports are the host's: %w", p[0], errdefs.ErrNotImplemented)
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

// ioFlags are the flags of commands that make a process's stdio;
// logDefault says where a detached process's output goes without
// --log-file.
func ioFlags(logDefault string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "fifo-dir", Usage: "directory for the stdio FIFOs (default: " + cio.DefaultFIFODir() + ")"},
		&cli.StringFlag{Name: "log-file", Usage: "with --detach: the file (an absolute path: the shim opens it) the process's stdout and stderr go to (default: " + logDefault + ")"},
		&cli.DurationFlag{Name: "stop-timeout", Value: 10 * time.Second, Usage: "after forwarding SIGINT or SIGTERM, how long to wait before SIGKILL (a second Ctrl-C kills at once); 0 waits forever"},
	}
}

// pullPolicies are the values of run's --pull, nerdctl's.
var pullPolicies = []string{"missing", "always", "never"}

func runCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "make a container from an image (pulled if missing) and run it",
		ArgsUsage: "[--name ID] IMAGE [COMMAND [ARG...]]",
		Description: `run takes nerdctl's and Docker's form: IMAGE [COMMAND...], the id from
--name or made up (12 hex digits). A short image name is expanded as pull
expands it (busybox is docker.io/library/busybox:latest). An image
that is not in the namespace is pulled first (--pull=missing); --pull=never
fails instead, as ctr does, and --pull=always pulls anyway. The image is
unpacked into the snapshotter if it is not yet.

Unless --detach, run follows the container: stdio are connected, SIGINT
and SIGTERM (and SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2) are forwarded to it,
and hullctl exits with the container's exit code (128+N for a container
killed by signal N). A container that does not exit within --stop-timeout
of a forwarded SIGINT or SIGTERM is killed. The task is deleted after it
exits; --rm deletes the container and its snapshot too.

--detach starts the task and prints the container's id. Its stdout and
stderr go to a log file (--log-file, or by default <hulld's state
directory>/logs/<namespace>/<id>.log), which hullctl logs reads and
hullctl rm removes.

hull gives containers no network of their own: they have loopback only, or
the host's network with --net-host; -p is refused for that reason.`,
		Flags: append(append(append(containerFlags(), ioFlags("<hulld's state directory>/logs/<namespace>/<id>.log")...), pullFlags()...),
			&cli.BoolFlag{Name: "rm", Usage: "delete the container and its snapshot once it exits"},
			&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "start the container and print its id without waiting; its output goes to its log file"},
			&cli.BoolFlag{Name: "interactive", Aliases: []string{"i"}, Usage: "connect stdin (it always is when run follows the container; for nerdctl's -it)"},
			&cli.StringFlag{Name: "pull", Value: "missing", Usage: "when to pull the image: missing, always or never"},
		),
		Action: func(c *cli.Context) error {
			cs, err := parseContainerFlags(c, nerdctlForm)
			if err != nil {
				return err
			}
			detach, rm := c.Bool("detach"), c.Bool("rm")
			if detach && rm {
				return errors.New("--rm and --detach: hullctl cannot delete a container it does not wait for")
			}
			if err := checkLogFile(c); err != nil {
				return err
			}
			pull := c.String("pull")
			if !slices.Contains(pullPolicies, pull) {
				return fmt.Errorf("--pull %q: the policies are %s", pull, strings.Join(pullPolicies, ", "))
			}
			ref, err := e.fullRef(cs.image)
			if err != nil {
				return fmt.Errorf("image %q: %w", cs.image, err)
			}
			cs.image = ref
			cl, err := e.connect()
			if err != nil {
				return err
			}
			if err := e.pullFor(c, cl, ref, pull); err != nil {
				return err
			}
			var logPath string
			if detach {
				if logPath, err = e.logPathFor(c, cl, cs.id); err != nil {
					return err
				}
				if cs.labels == nil {
					cs.labels = map[string]string{}
				}
				cs.labels[logLabel] = logURI(logPath)
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
			code, err := e.startTask(ctx, c, ct, cs.tty, detach, logPath)
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

// pullFor pulls ref, unpacked, as run's --pull policy says: when it is
// missing from the namespace, always, or never.
func (e *env) pullFor(c *cli.Context, cl *client.Client, ref, policy string) error {
	if policy == "never" {
		return nil
	}
	if policy == "missing" {
		_, err := cl.GetImage(e.ctx(c), ref)
		if err == nil {
			return nil
		}
		if !errdefs.IsNotFound(err) {
			return named("image", ref, err)
		}
	}
	opts, err := e.registryOpts(c, "")
	if err != nil {
		return err
	}
	sn, err := e.snapshotter(c, cl)
	if err != nil {
		return err
	}
	// Progress goes to stderr: stdout is the container's.
	board := newProgressBoard(e.stderr, false, ref+": resolving")
	_, err = e.pull(c, cl, ref, append(opts, client.WithPullUnpack(sn, nil), client.WithProgress(board.Update)))
	board.Finish()
	return err
}
