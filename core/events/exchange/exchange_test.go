package exchange

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"

	"github.com/hullrt/hull/core/events"
	"github.com/hullrt/hull/core/namespaces"
)

type testEvent struct {
	Publisher int
	Seq       int
}

func init() {
	typeurl.Register(&testEvent{}, "hull.test.exchange", "TestEvent")
}

func nsCtx(ns string) context.Context {
	return namespaces.WithNamespace(context.Background(), ns)
}

func decode(t *testing.T, env *events.Envelope) *testEvent {
	t.Helper()
	v, err := typeurl.UnmarshalAny(env.Event)
	if err != nil {
		t.Errorf("unmarshal event of %s: %v", env.Topic, err)
		return &testEvent{Publisher: -1, Seq: -1}
	}
	ev, ok := v.(*testEvent)
	if !ok {
		t.Errorf("event of %s is %T", env.Topic, v)
		return &testEvent{Publisher: -1, Seq: -1}
	}
	return ev
}

// receive reads n envelopes from ch, failing on a timeout or a closed
// channel. It may run outside the test's goroutine: on failure it returns
// fewer envelopes rather than calling t.Fatal.
func receive(t *testing.T, ch <-chan *events.Envelope, n int) []*events.Envelope {
	t.Helper()
	var got []*events.Envelope
	timeout := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case env, ok := <-ch:
			if !ok {
				t.Errorf("channel closed after %d envelopes, want %d", len(got), n)
				return got
			}
			got = append(got, env)
		case <-timeout:
			t.Errorf("timed out after %d envelopes, want %d", len(got), n)
			return got
		}
	}
	return got
}

// receiveOne reads one envelope from ch in the test's goroutine.
func receiveOne(t *testing.T, ch <-chan *events.Envelope) *events.Envelope {
	t.Helper()
	got := receive(t, ch, 1)
	if len(got) == 0 {
		t.FailNow()
	}
	return got[0]
}

// expectNothing checks that nothing is delivered for a short while.
func expectNothing(t *testing.T, ch <-chan *events.Envelope) {
	t.Helper()
	select {
	case env := <-ch:
		t.Fatalf("unexpected envelope %+v", env)
	case <-time.After(50 * time.Millisecond):
	}
}

// waitClosed waits for both channels of a subscription to close and returns
// the error received, if any. Like receive, it reports failures with
// t.Errorf, so that it may run outside the test's goroutine.
func waitClosed(t *testing.T, ch <-chan *events.Envelope, errs <-chan error) error {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for ch != nil {
		select {
		case _, ok := <-ch:
			if !ok {
				ch = nil
			}
		case <-timeout:
			t.Error("envelope channel not closed")
			return nil
		}
	}
	var err error
	for {
		select {
		case e, ok := <-errs:
			if !ok {
				return err
			}
			if err != nil {
				t.Errorf("second error %v after %v", e, err)
			}
			err = e
		case <-timeout:
			t.Error("error channel not closed")
			return err
		}
	}
}

func TestPublishSubscribeFilters(t *testing.T) {
	ex := New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	all, _ := ex.Subscribe(ctx)
	tasks, _ := ex.Subscribe(ctx, `topic~="^/tasks/"`)
	ns2, _ := ex.Subscribe(ctx, "namespace==ns2")
	either, _ := ex.Subscribe(ctx, `topic=="/tasks/exit",namespace==ns1`, `topic=="/images/create"`)

	publish := []struct {
		ns, topic string
	}{
		{"ns1", "/tasks/exit"},
		{"ns2", "/tasks/exit"},
		{"ns1", "/images/create"},
		{"ns2", "/namespaces/create"},
	}
	for i, p := range publish {
		if err := ex.Publish(nsCtx(p.ns), p.topic, &testEvent{Seq: i}); err != nil {
			t.Fatal(err)
		}
	}

	check := func(name string, ch <-chan *events.Envelope, want ...int) {
		t.Helper()
		got := receive(t, ch, len(want))
		for i, env := range got {
			p := publish[want[i]]
			if env.Namespace != p.ns || env.Topic != p.topic || decode(t, env).Seq != want[i] {
				t.Errorf("%s: envelope %d is %s %s, want %s %s", name, i, env.Namespace, env.Topic, p.ns, p.topic)
			}
			if env.Timestamp.IsZero() || env.Timestamp.Location() != time.UTC {
				t.Errorf("%s: timestamp %v is not a UTC time", name, env.Timestamp)
			}
		}
		expectNothing(t, ch)
	}
	check("all", all, 0, 1, 2, 3)
	check("tasks", tasks, 0, 1)
	check("ns2", ns2, 1, 3)
	check("either", either, 0, 2)
}

