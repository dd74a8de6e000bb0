// Package runc runs the runc command line (or a compatible one such as crun)
// for the shim. Every invocation goes through the shim's reaper, because the
// shim is a subreaper whose single wait4 loop collects all of its children.
// Errors carry runc's own message, read from its JSON log, so that the text
// a user sees ("exec: \"x\": executable file not found in $PATH") is runc's.
package runc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/shim/reaper"
)

// Runc is how to run one runtime binary over one state root.
type Runc struct {
	// Binary is the runtime's name or path ("runc" when empty).
	Binary string
	// Root is the runtime's state directory (--root).
	Root string
	// Log is the JSON log file runc appends to; error messages are read
	// back from it.
	Log string
	// SystemdCgroup passes --systemd-cgroup.
	SystemdCgroup bool
	// Reaper starts and waits for the runtime's processes.
	Reaper *reaper.Reaper
	// VersionCache is a directory where the binary's probed version is
	// kept for later shims (see Version); "" keeps it in memory only.
	VersionCache string

	logMu sync.Mutex // one reader of Log's tail at a time
}

// Stdio are the files a created or executed process gets as 0, 1 and 2.
type Stdio struct {
	Stdin, Stdout, Stderr *os.File
}

// CreateOpts are the options of runc create.
type CreateOpts struct {
	Stdio
	PidFile       string
	ConsoleSocket string
	NoPivot       bool
}

// ExecOpts are the options of runc exec --detach.
type ExecOpts struct {
	Stdio
	PidFile       string
	ConsoleSocket string
}

func (r *Runc) binary() string {
	if r.Binary == "" {
		return "runc"
	}
	return r.Binary
}

func (r *Runc) globalArgs() []string {
	a := []string{}
	if r.Root != "" {
		a = append(a, "--root", r.Root)
	}
	if r.Log != "" {
		a = append(a, "--log", r.Log, "--log-format", "json")
	}
	if r.SystemdCgroup {
		a = append(a, "--systemd-cgroup")
	}
	return a
}

// Create runs runc create for id in bundle.
func (r *Runc) Create(ctx context.Context, id, bundle string, o CreateOpts) error {
	args := []string{"create", "--bundle", bundle, "--pid-file", o.PidFile}
	if o.ConsoleSocket != "" {
		args = append(args, "--console-socket", o.ConsoleSocket)
	}
	if o.NoPivot {
		args = append(args, "--no-pivot")
	}
	_, err := r.run(ctx, &o.Stdio, nil, append(args, id)...)
	return err
}

// Exec runs runc exec --detach with the process spec in processFile.
func (r *Runc) Exec(ctx context.Context, id, processFile string, o ExecOpts) error {
	args := []string{"exec", "--detach", "--process", processFile, "--pid-file", o.PidFile}
	if o.ConsoleSocket != "" {
		args = append(args, "--console-socket", o.ConsoleSocket)
	}
	_, err := r.run(ctx, &o.Stdio, nil, append(args, id)...)
	return err
}

// Start runs runc start.
func (r *Runc) Start(ctx context.Context, id string) error {
	_, err := r.run(ctx, nil, nil, "start", id)
	return err
}

// Delete runs runc delete, with --force when force is set.
func (r *Runc) Delete(ctx context.Context, id string, force bool) error {
	args := []string{"delete"}
	if force {
		args = append(args, "--force")
	}
	ctx, cancel := uninterrupted(ctx)
	defer cancel()
	_, err := r.run(ctx, nil, nil, append(args, id)...)
	return err
}

// uninterrupted keeps ctx's values but not its cancellation, and bounds
// the command by cgroupCommandTimeout instead: runc kill --all, delete
// --force, pause, resume and update freeze the container's cgroup (v1)
// while they work, and a runc killed between its freeze and its thaw
// leaves the container frozen for good, its processes unkillable. A
// client that goes away (hulld dying mid-call) must not do that.
func uninterrupted(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), cgroupCommandTimeout)
}

// cgroupCommandTimeout is a last resort for a runc that hangs: far above
// what a freeze, a signal and a thaw take.
const cgroupCommandTimeout = 2 * time.Minute

// Kill sends sig to the container's init, or with all to every process in
// it.
func (r *Runc) Kill(ctx context.Context, id string, sig int, all bool) error {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	ctx, cancel := uninterrupted(ctx)
	defer cancel()
	_, err := r.run(ctx, nil, nil, append(args, id, strconv.Itoa(sig))...)
	return err
}

// Pause freezes the container.
func (r *Runc) Pause(ctx context.Context, id string) error {
	ctx, cancel := uninterrupted(ctx)
	defer cancel()
	_, err := r.run(ctx, nil, nil, "pause", id)
	return err
}

// Resume thaws the container.
func (r *Runc) Resume(ctx context.Context, id string) error {
	ctx, cancel := uninterrupted(ctx)
	defer cancel()
	_, err := r.run(ctx, nil, nil, "resume", id)
	return err
}

// Update applies resources, a runtime-spec LinuxResources in JSON.
func (r *Runc) Update(ctx context.Context, id string, resources []byte) error {
	ctx, cancel := uninterrupted(ctx)
	defer cancel()
	_, err := r.run(ctx, nil, resources, "update", "--resources", "-", id)
	return err
}

// Ps returns the pids of the container's processes.
func (r *Runc) Ps(ctx context.Context, id string) ([]int, error) {
	out, err := r.run(ctx, nil, nil, "ps", "--format", "json", id)
	if err != nil {
		return nil, err
	}
	return ParsePs(out)
}

