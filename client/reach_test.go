package client_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/internal/hulltest"
)

// waits records what a client tells of its waits for the daemon.
type waits struct {
	mu   sync.Mutex
	got  []client.ConnectWait
	seen chan struct{} // closed at the first
}

func newWaits() *waits { return &waits{seen: make(chan struct{})} }

func (w *waits) add(cw client.ConnectWait) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.got) == 0 {
		close(w.seen)
	}
	w.got = append(w.got, cw)
}

func (w *waits) all() []client.ConnectWait {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]client.ConnectWait(nil), w.got...)
}

// deadSocket is a socket file nobody listens on, as a daemon that died
// leaves behind.
func deadSocket(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "dead.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	return path
}

func TestCallsGiveUpOnAnAbsentDaemon(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		errno      syscall.Errno
	}{
		{"no socket", filepath.Join(t.TempDir(), "none.sock"), syscall.ENOENT},
		{"nobody listening", deadSocket(t), syscall.ECONNREFUSED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWaits()
			const limit = 700 * time.Millisecond
			c, err := client.New(tc.path, client.WithDefaultNamespace("test"), client.WithConnectTimeout(limit), client.WithConnectWait(w.add))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			_, err = c.ImageService().List(context.Background())
			took := time.Since(start)
			var ue *client.UnreachableError
			if !errors.As(err, &ue) || !errdefs.IsUnavailable(err) || !errors.Is(err, tc.errno) {
				t.Fatalf("list: %v, want an Unavailable *UnreachableError for %v", err, tc.errno)
			}
			if want := "hulld is not answering on " + tc.path + " (" + tc.errno.Error() + "): is it running?"; err.Error() != want {
				t.Errorf("error %q, want %q", err, want)
			}
			if took < limit || took > limit+5*time.Second {
				t.Errorf("gave up after %s, want about %s", took, limit)
			}
			got := w.all()
			if len(got) == 0 || got[0].Address != tc.path || !errors.Is(got[0].Reason, tc.errno) || got[0].Limit != limit {
				t.Errorf("waits told %+v", got)
			}
			// Streams wait and give up alike.
			if _, err := c.ContentStore().ReaderAt(context.Background(), ocispec.Descriptor{Digest: digest.FromString("x"), Size: 1}); !errors.As(err, &ue) {
				t.Errorf("read: %v, want an *UnreachableError", err)
			}
		})
	}
}

func TestNoConnectTimeoutFailsAtOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.sock")
	w := newWaits()
	c, err := client.New(path, client.WithDefaultNamespace("test"), client.WithConnectTimeout(0), client.WithConnectWait(w.add))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, err = c.ImageService().List(context.Background())
	if want := "hulld is not answering on " + path + " (no such file or directory): is it running?"; err == nil || err.Error() != want {
		t.Fatalf("list: %v, want %q", err, want)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %s to fail without a connect timeout", took)
	}
	if got := w.all(); len(got) != 0 {
		t.Errorf("told of waits %+v without waiting", got)
	}
}

func TestCallsWaitForADaemonThatStarts(t *testing.T) {
	dir := t.TempDir()
	// Where hulltest.Start puts the socket of a daemon over dir.
	address := filepath.Join(dir, "state", "hull.sock")
	w := newWaits()
	c, err := client.New(address, client.WithDefaultNamespace("test"), client.WithConnectTimeout(time.Minute), client.WithConnectWait(w.add))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() {
		_, err := c.ImageService().List(context.Background())
		done <- err
	}()
	select {
	case <-w.seen:
	case err := <-done:
		t.Fatalf("list ended before hulld started: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the client did not tell that it waits for hulld")
	}
	d := hulltest.Start(t, hulltest.Options{Dir: dir})
	if d.Address != address {
		t.Fatalf("hulld listens on %s, not %s", d.Address, address)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("list once hulld started: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("list did not go through once hulld started")
	}
	// Killed and started again, it is waited for again and told afresh. A
	// call made before the client saw the connection drop fails on the
	// dead transport instead, as the daemon went under it; the next one,
	// made once the connection is known down, waits.
	d.Kill()
	n := len(w.all())
	list := func() {
		go func() {
			_, err := c.ImageService().List(context.Background())
			done <- err
		}()
	}
	list()
	hulltest.Eventually(t, 30*time.Second, "the client to tell of the second wait", func() error {
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("list went through with hulld killed")
			}
			list()
		default:
		}
		if len(w.all()) == n {
			return errors.New("no new notice")
		}
		return nil
	})
	hulltest.Start(t, hulltest.Options{Dir: dir})
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("list once hulld restarted: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("list did not go through once hulld restarted")
	}
}

func TestCloseEndsAWait(t *testing.T) {
	w := newWaits()
	c, err := client.New(filepath.Join(t.TempDir(), "none.sock"), client.WithDefaultNamespace("test"),
		client.WithConnectTimeout(time.Minute), client.WithConnectWait(w.add))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.ImageService().List(context.Background())
		done <- err
	}()
	<-w.seen
	c.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("list on a closed client succeeded")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a call waiting for the daemon went on waiting after Close")
	}
}