func TestPublishOrder(t *testing.T) {
	ex := New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, _ := ex.Subscribe(ctx)
	const n = 2000
	go func() {
		for i := 0; i < n; i++ {
			if err := ex.Publish(nsCtx("default"), "/test/order", &testEvent{Seq: i}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i, env := range receive(t, ch, n) {
		if seq := decode(t, env).Seq; seq != i {
			t.Fatalf("envelope %d has sequence %d", i, seq)
		}
	}
}

func TestPublishAny(t *testing.T) {
	ex := New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, _ := ex.Subscribe(ctx)
	a, err := typeurl.MarshalAny(&testEvent{Seq: 7})
	if err != nil {
		t.Fatal(err)
	}
	if err := ex.Publish(nsCtx("default"), "/test/any", a); err != nil {
		t.Fatal(err)
	}
	env := receiveOne(t, ch)
	if env.Event != a {
		t.Errorf("a typeurl.Any was not published as is")
	}
}

func TestForward(t *testing.T) {
	ex := New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, _ := ex.Subscribe(ctx, "namespace==shimns")
	a, err := typeurl.MarshalAny(&testEvent{Seq: 42})
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)
	in := &events.Envelope{Timestamp: ts, Namespace: "shimns", Topic: "/tasks/oom", Event: a}
	// Forward does not need a namespace in ctx: the envelope has one.
	if err := ex.Forward(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	env := receiveOne(t, ch)
	if !env.Timestamp.Equal(ts) || env.Namespace != "shimns" || env.Topic != "/tasks/oom" || env.Event != a {
		t.Errorf("forwarded %+v, got %+v", in, env)
	}
	if env == in {
		t.Error("the caller's envelope was delivered, not a copy")
	}
}

func TestInvalidTopics(t *testing.T) {
	ex := New()
	ev := &testEvent{}
	a, _ := typeurl.MarshalAny(ev)
	for _, topic := range []string{
		"", "a", "/", "//a", "/a/", "/a//b", "/a b", "a/b", "/a/\x00", "/é",
		"/" + strings.Repeat("a", maxTopicLength),
	} {
		err := ex.Publish(nsCtx("default"), topic, ev)
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Publish to %q: got %v, want InvalidArgument", topic, err)
		} else if len(topic) < 64 && !strings.Contains(err.Error(), fmt.Sprintf("%q", topic)) {
			t.Errorf("Publish to %q: error %q does not name the topic", topic, err)
		}
		err = ex.Forward(context.Background(), &events.Envelope{Namespace: "default", Topic: topic, Event: a})
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Forward to %q: got %v, want InvalidArgument", topic, err)
		}
	}
	for _, topic := range []string{"/a", "/namespaces/create", "/a.b/c-d_e/F9", "/" + strings.Repeat("a", maxTopicLength-1)} {
		if err := ex.Publish(nsCtx("default"), topic, ev); err != nil {
			t.Errorf("Publish to %q: %v", topic, err)
		}
	}
}

func TestInvalidNamespaceAndEvent(t *testing.T) {
	ex := New()
	a, _ := typeurl.MarshalAny(&testEvent{})

	err := ex.Publish(context.Background(), "/a", &testEvent{})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("Publish without a namespace: got %v, want FailedPrecondition", err)
	}
	err = ex.Publish(nsCtx("bad ns"), "/a", &testEvent{})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Publish in a bad namespace: got %v, want InvalidArgument", err)
	}
	for _, ns := range []string{"", "bad ns", "-a"} {
		err = ex.Forward(context.Background(), &events.Envelope{Namespace: ns, Topic: "/a", Event: a})
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Forward in namespace %q: got %v, want InvalidArgument", ns, err)
		}
	}
	if err := ex.Forward(context.Background(), nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Forward(nil): got %v, want InvalidArgument", err)
	}
	if err := ex.Forward(context.Background(), &events.Envelope{Namespace: "a", Topic: "/a"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Forward without an event: got %v, want InvalidArgument", err)
	}

	type unregistered struct{}
	for _, ev := range []any{nil, (*testEvent)(nil), testEvent{}, 42, &unregistered{}} {
		err := ex.Publish(nsCtx("default"), "/a", ev)
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Publish(%#v): got %v, want InvalidArgument", ev, err)
		}
	}
}

