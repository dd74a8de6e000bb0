package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"

	"github.com/containerd/containerd/api/types"
	runcopts "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/client/cio"
	"github.com/hullrt/hull/client/oci"
)

func tasksCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:    "tasks",
		Aliases: []string{"task", "t"},
		Usage:   "manage the running instances of containers",
		Subcommands: []*cli.Command{
			tasksLs(e), tasksStart(e), tasksAttach(e), tasksKill(e), tasksPause(e), tasksResume(e),
			tasksExec(e), tasksPs(e), tasksMetrics(e), tasksRm(e),
		},
	}
}

// loadTask returns the task of container id, with errors that name it.
func loadTask(ctx context.Context, cl *client.Client, id string, attach cio.Attach) (*client.Task, error) {
	ct, err := cl.LoadContainer(ctx, id)
	if err != nil {
		return nil, named("container", id, err)
	}
	t, err := ct.Task(ctx, attach)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, &restated{fmt.Sprintf("container %q has no task", id), err}
		}
		return nil, named("task", id, err)
	}
	return t, nil
}

// stdioCreator makes FIFOs connected to hullctl's own stdio. Without a
// terminal, the channel it returns is closed once hullctl's stdin is all
// read, for follow to close the process's stdin then; with one, the
// terminal's ^D ends the input instead (nil channel), and the stdin FIFO
// stays open until release is called, once the process is done.
func (e *env) stdioCreator(c *cli.Context, tty bool) (creator cio.Creator, stdinEnded <-chan struct{}, release func()) {
	stdin := e.stdin
	var ended chan struct{}
	release = func() {}
	if f, ok := stdin.(*os.File); tty && (!ok || !isTerminal(f)) {
		hold := make(chan struct{})
		var once sync.Once
		release = func() { once.Do(func() { close(hold) }) }
		stdin = &endOfTransmission{r: stdin, hold: hold}
	} else if !tty {
		ended = make(chan struct{})
		stdin = &stdinEnd{r: stdin, ended: ended}
	}
	opts := []cio.Opt{cio.WithStreams(stdin, e.stdout, e.stderr)}
	if tty {
		opts = append(opts, cio.WithTerminal)
	}
	if d := c.String("fifo-dir"); d != "" {
		opts = append(opts, cio.WithFIFODir(d))
	}
	return cio.NewCreator(opts...), ended, release
}

// stdinEnd passes a process's input on and closes ended once it has all
// been read (or cannot be). Shims keep a process's stdin open after the
// client's end of the FIFO closes, since a client may attach again, so
// the end of a piped input reaches the process only when hullctl closes
// its stdin in the shim (CloseIO): cat and sh then end instead of
// waiting forever.
type stdinEnd struct {
	r     io.Reader
	ended chan struct{}
	once  sync.Once
}

func (s *stdinEnd) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil {
		s.once.Do(func() { close(s.ended) })
	}
	return n, err
}

// endOfTransmission passes on input piped into a process's terminal and,
// at its end, the terminal's end-of-file character (^D): a terminal has no
// end of its own, so closing the input would leave a process that reads
// to the end (cat, sh) waiting forever. ^D ends input only at the start of
// a line; after a partial line a first ^D hands over that line and a
// second one ends the input.
//
// After the ^D, Read waits for hold to close (nil: no wait) before its
// EOF, which closes hullctl's end of the stdin FIFO. A shim that reads
// that EOF before holding the FIFO open itself closes the terminal's
// master (containerd's runc shim does, just after create), and the
// hang-up kills the process, even before it started; the ^D already ends
// the input, so the FIFO has no reason to close before the process ends.
type endOfTransmission struct {
	r    io.Reader
	hold <-chan struct{}
	last byte
	tail []byte
	done bool
}

