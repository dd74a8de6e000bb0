package containerio

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/cri/logs"
	"github.com/hullrt/hull/internal/stackdump"
)

// buffer is an attach client's writer: safe for the pump and the test.
type buffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	closed bool
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *buffer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return nil
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// within fails the test unless fn returns within d.
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %s", what, d)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtimeYield()
	}
}

// runtimeYield waits a little without time.Sleep: a timer on a channel.
func runtimeYield() { <-time.After(2 * time.Millisecond) }

// shim opens the output FIFOs as hull's shim does: read-write, so that
// its writes never fail when hulld's reader goes away.
type shim struct {
	stdout, stderr *os.File
}

func openShim(t *testing.T, c *ContainerIO) *shim {
	t.Helper()
	cfg := c.Config()
	s := &shim{}
	var err error
	if s.stdout, err = os.OpenFile(cfg.Stdout, os.O_RDWR, 0); err != nil {
		t.Fatal(err)
	}
	if cfg.Stderr != "" {
		if s.stderr, err = os.OpenFile(cfg.Stderr, os.O_RDWR, 0); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(s.close)
	return s
}

// close ends the output: the process exited.
func (s *shim) close() {
	for _, f := range []*os.File{s.stdout, s.stderr} {
		if f != nil {
			f.Close()
		}
	}
}

// logEntries reads the CRI log, joining partial entries to their line.
func logEntries(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	part := map[string]string{}
	for _, e := range bytes.SplitAfter(data, []byte{'\n'}) {
		if len(e) == 0 {
			continue
		}
		l, err := logs.Parse(e)
		if err != nil {
			t.Fatal(err)
		}
		part[l.Stream] += string(l.Content)
		if !l.Partial {
			out = append(out, l.Stream+": "+part[l.Stream])
			part[l.Stream] = ""
		}
	}
	return out
}

func (c *ContainerIO) sessionCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sessions)
}

func TestLogAndTwoSessions(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "c.log")
	c, err := New("ctr", Options{Dir: filepath.Join(dir, "io"), LogPath: logPath, MaxLineSize: 16384})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := c.Config()
	if cfg.Terminal || cfg.Stdin != "" || cfg.Stdout == "" || cfg.Stderr == "" {
		t.Fatalf("config %+v", cfg)
	}
	for _, p := range []string{cfg.Stdout, cfg.Stderr} {
		if fi, err := os.Stat(p); err != nil || fi.Mode()&os.ModeNamedPipe == 0 || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", p, fi, err)
		}
	}
	sh := openShim(t, c)
	var outs, errs [2]buffer
	var wg sync.WaitGroup
	attachErrs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			attachErrs[i] = c.Attach(context.Background(), nil, &outs[i], &errs[i])
		}()
	}
	eventually(t, "two sessions", func() bool { return c.sessionCount() == 2 })
	fmt.Fprint(sh.stdout, "hello\nwor")
	fmt.Fprint(sh.stderr, "oops\n")
	fmt.Fprint(sh.stdout, "ld\n")
	sh.close()
	within(t, 10*time.Second, "Wait", c.Wait)
	within(t, 10*time.Second, "Attach", wg.Wait)
	for i := range 2 {
		if attachErrs[i] != nil || outs[i].String() != "hello\nworld\n" || errs[i].String() != "oops\n" || !outs[i].closed || !errs[i].closed {
			t.Fatalf("session %d: %v, stdout %q stderr %q closed %v %v", i, attachErrs[i], outs[i].String(), errs[i].String(), outs[i].closed, errs[i].closed)
		}
	}
	got := logEntries(t, logPath)
	want := map[string]bool{"stdout: hello": true, "stdout: world": true, "stderr: oops": true}
	if len(got) != 3 {
		t.Fatalf("log %q", got)
	}
	for _, e := range got {
		if !want[e] {
			t.Fatalf("log %q", got)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// The output has ended: a late attach returns at once.
	within(t, 5*time.Second, "late Attach", func() { c.Attach(context.Background(), nil, &buffer{}, nil) })
}

func TestTerminalOneStream(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "c.log")
	c, err := New("tty", Options{Dir: dir, Terminal: true, LogPath: logPath})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if cfg := c.Config(); !cfg.Terminal || cfg.Stderr != "" {
		t.Fatalf("config %+v", cfg)
	}
	sh := openShim(t, c)
	fmt.Fprint(sh.stdout, "prompt$ ls\r\n")
	sh.close()
	within(t, 10*time.Second, "Wait", c.Wait)
	if got := logEntries(t, logPath); len(got) != 1 || got[0] != "stdout: prompt$ ls" {
		t.Fatalf("log %q", got)
	}
}