func TestCancelClosesChannels(t *testing.T) {
	ex := New()
	ctx, cancel := context.WithCancel(context.Background())
	ch, errs := ex.Subscribe(ctx)
	if err := ex.Publish(nsCtx("default"), "/a", &testEvent{}); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := waitClosed(t, ch, errs); err != nil {
		t.Fatalf("error %v on cancel", err)
	}
	// Publishing after the subscriber left is fine.
	if err := ex.Publish(nsCtx("default"), "/a", &testEvent{}); err != nil {
		t.Fatal(err)
	}
	ex.mu.Lock()
	n := len(ex.subscribers)
	ex.mu.Unlock()
	if n != 0 {
		t.Errorf("%d subscribers left after cancel", n)
	}
}

func TestSubscribeCancelledContext(t *testing.T) {
	ex := New()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ch, errs := ex.Subscribe(ctx)
	if err := waitClosed(t, ch, errs); err != nil {
		t.Fatal(err)
	}
}

func TestSubscribeBadFilter(t *testing.T) {
	ex := New()
	ch, errs := ex.Subscribe(context.Background(), "topic==/a/", "topic==")
	err := waitClosed(t, ch, errs)
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), `filter "topic=="`) {
		t.Fatalf("got %v, want an InvalidArgument error naming the filter", err)
	}
}

func TestSlowSubscriber(t *testing.T) {
	ex := New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slow, slowErrs := ex.Subscribe(ctx)
	fast, fastErrs := ex.Subscribe(ctx)

	const (
		total = QueueLength + 100
		batch = 1000
	)
	// The fast subscriber reads batch by batch; publishing waits for it, since
	// a tight publishing loop can outrun any reader.
	var fastGot []*events.Envelope
	progress := make(chan struct{})
	go func() {
		defer close(progress)
		for len(fastGot) < total {
			want := min(batch, total-len(fastGot))
			got := receive(t, fast, want)
			fastGot = append(fastGot, got...)
			if len(got) < want {
				return
			}
			progress <- struct{}{}
		}
	}()
	for i := 0; i < total; i++ {
		if err := ex.Publish(nsCtx("default"), "/a", &testEvent{Seq: i}); err != nil {
			t.Fatal(err)
		}
		if (i+1)%batch == 0 || i+1 == total {
			<-progress
		}
	}
	<-progress // closed
	for i, env := range fastGot {
		if decode(t, env).Seq != i {
			t.Fatalf("fast subscriber: envelope %d out of order", i)
		}
	}

	// The slow subscriber gets a gapless prefix, then the error.
	var delivered int
	for env := range slow {
		if seq := decode(t, env).Seq; seq != delivered {
			t.Fatalf("slow subscriber: envelope %d has sequence %d", delivered, seq)
		}
		delivered++
	}
	err := <-slowErrs
	if err == nil {
		t.Fatal("no error for the slow subscriber")
	}
	if _, ok := <-slowErrs; ok {
		t.Error("error channel not closed")
	}
	dropped := total - delivered
	if delivered < QueueLength || dropped <= 0 {
		t.Errorf("delivered %d of %d", delivered, total)
	}
	if want := fmt.Sprintf("subscriber too slow: dropped %d events", dropped); !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want %q", err, want)
	}
	if !errdefs.IsUnavailable(err) {
		t.Errorf("error %v is not Unavailable", err)
	}

	// The fast subscriber carries on.
	if err := ex.Publish(nsCtx("default"), "/a", &testEvent{Seq: total}); err != nil {
		t.Fatal(err)
	}
	receive(t, fast, 1)
	select {
	case err := <-fastErrs:
		t.Fatalf("fast subscriber: %v", err)
	default:
	}
}