func (t *endOfTransmission) Read(p []byte) (int, error) {
	if t.done {
		if len(t.tail) == 0 {
			if t.hold != nil {
				<-t.hold
			}
			return 0, io.EOF
		}
		n := copy(p, t.tail)
		t.tail = t.tail[n:]
		return n, nil
	}
	n, err := t.r.Read(p)
	if n > 0 {
		t.last = p[n-1]
	}
	if err == io.EOF {
		t.done = true
		t.tail = []byte{4}
		if t.last != 0 && t.last != '\n' {
			t.tail = []byte{4, 4}
		}
		if n == 0 {
			return t.Read(p)
		}
		return n, nil
	}
	return n, err
}

// checkLogFile checks --log-file for run, exec and tasks start: it goes
// with --detach, and the shim opens it, so it must be absolute.
func checkLogFile(c *cli.Context) error {
	f := c.String("log-file")
	switch {
	case f == "":
		return nil
	case !c.Bool("detach"):
		return errors.New("--log-file goes with --detach")
	case !filepath.IsAbs(f):
		return fmt.Errorf("--log-file %q: the path must be absolute (the shim opens it, not hullctl)", f)
	}
	return nil
}

// detachedCreator gives a detached process --log-file, else logPath, else
// no stdio.
func detachedCreator(c *cli.Context, logPath string) cio.Creator {
	if f := c.String("log-file"); f != "" {
		return cio.LogFile(f)
	}
	if logPath != "" {
		return cio.LogFile(logPath)
	}
	return cio.NullIO
}

// startTask creates and starts ct's task. Detached, it returns once the
// task runs, its output going to logPath (or --log-file); attached, it
// follows the task to its end, deletes it and returns its exit code.
func (e *env) startTask(ctx context.Context, c *cli.Context, ct *client.Container, tty, detach bool, logPath string) (uint32, error) {
	creator := detachedCreator(c, logPath)
	var stdinEnded <-chan struct{}
	release := func() {}
	if !detach {
		creator, stdinEnded, release = e.stdioCreator(c, tty)
	}
	defer release()
	task, err := ct.NewTask(ctx, creator)
	if err != nil {
		return 0, named("task", ct.ID(), err)
	}
	if detach {
		if err := task.Start(ctx); err != nil {
			task.Delete(ctx)
			return 0, named("task", ct.ID(), err)
		}
		return 0, nil
	}
	code, err := e.follow(ctx, c, task, tty, true, stdinEnded)
	// Deleting waits for the last of the output, so it comes before
	// hullctl exits, also after a failed start (the shim goes).
	if _, derr := task.Delete(ctx, client.WithProcessKill); derr != nil && !errdefs.IsNotFound(derr) {
		err = errors.Join(err, named("task", ct.ID(), derr))
	}
	return code, err
}

// forwarded are the signals an attached hullctl passes on to the process
// it follows: those a user sends to stop or poke a foreground program.
var forwarded = []os.Signal{unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2}

