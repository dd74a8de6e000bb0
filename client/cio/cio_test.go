package cio

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the copy goroutine and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// within fails the test if fn does not return within d: the point of
// these tests is that nothing blocks.
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { fn(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %s", what, d)
	}
}

// shim plays the shim's part: it echoes what arrives on stdin to stdout,
// writes "err" to stderr, and closes its ends.
func shim(t *testing.T, cfg Config) {
	in, err := os.OpenFile(cfg.Stdin, os.O_RDONLY, 0)
	if err != nil {
		t.Error(err)
		return
	}
	out, err := os.OpenFile(cfg.Stdout, os.O_WRONLY, 0)
	if err != nil {
		t.Error(err)
		return
	}
	errw, err := os.OpenFile(cfg.Stderr, os.O_WRONLY, 0)
	if err != nil {
		t.Error(err)
		return
	}
	io.Copy(out, in)
	errw.Write([]byte("err"))
	in.Close()
	out.Close()
	errw.Close()
}

func TestCreatorCopiesAndCleansUp(t *testing.T) {
	base := filepath.Join(t.TempDir(), "fifos")
	var stdout, stderr syncBuffer
	pio, err := NewCreator(WithStreams(strings.NewReader("hello"), &stdout, &stderr), WithFIFODir(base))("task-1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := pio.Config()
	if cfg.Terminal || !strings.HasPrefix(cfg.Stdin, base) || cfg.Stdout == "" || cfg.Stderr == "" {
		t.Fatalf("config %+v", cfg)
	}
	dir := filepath.Dir(cfg.Stdout)
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("fifo dir %s: %v %v", dir, fi.Mode(), err)
	}
	for _, p := range []string{cfg.Stdin, cfg.Stdout, cfg.Stderr} {
		if !isFifo(p) {
			t.Fatalf("%s is not a fifo", p)
		}
	}
	go shim(t, cfg)
	within(t, 5*time.Second, "Wait", pio.Wait)
	if stdout.String() != "hello" || stderr.String() != "err" {
		t.Fatalf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
	within(t, 5*time.Second, "Close", func() {
		if err := pio.Close(); err != nil {
			t.Error(err)
		}
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("fifo dir left after Close: %v", err)
	}
}

// TestCloseWithoutShim: a process that never starts must not leave the
// client blocked in open(2) on its FIFOs.
func TestCloseWithoutShim(t *testing.T) {
	base := t.TempDir()
	var out syncBuffer
	pio, err := NewCreator(WithStreams(strings.NewReader("x"), &out, &out), WithFIFODir(base))("never")
	if err != nil {
		t.Fatal(err)
	}
	within(t, 5*time.Second, "Cancel and Wait", func() { pio.Cancel(); pio.Wait() })
	within(t, 5*time.Second, "Close", func() { pio.Close() })
	if ents, _ := os.ReadDir(base); len(ents) != 0 {
		t.Fatalf("left in the base dir: %v", ents)
	}
	// Closing twice is harmless.
	pio.Close()
}

func TestCloseRightAfterCreate(t *testing.T) {
	for i := 0; i < 50; i++ {
		var out syncBuffer
		pio, err := NewCreator(WithStreams(nil, &out, nil), WithFIFODir(t.TempDir()))("quick")
		if err != nil {
			t.Fatal(err)
		}
		within(t, 5*time.Second, "Close", func() { pio.Close() })
	}
}

func TestTerminalHasNoStderr(t *testing.T) {
	var out syncBuffer
	pio, err := NewCreator(WithStreams(nil, &out, &out), WithTerminal, WithFIFODir(t.TempDir()))("tty")
	if err != nil {
		t.Fatal(err)
	}
	defer pio.Close()
	cfg := pio.Config()
	if !cfg.Terminal || cfg.Stdout == "" || cfg.Stderr != "" || cfg.Stdin != "" {
		t.Fatalf("terminal config %+v", cfg)
	}
}

func TestAttachRemovesFifosOnClose(t *testing.T) {
	base := t.TempDir()
	// The creator's IO is gone (another client made the task); its FIFOs
	// remain, and the shim still has them.
	first, err := NewCreator(WithStreams(nil, io.Discard, nil), WithFIFODir(base))("attached")
	if err != nil {
		t.Fatal(err)
	}
	cfg := first.Config()
	w := make(chan *os.File, 1)
	go func() {
		f, err := os.OpenFile(cfg.Stdout, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
		}
		w <- f
	}()
	shimEnd := <-w
	// The first reader goes away; the attached one gets what follows.
	first.(*pipeIO).fifos[0].Close()
	var out syncBuffer
	pio, err := NewAttach(WithStreams(nil, &out, nil))(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A FIFO nobody has open drops its data: write once the attached
	// reader is there, as the shim's would be in life.
	<-pio.(*pipeIO).fifos[0].opened
	shimEnd.Write([]byte("again"))
	shimEnd.Close()
	within(t, 5*time.Second, "Wait", pio.Wait)
	if out.String() != "again" {
		t.Fatalf("attached stdout %q", out.String())
	}
	pio.Close()
	if _, err := os.Stat(filepath.Dir(cfg.Stdout)); !os.IsNotExist(err) {
		t.Fatalf("fifo dir left after the attached IO closed: %v", err)
	}
}

func TestNullIOAndLogFile(t *testing.T) {
	n, err := NullIO("x")
	if err != nil || n.Config() != (Config{}) {
		t.Fatalf("NullIO: %+v %v", n.Config(), err)
	}
	n.Cancel()
	n.Wait()
	n.Close()
	l, err := LogFile("/var/log/app log.txt")("x")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := l.Config(); cfg.Stdout != "file:///var/log/app%20log.txt" || cfg.Stderr != cfg.Stdout || cfg.Stdin != "" {
		t.Fatalf("LogFile config %+v", cfg)
	}
	if _, err := LogFile("relative.log")("x"); err == nil {
		t.Fatal("LogFile accepted a relative path")
	}
	if _, err := NewCreator()(""); err == nil {
		t.Fatal("NewCreator accepted an empty id")
	}
}