func TestConcurrentPublishers(t *testing.T) {
	ex := New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const (
		publishers  = 8
		perPub      = 300
		subscribers = 3
	)
	var chans []<-chan *events.Envelope
	for i := 0; i < subscribers; i++ {
		ch, _ := ex.Subscribe(ctx)
		chans = append(chans, ch)
	}
	// A subscriber that churns while publishers run.
	churn := make(chan struct{})
	go func() {
		defer close(churn)
		for i := 0; i < 50; i++ {
			c, cc := context.WithCancel(ctx)
			ch, errs := ex.Subscribe(c, "namespace==ns3")
			cc()
			waitClosed(t, ch, errs)
		}
	}()

	var wg sync.WaitGroup
	for p := 0; p < publishers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := nsCtx(fmt.Sprintf("ns%d", p))
			for i := 0; i < perPub; i++ {
				if err := ex.Publish(ctx, "/concurrent", &testEvent{Publisher: p, Seq: i}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}

	orders := make([][]testEvent, subscribers)
	var rwg sync.WaitGroup
	for s, ch := range chans {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			next := make([]int, publishers)
			for _, env := range receive(t, ch, publishers*perPub) {
				ev := decode(t, env)
				if env.Namespace != fmt.Sprintf("ns%d", ev.Publisher) {
					t.Errorf("event of publisher %d in namespace %s", ev.Publisher, env.Namespace)
				}
				if ev.Seq != next[ev.Publisher] {
					t.Errorf("subscriber %d: publisher %d: got sequence %d, want %d", s, ev.Publisher, ev.Seq, next[ev.Publisher])
				}
				next[ev.Publisher] = ev.Seq + 1
				orders[s] = append(orders[s], *ev)
			}
		}()
	}
	wg.Wait()
	rwg.Wait()
	<-churn
	// Broadcasts are serialized: every subscriber sees the same order.
	for s := 1; s < subscribers; s++ {
		for i := range orders[0] {
			if orders[s][i] != orders[0][i] {
				t.Fatalf("subscribers 0 and %d differ at envelope %d", s, i)
			}
		}
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	ex := New()
	baseline := settledGoroutines()
	var subs []struct {
		ch   <-chan *events.Envelope
		errs <-chan error
	}
	ctx, cancel := context.WithCancel(context.Background())
	for i := 0; i < 50; i++ {
		ch, errs := ex.Subscribe(ctx, `topic=="/a"`)
		subs = append(subs, struct {
			ch   <-chan *events.Envelope
			errs <-chan error
		}{ch, errs})
	}
	// Leave some envelopes undelivered: goroutines blocked on sending must
	// exit too.
	for i := 0; i < 10; i++ {
		if err := ex.Publish(nsCtx("default"), "/a", &testEvent{Seq: i}); err != nil {
			t.Fatal(err)
		}
	}
	if n := runtime.NumGoroutine(); n < baseline+50 {
		t.Fatalf("%d goroutines with 50 subscribers, baseline %d", n, baseline)
	}
	cancel()
	for _, s := range subs {
		waitClosed(t, s.ch, s.errs)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, baseline %d:\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settledGoroutines waits for goroutines of earlier tests (subscribers whose
// context was cancelled by a deferred cancel, say) to exit, and returns how
// many goroutines are left.
func settledGoroutines() int {
	n, stable := runtime.NumGoroutine(), 0
	for deadline := time.Now().Add(5 * time.Second); stable < 10 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		if m := runtime.NumGoroutine(); m != n {
			n, stable = m, 0
		} else {
			stable++
		}
	}
	return n
}

func TestZeroValue(t *testing.T) {
	var ex Exchange
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, _ := ex.Subscribe(ctx)
	if err := ex.Publish(nsCtx("default"), "/a", &testEvent{}); err != nil {
		t.Fatal(err)
	}
	receive(t, ch, 1)
}

func TestRecentKeepsTheLastEnvelopesInOrder(t *testing.T) {
	e := New()
	ctx := namespaces.WithNamespace(context.Background(), "ns")
	for i := 0; i < RecentLength+10; i++ {
		if err := e.Publish(ctx, fmt.Sprintf("/test/%d", i), &eventtypes.NamespaceCreate{Name: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	got := e.Recent()
	if len(got) != RecentLength {
		t.Fatalf("Recent kept %d envelopes, want %d", len(got), RecentLength)
	}
	if got[0].Topic != "/test/10" || got[len(got)-1].Topic != fmt.Sprintf("/test/%d", RecentLength+9) {
		t.Fatalf("Recent: first %s, last %s", got[0].Topic, got[len(got)-1].Topic)
	}
}