// follow waits for p to exit, starting it first if start is set, while
// forwarding signals and, with tty, running the terminal raw and passing
// on its size. A process that stays alive --stop-timeout after a
// forwarded SIGINT or SIGTERM, or gets a second one, is killed: the
// container's init ignores signals it has no handler for (it is pid 1 of
// its namespace), and Ctrl-C must still end it. Once stdinEnded is
// closed (nil: never), the process's stdin is closed in the shim.
func (e *env) follow(ctx context.Context, c *cli.Context, p client.Process, tty, start bool, stdinEnded <-chan struct{}) (uint32, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	exited, err := p.Wait(wctx)
	if err != nil {
		return 0, err
	}
	sigc := make(chan os.Signal, 16)
	signal.Notify(sigc, forwarded...)
	defer signal.Stop(sigc)
	var console *os.File
	if f, ok := e.stdin.(*os.File); ok && tty && isTerminal(f) {
		console = f
		restore, err := makeRaw(int(f.Fd()))
		if err != nil {
			return 0, fmt.Errorf("terminal: %w", err)
		}
		defer restore()
		signal.Notify(sigc, unix.SIGWINCH)
	}
	if start {
		// A signal that came before ours was registered cancelled the
		// command's context: the user wants out, so do not start.
		if c.Context.Err() != nil {
			return 0, fmt.Errorf("%q: interrupted before it started", p.ID())
		}
		if err := p.Start(ctx); err != nil {
			return 0, named("process", p.ID(), err)
		}
	}
	if console != nil {
		resize(ctx, console, p)
	}
	if stdinEnded != nil {
		// After the start: an exec's stdin exists in the shim only
		// from then on.
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			select {
			case <-stdinEnded:
				if err := p.CloseIO(ctx, client.WithStdinCloser); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
					e.warn("close the input of %q: %v", p.ID(), err)
				}
			case <-wctx.Done():
			}
		}()
		defer func() { cancel(); <-closed }()
	}
	grace := c.Duration("stop-timeout")
	var timer <-chan time.Time
	var stopSig os.Signal
	terms := 0
	for {
		select {
		case st := <-exited:
			if st.Err != nil {
				return 0, fmt.Errorf("wait for %q: %w", p.ID(), st.Err)
			}
			return st.Code, nil
		case s := <-sigc:
			if s == unix.SIGWINCH {
				resize(ctx, console, p)
				continue
			}
			sig := s.(syscall.Signal)
			if err := p.Kill(ctx, sig); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
				e.warn("forward %s to %q: %v", unix.SignalName(sig), p.ID(), err)
			}
			if sig != unix.SIGINT && sig != unix.SIGTERM {
				continue
			}
			terms++
			switch {
			case terms > 1:
				e.warn("%s again: killing %q", unix.SignalName(sig), p.ID())
				p.Kill(ctx, unix.SIGKILL)
			case grace > 0:
				stopSig = s
				timer = time.After(grace)
			}
		case <-timer:
			timer = nil
			e.warn("%q did not exit within %s of %s: killing it", p.ID(), grace, unix.SignalName(stopSig.(syscall.Signal)))
			p.Kill(ctx, unix.SIGKILL)
		}
	}
}

// warn tells the user something on stderr; "\r\n" as the terminal may be
// raw.
func (e *env) warn(format string, args ...any) {
	fmt.Fprintf(e.stderr, "hullctl: "+format+"\r\n", args...)
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// makeRaw puts the terminal fd in raw mode (as cfmakeraw does), so that
// keys, Ctrl-C included, go to the container's terminal untouched; the
// returned function restores the previous mode.
func makeRaw(fd int) (func(), error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN] = 1
	raw.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, err
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}

