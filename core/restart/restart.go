// Package restart holds the restart policies of containers, as containerd's
// restart monitor reads them from container labels, and the decision the
// monitor takes for each container: leave it, start its task again, or stop
// it.
//
// A container opts in with StatusLabel, the status its task should have
// ("running" or "stopped"). The monitor (plugins/restart) looks at every
// such container of every namespace each interval; when a container that
// should run has no task, or a task that is not running (paused ones are
// left alone), PolicyLabel says whether it is started again:
//
//	always (or no label)  always
//	on-failure[:N]        when the task exited non-zero, at most N times
//	                      (N counted in CountLabel; no N, no limit)
//	unless-stopped        unless ExplicitlyStoppedLabel is true
//	no                    never
//
// Every restart increments CountLabel, whatever the policy. The new task's
// stdout and stderr go to LogURILabel's URI (file://, binary://), else to
// LogPathLabel's file, else nowhere. A container that should be stopped
// and has a task has it killed.
//
// A policy label the monitor cannot read is reported and the container is
// left alone: a typo must not turn into a crash loop.
package restart

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// The labels of containerd's restart monitor.
const (
	// StatusLabel is the status the container's task should have:
	// "running" or "stopped".
	StatusLabel = "containerd.io/restart.status"
	// PolicyLabel is the restart policy: always, on-failure[:N],
	// unless-stopped or no.
	PolicyLabel = "containerd.io/restart.policy"
	// CountLabel counts the monitor's restarts of the container.
	CountLabel = "containerd.io/restart.count"
	// ExplicitlyStoppedLabel is "true" once a user stopped the container,
	// which unless-stopped honours.
	ExplicitlyStoppedLabel = "containerd.io/restart.explicitly-stopped"
	// LogURILabel is the URI the restarted task's stdout and stderr go to.
	LogURILabel = "containerd.io/restart.loguri"
	// LogPathLabel is the file the restarted task logs to, the label of
	// containerd 1.x; containerd 2.x ignores it, hull still honours it
	// when LogURILabel is not set.
	LogPathLabel = "containerd.io/restart.logpath"
)

// The statuses StatusLabel names, as the tasks API reports them.
const (
	Running = "running"
	Stopped = "stopped"
)

// The policy names.
const (
	Always        = "always"
	OnFailure     = "on-failure"
	UnlessStopped = "unless-stopped"
	No            = "no"
)

// maxPolicyLength bounds the label a policy is parsed from; labels are
// short, and an error quotes the value.
const maxPolicyLength = 64

// Policy is a parsed restart policy.
type Policy struct {
	// Name is always, on-failure, unless-stopped or no.
	Name string
	// MaxRetries limits on-failure's restarts; 0 is no limit.
	MaxRetries int
}

// String is the policy as the label spells it.
func (p Policy) String() string {
	if p.MaxRetries > 0 {
		return p.Name + ":" + strconv.Itoa(p.MaxRetries)
	}
	return p.Name
}

// ParsePolicy reads a PolicyLabel value. The empty value is always, as in
// containerd; only on-failure takes a count. Anything else is
// InvalidArgument naming the value.
func ParsePolicy(s string) (Policy, error) {
	if len(s) > maxPolicyLength {
		return Policy{}, fmt.Errorf("restart policy %.32q... is longer than %d bytes: %w", s, maxPolicyLength, errdefs.ErrInvalidArgument)
	}
	name, count, hasCount := strings.Cut(s, ":")
	switch name {
	case "", Always, UnlessStopped, No:
		if hasCount {
			return Policy{}, fmt.Errorf("restart policy %q: only %s takes a retry count: %w", s, OnFailure, errdefs.ErrInvalidArgument)
		}
		if name == "" {
			name = Always
		}
		return Policy{Name: name}, nil
	case OnFailure:
		p := Policy{Name: name}
		if hasCount {
			n, err := strconv.Atoi(count)
			if err != nil || n < 0 || strings.HasPrefix(count, "+") {
				return Policy{}, fmt.Errorf("restart policy %q: retry count %q is not a number of retries: %w", s, count, errdefs.ErrInvalidArgument)
			}
			p.MaxRetries = n
		}
		return p, nil
	}
	return Policy{}, fmt.Errorf("restart policy %q is not one of %s, %s[:N], %s, %s: %w", s, Always, OnFailure, UnlessStopped, No, errdefs.ErrInvalidArgument)
}

// Task is what the monitor observed of a container's task.
type Task struct {
	// Exists is false when the container has no task (or it could not
	// be read).
	Exists bool
	// Status is the task's status: created, running, stopped, paused,
	// pausing or unknown.
	Status string
	// ExitStatus is the exit code of a stopped task.
	ExitStatus uint32
}

// Action is what the monitor does to a container.
type Action int

const (
	// Leave the container as it is.
	Leave Action = iota
	// Start a new task (after removing the old one).
	Start
	// Stop the task.
	Stop
)

func (a Action) String() string {
	switch a {
	case Start:
		return "start"
	case Stop:
		return "stop"
	}
	return "leave"
}

// Decide returns what to do to a container with labels whose task is
// task. An error (InvalidArgument, naming the label and value) comes with
// Leave: the labels ask for something the monitor cannot read.
func Decide(labels map[string]string, task Task) (Action, error) {
	desired := labels[StatusLabel]
	switch desired {
	case Running:
	case Stopped:
		if task.Exists && task.Status != Stopped {
			return Stop, nil
		}
		return Leave, nil
	default:
		// containerd leaves a status it does not act on alone too.
		return Leave, nil
	}
	if task.Exists {
		switch task.Status {
		case Running, "paused", "pausing":
			return Leave, nil
		}
	}
	policy, err := ParsePolicy(labels[PolicyLabel])
	if err != nil {
		return Leave, fmt.Errorf("label %s: %w", PolicyLabel, err)
	}
	switch policy.Name {
	case Always:
		return Start, nil
	case UnlessStopped:
		stopped, _ := strconv.ParseBool(labels[ExplicitlyStoppedLabel])
		if stopped {
			return Leave, nil
		}
		return Start, nil
	case OnFailure:
		count, err := Count(labels)
		if err != nil {
			return Leave, err
		}
		// A task that is gone left no exit status: as with containerd,
		// it did not fail as far as the monitor knows.
		if task.ExitStatus != 0 && (policy.MaxRetries == 0 || count < policy.MaxRetries) {
			return Start, nil
		}
	}
	return Leave, nil
}

// Count reads CountLabel: 0 when it is not set, InvalidArgument when it is
// not a count.
func Count(labels map[string]string) (int, error) {
	v, ok := labels[CountLabel]
	if !ok || v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("label %s: %q is not a count: %w", CountLabel, v, errdefs.ErrInvalidArgument)
	}
	return n, nil
}
