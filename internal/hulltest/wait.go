package hulltest

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/core/events"
)

// Eventually calls check until it returns nil and fails the test if it
// has not within timeout, saying what was awaited and what check last
// reported. It is how tests wait for a state nothing notifies them of (a
// task's status, a file, a log line): polling the real condition, where a
// fixed sleep would be too short on a loaded machine and too long on an
// idle one. check runs on the test's goroutine, so it may fail the test
// itself.
func Eventually(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	// Short first intervals, since most waits end quickly; capped so that a
	// check that runs a command does not load the machine.
	interval := 5 * time.Millisecond
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(interval)
		interval = min(2*interval, 100*time.Millisecond)
	}
}

// ProcessExited reports whether process pid has exited: it is gone or a
// zombie its parent has not reaped yet. Tests use it to wait for a
// container's process while the daemon that would report the exit is down.
func ProcessExited(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the command name, which is in parentheses and may
	// itself hold spaces and parentheses.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || strings.HasPrefix(s[i+1:], " Z") || strings.HasPrefix(s[i+1:], " X")
}

// EventBus is what SubscribeReady needs of an events client (hull's
// client.EventService is one).
type EventBus interface {
	events.Publisher
	events.Subscriber
}

// readyTopic is the topic of the probe events SubscribeReady publishes;
// no daemon or shim publishes under it.
const readyTopic = "/hulltest/subscription-ready"

// SubscribeReady subscribes to bus with filters and returns only once the
// daemon delivers to the subscription, so that no event of what the test
// does next can be missed. A subscription starts on the daemon some time
// after Subscribe returns; SubscribeReady publishes probe events (in ctx's
// namespace, under a topic of its own) until one comes back through it.
// The probes never reach the returned channel. The subscription ends with
// ctx or with the test.
func SubscribeReady(t testing.TB, ctx context.Context, bus EventBus, filters ...string) (<-chan *events.Envelope, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	in, errs := bus.Subscribe(ctx, append(filters, `topic==`+strconv.Quote(readyTopic))...)
	// Events of the filters that arrive before the first probe are kept,
	// in order, for the caller.
	var early []*events.Envelope
	deadline := time.After(10 * time.Second)
	probes := 0
	ready := false
	for !ready {
		probes++
		if err := bus.Publish(ctx, readyTopic, &emptypb.Empty{}); err != nil {
			t.Fatalf("publish a subscription probe: %v", err)
		}
		// A probe published before the subscription started is lost:
		// publish another if none has come back in a while.
		retry := time.After(100 * time.Millisecond)
	wait:
		for {
			select {
			case env, ok := <-in:
				if !ok {
					t.Fatalf("event subscription %v ended before it started: %v", filters, <-errs)
				}
				if env.Topic == readyTopic {
					ready = true
					break wait
				}
				early = append(early, env)
			case <-retry:
				break wait
			case <-deadline:
				t.Fatalf("event subscription %v: none of %d probes came back within 10s", filters, probes)
			}
		}
	}
	out := make(chan *events.Envelope)
	go func() {
		defer close(out)
		send := func(env *events.Envelope) bool {
			select {
			case out <- env:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for _, env := range early {
			if !send(env) {
				return
			}
		}
		for env := range in {
			if env.Topic == readyTopic {
				continue // a later copy of a retried probe
			}
			if !send(env) {
				return
			}
		}
	}()
	return out, errs
}