// resize gives p's terminal the size of console.
func resize(ctx context.Context, console *os.File, p client.Process) {
	ws, err := unix.IoctlGetWinsize(int(console.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 || ws.Row == 0 {
		return
	}
	p.ResizePty(ctx, uint32(ws.Col), uint32(ws.Row))
}

// parseSignal reads a signal as a number (9), a name (SIGKILL) or a name
// without SIG (kill).
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 64 {
			return 0, fmt.Errorf("signal %q: numbers go from 1 to 64", s)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("signal %q: unknown (write SIGTERM, TERM or 15)", s)
}

func tasksLs(e *env) *cli.Command {
	return &cli.Command{
		Name:    "ls",
		Aliases: []string{"list"},
		Usage:   "list tasks",
		Flags:   listFlags(),
		Action: e.listAction(func(ctx context.Context, c *cli.Context, cl *client.Client) (listing, error) {
			ts, err := cl.Tasks(ctx, "")
			if err != nil {
				return listing{}, err
			}
			sort.Slice(ts, func(i, j int) bool { return ts[i].ContainerID < ts[j].ContainerID })
			type task struct {
				ID       string `json:"id"`
				Pid      uint32 `json:"pid"`
				Status   string `json:"status"`
				ExitCode uint32 `json:"exit_status"`
				ExitedAt string `json:"exited_at,omitempty"`
			}
			l := listing{header: []string{"TASK", "PID", "STATUS"}}
			js := []task{}
			for _, t := range ts {
				if t.ExecID != "" {
					continue
				}
				st := strings.ToUpper(string(t.Status.Status))
				l.add(t.ContainerID, t.ContainerID, fmt.Sprint(t.Pid), st)
				js = append(js, task{t.ContainerID, t.Pid, string(t.Status.Status), t.Status.ExitStatus, timeString(t.Status.ExitTime)})
			}
			l.json = js
			return l, nil
		}),
	}
}

func tasksStart(e *env) *cli.Command {
	return &cli.Command{
		Name:      "start",
		Usage:     "start a container's task and follow it (see run for signals and the exit code)",
		ArgsUsage: "CONTAINER",
		Flags:     append(ioFlags("the log file run -d gave the container, else nowhere"), &cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "start the task and return"}),
		Action: func(c *cli.Context) error {
			if err := checkLogFile(c); err != nil {
				return err
			}
			cl, ctx, err := e.connectFor(c, 1, "CONTAINER")
			if err != nil {
				return err
			}
			ctx = context.WithoutCancel(ctx)
			id := c.Args().First()
			ct, err := cl.LoadContainer(ctx, id)
			if err != nil {
				return named("container", id, err)
			}
			spec, err := ct.Spec(ctx)
			if err != nil {
				return named("container", id, err)
			}
			tty := spec.Process != nil && spec.Process.Terminal
			labels, err := ct.Labels(ctx)
			if err != nil {
				return named("container", id, err)
			}
			// A container made by run -d writes to its log again.
			logPath, _ := logFileOf(labels)
			code, err := e.startTask(ctx, c, ct, tty, c.Bool("detach"), logPath)
			if err != nil {
				return err
			}
			return exitWith(code)
		},
	}
}

func tasksAttach(e *env) *cli.Command {
	return &cli.Command{
		Name:      "attach",
		Usage:     "connect to the stdio FIFOs of a running task and follow it to its end",
		ArgsUsage: "CONTAINER",
		Flags:     []cli.Flag{&cli.DurationFlag{Name: "stop-timeout", Value: 10 * time.Second, Usage: "after forwarding SIGINT or SIGTERM, how long to wait before SIGKILL; 0 waits forever"}},
		Action: func(c *cli.Context) error {
			cl, ctx, err := e.connectFor(c, 1, "CONTAINER")
			if err != nil {
				return err
			}
			ctx = context.WithoutCancel(ctx)
			id := c.Args().First()
			var tty bool
			attach := func(cfg cio.Config) (cio.IO, error) {
				if !isFifoPath(cfg.Stdout) && !isFifoPath(cfg.Stdin) {
					return nil, fmt.Errorf("task %q has no stdio FIFOs to attach to (it was started detached, or its output goes to %q)", id, cfg.Stdout)
				}
				tty = cfg.Terminal
				return cio.NewAttach(cio.WithStreams(e.stdin, e.stdout, e.stderr))(cfg)
			}
			t, err := loadTask(ctx, cl, id, attach)
			if err != nil {
				return err
			}
			code, err := e.follow(ctx, c, t, tty, false, nil)
			if pio := t.IO(); pio != nil {
				pio.Wait()
				pio.Close()
			}
			if err != nil {
				return err
			}
			return exitWith(code)
		},
	}
}

// isFifoPath reports whether a stdio path the daemon reports is a FIFO
// (a plain path) rather than empty or a URI such as file://.
func isFifoPath(p string) bool { return p != "" && !strings.Contains(p, "://") }

func tasksKill(e *env) *cli.Command {
	return &cli.Command{
		Name:      "kill",
		Usage:     "send a signal to tasks",
		ArgsUsage: "CONTAINER...",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "signal", Aliases: []string{"s"}, Value: "SIGTERM", Usage: "signal to send: name or number"},
			&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "signal every process of the container"},
			&cli.StringFlag{Name: "exec-id", Usage: "signal this exec'd process instead of the task's init"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, "CONTAINER..."); err != nil {
				return err
			}
			sig, err := parseSignal(c.String("signal"))
			if err != nil {
				return err
			}
			if c.Bool("all") && c.String("exec-id") != "" {
				return errors.New("--all and --exec-id: give one or the other")
			}
			var opts []client.KillOpts
			if c.Bool("all") {
				opts = append(opts, client.WithKillAll)
			}
			if x := c.String("exec-id"); x != "" {
				opts = append(opts, client.WithKillExecID(x))
			}
			return e.eachTask(c, func(ctx context.Context, t *client.Task) error { return t.Kill(ctx, sig, opts...) })
		},
	}
}