// State is what runc state reports of a container.
type State struct {
	ID      string    `json:"id"`
	Pid     int       `json:"pid"`
	Status  string    `json:"status"`
	Bundle  string    `json:"bundle"`
	Rootfs  string    `json:"rootfs"`
	Created time.Time `json:"created"`
}

// State runs runc state.
func (r *Runc) State(ctx context.Context, id string) (*State, error) {
	out, err := r.run(ctx, nil, nil, "state", id)
	if err != nil {
		return nil, err
	}
	return ParseState(out)
}

// ParsePs reads runc ps --format json output: a JSON array of pids
// ("null" when the container has none).
func ParsePs(b []byte) ([]int, error) {
	var pids []int
	if err := json.Unmarshal(bytes.TrimSpace(b), &pids); err != nil {
		return nil, fmt.Errorf("runc ps output %q: %w", truncate(b), err)
	}
	return pids, nil
}

// ParseState reads runc state output.
func ParseState(b []byte) (*State, error) {
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("runc state output %q: %w", truncate(b), err)
	}
	if s.ID == "" {
		return nil, fmt.Errorf("runc state output %q has no id: %w", truncate(b), errdefs.ErrInvalidArgument)
	}
	return &s, nil
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

// LastError returns the message of the last error or fatal entry in a runc
// JSON log (one object per line), or "" if there is none. Lines that are
// not JSON are skipped: runc init may write plain text before logging is
// set up.
func LastError(log []byte) string {
	var msg string
	for _, line := range bytes.Split(log, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var e struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(line, &e) != nil {
			continue
		}
		if (e.Level == "error" || e.Level == "fatal") && e.Msg != "" {
			msg = e.Msg
		}
	}
	return msg
}

// run runs the runtime with args; stdio, when not nil, are the process's
// files (create and exec pass the container's), otherwise stdout is
// captured and returned and stderr is kept for the error.
func (r *Runc) run(ctx context.Context, stdio *Stdio, stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.Command(r.binary(), append(r.globalArgs(), args...)...)
	var outR, errR *os.File
	var closeAfterStart []*os.File
	if stdio != nil {
		// A nil *os.File in an io.Reader is not a nil interface: set only
		// the files there are, so the rest go to /dev/null.
		if stdio.Stdin != nil {
			cmd.Stdin = stdio.Stdin
		}
		if stdio.Stdout != nil {
			cmd.Stdout = stdio.Stdout
		}
		if stdio.Stderr != nil {
			cmd.Stderr = stdio.Stderr
		}
	} else {
		var outW, errW *os.File
		var err error
		if outR, outW, err = os.Pipe(); err != nil {
			return nil, err
		}
		defer outR.Close()
		if errR, errW, err = os.Pipe(); err != nil {
			outW.Close()
			return nil, err
		}
		defer errR.Close()
		cmd.Stdout, cmd.Stderr = outW, errW
		closeAfterStart = append(closeAfterStart, outW, errW)
		if stdin != nil {
			inR, inW, err := os.Pipe()
			if err != nil {
				outW.Close()
				errW.Close()
				return nil, err
			}
			cmd.Stdin = inR
			closeAfterStart = append(closeAfterStart, inR)
			go func() {
				inW.Write(stdin)
				inW.Close()
			}()
		}
	}
	logStart := r.logSize()
	wait, err := r.Reaper.Start(cmd)
	for _, f := range closeAfterStart {
		f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("start %s %s: %w", r.binary(), args[0], err)
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			cmd.Process.Signal(unix.SIGKILL)
		case <-done:
		}
	}()
	var out, errOut []byte
	if outR != nil {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); errOut, _ = io.ReadAll(errR) }()
		out, _ = io.ReadAll(outR)
		wg.Wait()
	}
	status := wait()
	close(done)
	if status != 0 {
		msg := r.logErrorSince(logStart)
		if msg == "" {
			msg = strings.TrimSpace(string(errOut))
		}
		if msg == "" {
			msg = fmt.Sprintf("exit status %d", status)
		}
		// runc's fatal errors already say "runc create failed: ..."
		// or, for exec, "exec failed: ...".
		if !strings.HasPrefix(msg, filepath.Base(r.binary())+" "+args[0]) && !strings.HasPrefix(msg, args[0]+" failed") {
			msg = fmt.Sprintf("%s %s failed: %s", r.binary(), args[0], msg)
		}
		return out, classify(errors.New(msg))
	}
	return out, nil
}

func (r *Runc) logSize() int64 {
	if r.Log == "" {
		return 0
	}
	fi, err := os.Stat(r.Log)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func (r *Runc) logErrorSince(off int64) string {
	if r.Log == "" {
		return ""
	}
	r.logMu.Lock()
	defer r.logMu.Unlock()
	f, err := os.Open(r.Log)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.NewSectionReader(f, off, 1<<20))
	return LastError(b)
}

// classify gives runc failures the errdefs kind their message implies, so
// that a kill of a stopped container reaches the caller as NotFound.
func classify(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "does not exist"), strings.Contains(msg, "not running"),
		strings.Contains(msg, "process already finished"), strings.Contains(msg, "no such process"):
		return fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
	case strings.Contains(msg, "already exists"):
		return fmt.Errorf("%w: %w", err, errdefs.ErrAlreadyExists)
	}
	return err
}

// IsNotFound reports whether err says the container or process is gone.
func IsNotFound(err error) bool { return errors.Is(err, errdefs.ErrNotFound) }
