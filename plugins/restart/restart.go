// Package restart registers containerd's restart monitor,
// io.containerd.monitor.container.v1.restart: every interval it looks at
// the containers of every namespace that carry core/restart's status label
// and starts, or stops, their tasks as their labels ask. It works through
// the client library over hulld's service plugins in process, as the CRI
// plugin does, so a restart is the same NewTask and Start a client makes.
package restart

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/client/cio"
	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/core/restart"
	"github.com/hullrt/hull/plugin"
)

// DefaultInterval is how often the monitor looks when the config says
// nothing (or 0), as in containerd.
const DefaultInterval = 10 * time.Second

// changeTimeout bounds one restart or stop, so that one container whose
// shim hangs does not stop the monitor for the others.
const changeTimeout = time.Minute

// Config is the monitor's section,
// [plugins."io.containerd.monitor.container.v1.restart"].
type Config struct {
	Interval string `toml:"interval" doc:"How often containers labelled containerd.io/restart.status are checked and their tasks started or stopped to match (Go duration; 0 is the default, 10s)."`
}

// Register adds the restart monitor to r.
func Register(r *plugin.Registry) {
	r.Register(&plugin.Registration{
		Type: plugin.ContainerMonitorPlugin, ID: "restart",
		Requires: []plugin.Type{plugin.EventPlugin, plugin.ServicePlugin},
		Config:   &Config{Interval: DefaultInterval.String()},
		Init: func(ic *plugin.InitContext) (any, error) {
			interval, err := parseInterval(ic.Config.(*Config).Interval)
			if err != nil {
				return nil, err
			}
			c, err := client.NewInProcess(ic)
			if err != nil {
				return nil, err
			}
			ic.Meta.Capabilities = []string{restart.No, restart.Always, restart.OnFailure, restart.UnlessStopped}
			log := ic.Log
			if log == nil {
				log = slog.Default()
			}
			return Start(c, interval, log), nil
		},
	})
}

// parseInterval reads the interval setting: a Go duration, 0 (or empty)
// for the default.
func parseInterval(s string) (time.Duration, error) {
	if s == "" {
		return DefaultInterval, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("interval %q is not a positive Go duration: %w", s, errdefs.ErrInvalidArgument)
	}
	if d == 0 {
		return DefaultInterval, nil
	}
	return d, nil
}

// Monitor is the running restart monitor. Close stops it.
type Monitor struct {
	client   *client.Client
	interval time.Duration
	log      *slog.Logger
	cancel   context.CancelFunc
	done     chan struct{}

	// reported holds, by "<namespace>/<id>", the label error last logged
	// for a container, so that a bad label is logged once, not every
	// interval. Only the monitor's goroutine touches it.
	reported map[string]string
}

// Start runs a monitor over c that looks every interval, the first time at
// once, until Close.
func Start(c *client.Client, interval time.Duration, log *slog.Logger) *Monitor {
	ctx, cancel := context.WithCancel(context.Background())
	m := &Monitor{client: c, interval: interval, log: log, cancel: cancel, done: make(chan struct{}), reported: map[string]string{}}
	go m.run(ctx)
	return m
}

// Close stops the monitor, cancelling restarts in progress, and waits
// for it.
func (m *Monitor) Close() error {
	m.cancel()
	<-m.done
	return nil
}

func (m *Monitor) run(ctx context.Context) {
	defer close(m.done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		m.reconcile(ctx)
		timer.Reset(m.interval)
	}
}

// change is one container the monitor acts on.
type change struct {
	ns, id string
	action restart.Action
	labels map[string]string
}

// reconcile looks at every namespace once and applies what it decided,
// each change in its own goroutine (a restart waits for a kill), all
// done before it returns.
func (m *Monitor) reconcile(ctx context.Context) {
	nss, err := m.client.NamespaceService().List(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Error("restart monitor: list namespaces", "error", err)
		}
		return
	}
	reported := map[string]string{}
	var changes []change
	for _, ns := range nss {
		changes = append(changes, m.decide(client.WithNamespace(ctx, ns), ns, reported)...)
	}
	m.reported = reported
	var wg sync.WaitGroup
	for _, ch := range changes {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(client.WithNamespace(ctx, ch.ns), changeTimeout)
			defer cancel()
			log := m.log.With("namespace", ch.ns, "container", ch.id, "op", ch.action.String())
			var err error
			switch ch.action {
			case restart.Start:
				err = m.start(cctx, log, ch)
			case restart.Stop:
				err = m.stop(cctx, ch.id)
			}
			if err != nil && ctx.Err() == nil {
				log.Error("restart monitor", "error", err)
				return
			}
			log.Info("restart monitor: task " + map[restart.Action]string{restart.Start: "started again", restart.Stop: "stopped"}[ch.action])
		})
	}
	wg.Wait()
}

// decide returns the changes of namespace ns; label errors are recorded in
// reported, and logged unless they were last time.
func (m *Monitor) decide(ctx context.Context, ns string, reported map[string]string) []change {
	recs, err := m.client.ContainerService().List(ctx, fmt.Sprintf("labels.%q", restart.StatusLabel))
	if err != nil {
		if ctx.Err() == nil {
			m.log.Error("restart monitor: list containers", "namespace", ns, "error", err)
		}
		return nil
	}
	var out []change
	for _, rec := range recs {
		action, err := restart.Decide(rec.Labels, m.observe(ctx, ns, rec))
		if err != nil {
			key := ns + "/" + rec.ID
			if m.reported[key] != err.Error() {
				m.log.Warn("restart monitor: container left alone", "namespace", ns, "container", rec.ID, "error", err)
			}
			reported[key] = err.Error()
			continue
		}
		if action != restart.Leave {
			out = append(out, change{ns: ns, id: rec.ID, action: action, labels: rec.Labels})
		}
	}
	return out
}