// eachTask does fn to the task of every container named, going on after a
// failure; fn's errors are reported as about the task.
func (e *env) eachTask(c *cli.Context, fn func(context.Context, *client.Task) error) error {
	return e.eachNamed(c, func(ctx context.Context, cl *client.Client, id string) error {
		t, err := loadTask(ctx, cl, id, nil)
		if err != nil {
			return err
		}
		return named("task", id, fn(ctx, t))
	})
}

// taskAction builds a command that does one thing to each task named.
func taskAction(e *env, name, usage string, fn func(context.Context, *client.Task) error) *cli.Command {
	return &cli.Command{
		Name: name, Usage: usage, ArgsUsage: "CONTAINER...",
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, "CONTAINER..."); err != nil {
				return err
			}
			return e.eachTask(c, fn)
		},
	}
}

func tasksPause(e *env) *cli.Command {
	return taskAction(e, "pause", "freeze every process of tasks", func(ctx context.Context, t *client.Task) error { return t.Pause(ctx) })
}

func tasksResume(e *env) *cli.Command {
	return taskAction(e, "resume", "thaw paused tasks", func(ctx context.Context, t *client.Task) error { return t.Resume(ctx) })
}

func tasksExec(e *env) *cli.Command {
	return &cli.Command{
		Name:      "exec",
		Usage:     "run another process in a running task and follow it; hullctl exits with its exit code",
		ArgsUsage: "CONTAINER COMMAND [ARG...]",
		Flags: append(ioFlags("nowhere"),
			&cli.StringFlag{Name: "exec-id", Usage: "id of the process (default: a random one)"},
			&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "give the process a terminal"},
			&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "start the process, print its exec id and return"},
			&cli.StringFlag{Name: "cwd", Aliases: []string{"workdir", "w"}, Usage: "working directory (default: the container's)"},
			&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "user to run as (default: the container's), resolved in its /etc/passwd"},
			repeatedFlag("env", "add an environment variable KEY=VALUE (repeatable)", "e"),
			&cli.BoolFlag{Name: "interactive", Aliases: []string{"i"}, Usage: "connect stdin (it always is when exec follows the process; for nerdctl's -it)"},
		),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 2, "CONTAINER COMMAND [ARG...]"); err != nil {
				return err
			}
			env, err := parseEnv(repeatedOf(c, "env"))
			if err != nil {
				return err
			}
			if cwd := c.String("cwd"); cwd != "" && !strings.HasPrefix(cwd, "/") {
				return fmt.Errorf("--cwd %q: the working directory must be absolute", cwd)
			}
			if err := checkLogFile(c); err != nil {
				return err
			}
			cl, err := e.connect()
			if err != nil {
				return err
			}
			ctx := context.WithoutCancel(e.ctx(c))
			id := c.Args().First()
			ct, err := cl.LoadContainer(ctx, id)
			if err != nil {
				return named("container", id, err)
			}
			t, err := loadTask(ctx, cl, id, nil)
			if err != nil {
				return err
			}
			rec, err := ct.Info(ctx)
			if err != nil {
				return named("container", id, err)
			}
			spec, err := ct.Spec(ctx)
			if err != nil {
				return named("container", id, err)
			}
			if spec.Process == nil {
				return fmt.Errorf("container %q: its spec has no process to start from", id)
			}
			// The exec starts as a copy of the container's process, so
			// it gets the same environment, user and limits.
			tty := c.Bool("tty")
			spec.Process.Terminal = tty
			opts := append([]oci.SpecOpts{oci.WithProcessArgs(c.Args().Tail()...)}, processOpts(c, env)...)
			if tty {
				opts = append(opts, oci.WithTTY)
			}
			if err := oci.ApplyOpts(ctx, cl, &rec, spec, opts...); err != nil {
				return err
			}
			execID := c.String("exec-id")
			if execID == "" {
				execID = "exec-" + generateID()
			}
			detach := c.Bool("detach")
			creator := detachedCreator(c, "")
			var stdinEnded <-chan struct{}
			release := func() {}
			if !detach {
				creator, stdinEnded, release = e.stdioCreator(c, tty)
			}
			defer release()
			p, err := t.Exec(ctx, execID, spec.Process, creator)
			if err != nil {
				return named("exec", execID, err)
			}
			if detach {
				if err := p.Start(ctx); err != nil {
					p.Delete(ctx)
					return named("exec", execID, err)
				}
				fmt.Fprintln(e.stdout, execID)
				return nil
			}
			code, err := e.follow(ctx, c, p, tty, true, stdinEnded)
			if _, derr := p.Delete(ctx, client.WithProcessKill); derr != nil && !errdefs.IsNotFound(derr) {
				err = errors.Join(err, named("exec", execID, derr))
			}
			if err != nil {
				return err
			}
			return exitWith(code)
		},
	}
}