// stdinReader plays the shim's reading of stdin.
func stdinReader(t *testing.T, c *ContainerIO) (*os.File, chan string) {
	t.Helper()
	f, err := os.OpenFile(c.Config().Stdin, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	got := make(chan string, 16)
	return f, got
}

// readUntilEOF reads what the container gets on stdin until EOF.
func readUntilEOF(f *os.File, got chan<- string) {
	defer close(got)
	buf := make([]byte, 1024)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			got <- string(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

func TestStdinOnceClosesContainerStdin(t *testing.T) {
	dir := t.TempDir()
	var closed atomic.Int32
	c, err := New("once", Options{Dir: dir, Stdin: true, StdinOnce: true, CloseStdin: func() error { closed.Add(1); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sh := openShim(t, c)
	in, got := stdinReader(t, c)
	go readUntilEOF(in, got)
	var out buffer
	attached := make(chan error, 1)
	go func() { attached <- c.Attach(context.Background(), strings.NewReader("input"), &out, nil) }()
	var received string
	within(t, 10*time.Second, "the container's stdin EOF", func() {
		for s := range got {
			received += s
		}
	})
	// CloseStdin follows the FIFO's close, so it may come just after
	// the container saw EOF.
	within(t, 10*time.Second, "CloseStdin", func() {
		for closed.Load() == 0 {
			runtimeYield()
		}
	})
	if received != "input" || closed.Load() != 1 {
		t.Fatalf("container read %q, CloseStdin called %d times", received, closed.Load())
	}
	// The session goes on after stdin, for the answer.
	select {
	case err := <-attached:
		t.Fatalf("attach ended with stdin: %v", err)
	default:
	}
	eventually(t, "the session", func() bool { return c.sessionCount() == 1 })
	fmt.Fprint(sh.stdout, "answer\n")
	sh.close()
	within(t, 10*time.Second, "Attach", func() {
		if err := <-attached; err != nil {
			t.Error(err)
		}
	})
	if out.String() != "answer\n" {
		t.Fatalf("attach stdout %q", out.String())
	}
	// Stdin is gone for later sessions.
	within(t, 5*time.Second, "second Attach", func() { c.Attach(context.Background(), strings.NewReader("late"), &buffer{}, nil) })
}

// TestStdinStaysOpenBetweenSessions: without StdinOnce the end of a
// session's stdin ends the session, not the container's stdin.
func TestStdinStaysOpenBetweenSessions(t *testing.T) {
	c, err := New("open", Options{Dir: t.TempDir(), Stdin: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	openShim(t, c)
	in, got := stdinReader(t, c)
	go readUntilEOF(in, got)
	for _, s := range []string{"first", "second"} {
		within(t, 10*time.Second, "Attach with stdin "+s, func() {
			if err := c.Attach(context.Background(), strings.NewReader(s), &buffer{}, nil); err != nil {
				t.Error(err)
			}
		})
		var received string
		within(t, 10*time.Second, "stdin "+s, func() {
			for len(received) < len(s) {
				r, ok := <-got
				if !ok {
					t.Errorf("container stdin closed after %q", received)
					return
				}
				received += r
			}
		})
		if received != s {
			t.Fatalf("container read %q, want %q", received, s)
		}
	}
	// Close (hulld going away) closes stdin's hold.
	c.Close()
	within(t, 10*time.Second, "EOF after Close", func() {
		for range got {
		}
	})
}

func TestReattachReadsOutputWrittenInBetween(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "c.log")
	opts := Options{Dir: filepath.Join(dir, "io"), LogPath: logPath}
	c, err := New("re", opts)
	if err != nil {
		t.Fatal(err)
	}
	sh := openShim(t, c)
	fmt.Fprint(sh.stdout, "one\npar")
	eventually(t, "the first line in the log", func() bool { return len(logEntries(t, logPath)) == 1 })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// hulld is gone; the process writes on, into the FIFO.
	fmt.Fprint(sh.stdout, "tial\ntwo\n")
	fmt.Fprint(sh.stderr, "err\n")
	for _, p := range []string{c.Config().Stdout, c.Config().Stderr} {
		if !isFifo(p) {
			t.Fatalf("Close removed %s", p)
		}
	}
	c2, err := Reattach(c.Config(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if c2.Config() != c.Config() {
		t.Fatalf("reattached config %+v, was %+v", c2.Config(), c.Config())
	}
	fmt.Fprint(sh.stdout, "three\n")
	sh.close()
	within(t, 10*time.Second, "Wait", c2.Wait)
	c2.Close()
	var stdout []string
	var stderr int
	for _, e := range logEntries(t, logPath) {
		if strings.HasPrefix(e, "stderr: ") {
			stderr++
			continue
		}
		stdout = append(stdout, e)
	}
	if strings.Join(stdout, ",") != "stdout: one,stdout: partial,stdout: two,stdout: three" || stderr != 1 {
		t.Fatalf("log %q", logEntries(t, logPath))
	}
	// Without a log, after the process is gone: its output is at its end.
	c3, err := Reattach(c.Config(), Options{})
	if err != nil {
		t.Fatalf("reattach again: %v", err)
	}
	within(t, 10*time.Second, "Wait after the end", c3.Wait)
	c3.Close()
	cfg := c.Config()
	cfg.Stdout = filepath.Join(dir, "nothing")
	if _, err := Reattach(cfg, opts); !errdefs.IsNotFound(err) {
		t.Fatalf("reattach to a missing fifo: %v", err)
	}
}

// TestBlockedAttachDoesNotBlockLog: a client that takes nothing is dropped
// and the log gets everything.
func TestBlockedAttachDoesNotBlockLog(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "c.log")
	c, err := New("slow", Options{Dir: dir, LogPath: logPath})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sh := openShim(t, c)
	pr, pw := io.Pipe() // nobody reads pr: every write blocks
	defer pr.Close()
	attached := make(chan error, 1)
	go func() { attached <- c.Attach(context.Background(), nil, pw, nil) }()
	eventually(t, "the session", func() bool { return c.sessionCount() == 1 })
	line := strings.Repeat("x", 1000) + "\n"
	const n = 3 * sessionBuffer / 1000
	within(t, 20*time.Second, "the process's writes", func() {
		for range n {
			if _, err := sh.stdout.WriteString(line); err != nil {
				t.Error(err)
				return
			}
		}
		sh.close()
	})
	within(t, 10*time.Second, "Wait", c.Wait)
	within(t, 10*time.Second, "Attach", func() {
		if err := <-attached; !errdefs.IsUnavailable(err) {
			t.Errorf("the slow session ended with %v", err)
		}
	})
	if got := logEntries(t, logPath); len(got) != n {
		t.Fatalf("%d log entries, want %d", len(got), n)
	}
}

// TestAttachEndsWithContext: a session ends when its context does, and
// the writers are closed to end a blocked write.
func TestAttachEndsWithContext(t *testing.T) {
	c, err := New("ctx", Options{Dir: t.TempDir(), Stdin: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	openShim(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	stdinR, stdinW := io.Pipe() // a client that never sends
	defer stdinW.Close()
	attached := make(chan error, 1)
	out := &buffer{}
	go func() { attached <- c.Attach(ctx, stdinR, out, nil) }()
	eventually(t, "the session", func() bool { return c.sessionCount() == 1 })
	cancel()
	within(t, 10*time.Second, "Attach after cancel", func() {
		if err := <-attached; err != nil {
			t.Error(err)
		}
	})
	if !out.closed || c.sessionCount() != 0 {
		t.Fatalf("stdout closed %v, sessions %d", out.closed, c.sessionCount())
	}
}

func TestCancelWithoutShim(t *testing.T) {
	c, err := New("never", Options{Dir: t.TempDir(), Stdin: true, LogPath: filepath.Join(t.TempDir(), "l")})
	if err != nil {
		t.Fatal(err)
	}
	within(t, 10*time.Second, "Cancel and Wait", func() { c.Cancel(); c.Wait() })
	within(t, 10*time.Second, "Close", func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := c.Attach(context.Background(), nil, &buffer{}, nil); !errdefs.IsUnavailable(err) {
		t.Fatalf("attach after close: %v", err)
	}
}

// TestCancelKeepsOpenedOutput: Cancel does not end a stream the shim has
// opened.
func TestCancelKeepsOpenedOutput(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "c.log")
	c, err := New("opened", Options{Dir: t.TempDir(), LogPath: logPath})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sh := openShim(t, c)
	c.Cancel()
	fmt.Fprint(sh.stdout, "after cancel\n")
	sh.close()
	within(t, 10*time.Second, "Wait", c.Wait)
	if got := logEntries(t, logPath); len(got) != 1 || got[0] != "stdout: after cancel" {
		t.Fatalf("log %q", got)
	}
}

func TestReopenLog(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "c.log")
	c, err := New("rot", Options{Dir: dir, LogPath: logPath})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sh := openShim(t, c)
	fmt.Fprint(sh.stdout, "before\n")
	eventually(t, "the first line", func() bool { return len(logEntries(t, logPath)) == 1 })
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := c.ReopenLog(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(sh.stdout, "after\n")
	sh.close()
	within(t, 10*time.Second, "Wait", c.Wait)
	if got := logEntries(t, logPath); len(got) != 1 || got[0] != "stdout: after" {
		t.Fatalf("new log %q", got)
	}
}

func TestNewRefusesBadInput(t *testing.T) {
	for _, id := range []string{"", "a/b", "..", "."} {
		if _, err := New(id, Options{Dir: t.TempDir()}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("New(%q): %v", id, err)
		}
	}
	if _, err := New("x", Options{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("New without a dir: %v", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f-stdout"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New("f", Options{Dir: dir}); !errdefs.IsAlreadyExists(err) {
		t.Errorf("New over a regular file: %v", err)
	}
	// A log that cannot be opened fails New and leaves nothing open.
	if _, err := New("l", Options{Dir: dir, LogPath: filepath.Join(dir, "missing", "l.log")}); !errdefs.IsNotFound(err) {
		t.Errorf("New with a log in a missing directory: %v", err)
	}
}

func TestExecIO(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	pio, err := NewExec(dir, nil, &out, &errOut, false)("exec-1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := pio.Config()
	if cfg.Stdin != "" || !strings.HasPrefix(cfg.Stdout, dir) || cfg.Stderr == "" {
		t.Fatalf("exec config %+v", cfg)
	}
	for p, s := range map[string]string{cfg.Stdout: "out", cfg.Stderr: "err"} {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(s)
		f.Close()
	}
	within(t, 10*time.Second, "Wait", pio.Wait)
	if out.String() != "out" || errOut.String() != "err" {
		t.Fatalf("stdout %q stderr %q", out.String(), errOut.String())
	}
	pio.Close()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left after Close: %v", ents)
	}
	tty, err := NewExec(dir, strings.NewReader("in"), &out, &errOut, true)("exec-2")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := tty.Config(); !cfg.Terminal || cfg.Stderr != "" || cfg.Stdin == "" {
		t.Fatalf("tty exec config %+v", cfg)
	}
	tty.Cancel()
	tty.Close()
}

func TestCappedBuffer(t *testing.T) {
	b := NewCappedBuffer(5)
	for _, s := range []string{"ab", "cd", "efgh", "ij"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if string(b.Bytes()) != "abcde" || !b.Truncated() || b.Dropped() != 5 {
		t.Fatalf("kept %q truncated %v dropped %d", b.Bytes(), b.Truncated(), b.Dropped())
	}
	// Bytes is a copy.
	b.Bytes()[0] = 'X'
	if string(b.Bytes()) != "abcde" {
		t.Fatalf("Bytes shares the buffer: %q", b.Bytes())
	}
	small := NewCappedBuffer(10)
	small.Write([]byte("0123456789"))
	if small.Truncated() || string(small.Bytes()) != "0123456789" {
		t.Fatalf("exactly full: %q %v", small.Bytes(), small.Truncated())
	}
	if z := NewCappedBuffer(-1); func() bool { z.Write([]byte("x")); return len(z.Bytes()) != 0 || !z.Truncated() }() {
		t.Fatal("negative cap kept bytes")
	}
}

// countingPool is a BufferPool that counts the buffers lent and not yet
// given back.
type countingPool struct {
	out  atomic.Int64
	gets atomic.Int64
}

func (p *countingPool) Get() any {
	p.out.Add(1)
	p.gets.Add(1)
	b := make([]byte, 64)
	return &b
}

func (p *countingPool) Put(any) { p.out.Add(-1) }

// TestQuietOutputHoldsNoBuffer: a container whose streams have nothing to
// say holds no read buffer; one is lent while output is copied, and given
// back, with small buffers reading long output in pieces.
func TestQuietOutputHoldsNoBuffer(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "ctr.log")
	pool := &countingPool{}
	c, err := New("quiet", Options{Dir: filepath.Join(dir, "io"), LogPath: logPath, Buffers: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sh := openShim(t, c)
	// Both copies have tried to read (and found nothing) once the shim
	// is there; none holds a buffer while it waits.
	eventually(t, "both copies waiting for output", func() bool { return pool.gets.Load() >= 2 })
	for i := 0; i < 5; i++ {
		if n := pool.out.Load(); n != 0 {
			t.Fatalf("%d buffers held by a quiet container", n)
		}
		runtimeYield()
	}
	long := strings.Repeat("x", 300)
	fmt.Fprintf(sh.stdout, "%s\nsecond line\n", long)
	eventually(t, "the output in the log", func() bool {
		e := logEntries(t, logPath)
		return len(e) == 2 && strings.HasSuffix(e[0], long) && strings.HasSuffix(e[1], "second line")
	})
	eventually(t, "the buffers given back", func() bool { return pool.out.Load() == 0 })
	sh.close()
	within(t, 10*time.Second, "Wait", c.Wait)
	if n := pool.out.Load(); n != 0 {
		t.Fatalf("%d buffers not given back after the output ended", n)
	}
}

// packageGoroutines counts the goroutines this package's own code started
// and runs: a goroutine of the test binary or of an earlier test (the
// testing package's, a within helper's) comes and goes on its own
// schedule, and counting those made the total drift by one.
func packageGoroutines() int {
	count := 0
	for _, g := range strings.Split(string(stackdump.All(math.MaxInt)), "\n\n") {
		if strings.Contains(g, "/cri/containerio.") && !strings.Contains(g, "_test.go:") {
			count++
		}
	}
	return count
}

// TestGoroutinesPerContainer: a container's output costs hulld one
// goroutine per stream and nothing else while it runs (a node holds a
// hundred containers), and none once its output has ended.
func TestGoroutinesPerContainer(t *testing.T) {
	const n = 8
	settle := func(want int) int {
		var got int
		for i := 0; i < 200; i++ {
			if got = packageGoroutines(); got == want {
				break
			}
			runtimeYield()
		}
		return got
	}
	if got := settle(0); got != 0 {
		t.Fatalf("%d of the package's goroutines still run before the test", got)
	}
	var cs []*ContainerIO
	var shims []*shim
	for i := 0; i < n; i++ {
		c, err := New(fmt.Sprintf("g%d", i), Options{Dir: t.TempDir(), LogPath: filepath.Join(t.TempDir(), "l")})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs = append(cs, c)
		shims = append(shims, openShim(t, c))
	}
	if got := settle(2 * n); got != 2*n {
		t.Fatalf("%d goroutines for %d containers with stdout and stderr, want %d", got, n, 2*n)
	}
	for i, c := range cs {
		shims[i].close()
		within(t, 10*time.Second, "Wait", c.Wait)
	}
	if got := settle(0); got != 0 {
		t.Fatalf("%d goroutines left after the output ended", got)
	}
}