// observe reads the container's task. A task that cannot be read counts
// as none, as in containerd: a container that should run gets a new one.
func (m *Monitor) observe(ctx context.Context, ns string, rec containers.Container) restart.Task {
	resp, err := m.client.TaskService().Get(ctx, &tasksapi.GetRequest{ContainerID: rec.ID})
	if err != nil {
		if !errdefs.IsNotFound(err) && ctx.Err() == nil {
			m.log.Warn("restart monitor: task state", "namespace", ns, "container", rec.ID, "error", err)
		}
		return restart.Task{}
	}
	p := resp.GetProcess()
	return restart.Task{Exists: true, Status: statusName(p.GetStatus()), ExitStatus: p.GetExitStatus()}
}

// statusName is the tasks API's status as the status label spells it.
func statusName(s task.Status) string {
	switch s {
	case task.Status_CREATED:
		return "created"
	case task.Status_RUNNING:
		return restart.Running
	case task.Status_STOPPED:
		return restart.Stopped
	case task.Status_PAUSED:
		return "paused"
	case task.Status_PAUSING:
		return "pausing"
	}
	return "unknown"
}

// start counts the restart in the container's labels, removes its old
// task and starts a new one with the log the labels name.
func (m *Monitor) start(ctx context.Context, log *slog.Logger, ch change) error {
	ct, err := m.client.LoadContainer(ctx, ch.id)
	if err != nil {
		return err
	}
	spec, err := ct.Spec(ctx)
	if err != nil {
		return err
	}
	tty := spec.Process != nil && spec.Process.Terminal
	creator, err := logCreator(ch.labels, tty)
	if err != nil {
		return err
	}
	if ch.labels[restart.LogURILabel] == "" && ch.labels[restart.LogPathLabel] != "" {
		log.Warn("restart monitor: label " + restart.LogPathLabel + " is containerd 1.x's; use " + restart.LogURILabel)
	}
	// An unreadable count restarts from zero, as containerd's does.
	count, _ := restart.Count(ch.labels)
	if _, err := ct.SetLabels(ctx, map[string]string{restart.CountLabel: strconv.Itoa(count + 1)}); err != nil {
		return err
	}
	if err := m.stop(ctx, ch.id); err != nil {
		return err
	}
	t, err := ct.NewTask(ctx, creator)
	if err != nil {
		return err
	}
	if err := t.Start(ctx); err != nil {
		// A task left created would hold its shim until the next look.
		if _, derr := t.Delete(ctx, client.WithProcessKill); derr != nil {
			log.Warn("restart monitor: remove the task that did not start", "error", derr)
		}
		return err
	}
	return nil
}

// stop kills the container's task, if it has one that is not stopped,
// and deletes it.
func (m *Monitor) stop(ctx context.Context, id string) error {
	ct, err := m.client.LoadContainer(ctx, id)
	if err != nil {
		return err
	}
	t, err := ct.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	st, err := t.Status(ctx)
	if err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	if st.Status != client.Stopped && err == nil {
		// The wait ends with the exit, or with wctx after a failed kill.
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		exited, err := t.Wait(wctx)
		if err != nil {
			return err
		}
		if err := t.Kill(ctx, syscall.SIGKILL, client.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		select {
		case <-exited:
		case <-ctx.Done():
			return fmt.Errorf("task of container %q did not exit after SIGKILL: %w", id, ctx.Err())
		}
	}
	if _, err := t.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// logCreator is the IO of a restarted task: the URI of the loguri label,
// else the file of the logpath label, else none.
func logCreator(labels map[string]string, tty bool) (cio.Creator, error) {
	uri := labels[restart.LogURILabel]
	if uri == "" {
		path := labels[restart.LogPathLabel]
		if path == "" {
			return cio.NullIO, nil
		}
		if !filepath.IsAbs(path) {
			return nil, fmt.Errorf("label %s: %q is not an absolute path: %w", restart.LogPathLabel, path, errdefs.ErrInvalidArgument)
		}
		uri = (&url.URL{Scheme: "file", Path: filepath.Clean(path)}).String()
	}
	u, err := url.Parse(uri)
	if err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("label %s: %q is not a URI: %w", restart.LogURILabel, uri, errdefs.ErrInvalidArgument)
	}
	cfg := cio.Config{Terminal: tty, Stdout: u.String(), Stderr: u.String()}
	if tty {
		// A terminal has one stream.
		cfg.Stderr = ""
	}
	return func(string) (cio.IO, error) { return uriIO{cfg}, nil }, nil
}

// uriIO is stdio the shim handles itself (file://, binary://): nothing
// to copy, wait for or close on the client's side.
type uriIO struct{ cfg cio.Config }

func (u uriIO) Config() cio.Config { return u.cfg }
func (uriIO) Cancel()              {}
func (uriIO) Wait()                {}
func (uriIO) Close() error         { return nil }