func tasksPs(e *env) *cli.Command {
	return &cli.Command{
		Name:      "ps",
		Usage:     "list the processes of a task",
		ArgsUsage: "CONTAINER",
		Flags:     listFlags(),
		Action: func(c *cli.Context) error {
			cl, ctx, err := e.connectFor(c, 1, "CONTAINER")
			if err != nil {
				return err
			}
			id := c.Args().First()
			t, err := loadTask(ctx, cl, id, nil)
			if err != nil {
				return err
			}
			ps, err := t.Pids(ctx)
			if err != nil {
				return named("task", id, err)
			}
			type proc struct {
				Pid    uint32 `json:"pid"`
				ExecID string `json:"exec_id,omitempty"`
			}
			l := listing{header: []string{"PID", "INFO"}}
			js := []proc{}
			for _, p := range ps {
				execID := execIDOf(p.Info)
				info := "-"
				if execID != "" {
					info = "exec_id=" + execID
				}
				l.add(fmt.Sprint(p.Pid), fmt.Sprint(p.Pid), info)
				js = append(js, proc{p.Pid, execID})
			}
			l.json = js
			return e.print(c, l)
		},
	}
}

// execIDOf decodes the runc shims' process details; "" for the init
// process or details of another kind.
func execIDOf(info typeurl.Any) string {
	if info == nil {
		return ""
	}
	v, err := typeurl.UnmarshalAny(info)
	if err != nil {
		return ""
	}
	if d, ok := v.(*runcopts.ProcessDetails); ok {
		return d.ExecID
	}
	return ""
}

func tasksMetrics(e *env) *cli.Command {
	return &cli.Command{
		Name:      "metrics",
		Aliases:   []string{"metric", "stats"},
		Usage:     "show a task's cgroup statistics (cgroup v1 or v2)",
		ArgsUsage: "CONTAINER",
		Flags:     []cli.Flag{&cli.StringFlag{Name: "format", Usage: "table or json (default: the global --format)"}},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, "CONTAINER"); err != nil {
				return err
			}
			format, err := e.formatOf(c)
			if err != nil {
				return err
			}
			cl, err := e.connect()
			if err != nil {
				return err
			}
			ctx := e.ctx(c)
			id := c.Args().First()
			t, err := loadTask(ctx, cl, id, nil)
			if err != nil {
				return err
			}
			m, err := t.Metrics(ctx)
			if err != nil {
				return named("task", id, err)
			}
			return e.printMetrics(m, format)
		},
	}
}

// printMetrics shows a task's statistics as a table of cgroup file names
// and values, or as the decoded message in JSON.
func (e *env) printMetrics(m *types.Metric, format string) error {
	rows, data, err := metricRows(m.Data)
	if err != nil {
		return fmt.Errorf("task %q: %w", m.ID, err)
	}
	ts := timeString(m.Timestamp.AsTime())
	if format == "json" {
		return e.printJSON(map[string]any{"id": m.ID, "timestamp": ts, "type": m.Data.GetTypeUrl(), "data": json.RawMessage(data)})
	}
	fmt.Fprintf(e.stdout, "ID\tTIMESTAMP\n%s\t%s\n\n", m.ID, ts)
	l := listing{header: []string{"METRIC", "VALUE"}, rows: rows}
	return e.printTable(l)
}

func tasksRm(e *env) *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Aliases:   []string{"remove", "delete", "del"},
		Usage:     "delete stopped tasks (the shim and its state); their exit codes are shown on stderr when not 0",
		ArgsUsage: "CONTAINER...",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "kill tasks that still run first"}},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, "CONTAINER..."); err != nil {
				return err
			}
			var opts []client.ProcessDeleteOpts
			if c.Bool("force") {
				opts = append(opts, client.WithProcessKill)
			}
			// Not removeCommand: the exit code goes to stderr after the
			// id goes to stdout.
			return e.eachNamed(c, func(ctx context.Context, cl *client.Client, id string) error {
				t, err := loadTask(ctx, cl, id, nil)
				if err != nil {
					return err
				}
				st, err := t.Delete(ctx, opts...)
				if err != nil {
					if errdefs.IsFailedPrecondition(err) {
						return fmt.Errorf("%w (kill it first, or use --force)", named("task", id, err))
					}
					return named("task", id, err)
				}
				fmt.Fprintln(e.stdout, id)
				if st.Code != 0 {
					fmt.Fprintf(e.stderr, "%s: exit code %d\n", id, st.Code)
				}
				return nil
			})
		},
	}
}

// metricRows decodes a task's statistics, cgroup v1's or v2's message, into
// rows named after the cgroup files they come from, and into JSON.
func metricRows(data *anypb.Any) ([][]string, []byte, error) {
	if data == nil {
		return nil, nil, errors.New("the runtime reported no statistics")
	}
	v, err := typeurl.UnmarshalAny(data)
	if err != nil {
		return nil, nil, fmt.Errorf("statistics of type %q: %w", data.GetTypeUrl(), err)
	}
	msg, ok := v.(proto.Message)
	if !ok {
		return nil, nil, fmt.Errorf("statistics of type %q are not a protobuf message", data.GetTypeUrl())
	}
	js, err := protojson.Marshal(msg)
	if err != nil {
		return nil, nil, err
	}
	var rows [][]string
	add := func(name string, v any) { rows = append(rows, []string{name, fmt.Sprint(v)}) }
	switch m := v.(type) {
	case *v1stats.Metrics:
		if p := m.GetPids(); p != nil {
			add("pids.current", p.GetCurrent())
			add("pids.limit", p.GetLimit())
		}
		if cpu := m.GetCPU(); cpu != nil {
			u := cpu.GetUsage()
			add("cpuacct.usage", u.GetTotal())
			add("cpuacct.usage_user", u.GetUser())
			add("cpuacct.usage_sys", u.GetKernel())
			add("cpuacct.usage_percpu", u.GetPerCPU())
			th := cpu.GetThrottling()
			add("cpu.stat.nr_periods", th.GetPeriods())
			add("cpu.stat.nr_throttled", th.GetThrottledPeriods())
			add("cpu.stat.throttled_time", th.GetThrottledTime())
		}
		if mem := m.GetMemory(); mem != nil {
			add("memory.usage_in_bytes", mem.GetUsage().GetUsage())
			add("memory.limit_in_bytes", mem.GetUsage().GetLimit())
			add("memory.max_usage_in_bytes", mem.GetUsage().GetMax())
			add("memory.failcnt", mem.GetUsage().GetFailcnt())
			add("memory.stat.cache", mem.GetCache())
			add("memory.stat.rss", mem.GetRSS())
			add("memory.stat.mapped_file", mem.GetMappedFile())
			add("memory.stat.total_cache", mem.GetTotalCache())
			add("memory.stat.total_rss", mem.GetTotalRSS())
			add("memory.memsw.usage_in_bytes", mem.GetSwap().GetUsage())
			add("memory.kmem.usage_in_bytes", mem.GetKernel().GetUsage())
		}
		if oom := m.GetMemoryOomControl(); oom != nil {
			add("memory.oom_control.under_oom", oom.GetUnderOom())
			add("memory.oom_control.oom_kill", oom.GetOomKill())
		}
		for _, b := range m.GetBlkio().GetIoServiceBytesRecursive() {
			add(fmt.Sprintf("blkio.io_service_bytes_recursive %d:%d %s", b.GetMajor(), b.GetMinor(), b.GetOp()), b.GetValue())
		}
	case *v2stats.Metrics:
		if p := m.GetPids(); p != nil {
			add("pids.current", p.GetCurrent())
			add("pids.max", p.GetLimit())
		}
		if cpu := m.GetCPU(); cpu != nil {
			add("cpu.stat.usage_usec", cpu.GetUsageUsec())
			add("cpu.stat.user_usec", cpu.GetUserUsec())
			add("cpu.stat.system_usec", cpu.GetSystemUsec())
			add("cpu.stat.nr_periods", cpu.GetNrPeriods())
			add("cpu.stat.nr_throttled", cpu.GetNrThrottled())
			add("cpu.stat.throttled_usec", cpu.GetThrottledUsec())
		}
		if mem := m.GetMemory(); mem != nil {
			add("memory.current", mem.GetUsage())
			add("memory.max", mem.GetUsageLimit())
			add("memory.peak", mem.GetMaxUsage())
			add("memory.swap.current", mem.GetSwapUsage())
			add("memory.swap.max", mem.GetSwapLimit())
			add("memory.stat.anon", mem.GetAnon())
			add("memory.stat.file", mem.GetFile())
			add("memory.stat.kernel_stack", mem.GetKernelStack())
			add("memory.stat.slab", mem.GetSlab())
			add("memory.stat.sock", mem.GetSock())
			add("memory.stat.shmem", mem.GetShmem())
		}
		if ev := m.GetMemoryEvents(); ev != nil {
			add("memory.events.high", ev.GetHigh())
			add("memory.events.max", ev.GetMax())
			add("memory.events.oom", ev.GetOom())
			add("memory.events.oom_kill", ev.GetOomKill())
		}
		for _, io := range m.GetIo().GetUsage() {
			dev := fmt.Sprintf("%d:%d", io.GetMajor(), io.GetMinor())
			add("io.stat "+dev+" rbytes", io.GetRbytes())
			add("io.stat "+dev+" wbytes", io.GetWbytes())
			add("io.stat "+dev+" rios", io.GetRios())
			add("io.stat "+dev+" wios", io.GetWios())
		}
	default:
		return nil, nil, fmt.Errorf("statistics of type %q: hullctl shows only cgroup v1 and v2 statistics", data.GetTypeUrl())
	}
	return rows, js, nil
}
