package streaming

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// netNS is a network namespace made for a test, with echo servers on its
// loopback.
type netNS struct {
	path      string
	listeners []net.Listener
	serving   sync.WaitGroup
}

// newNetNS makes a network namespace, pinned by a bind mount in the test's
// temporary directory, brings its loopback up and calls listen inside it
// for each address. Everything goes at the test's end.
func newNetNS(t *testing.T, addrs ...string) *netNS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a network namespace")
	}
	ns := &netNS{path: filepath.Join(t.TempDir(), "netns")}
	if err := os.WriteFile(ns.path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	mounted := make(chan bool, 1)
	go func() {
		errc <- inNewNetNS(func() error {
			defer close(mounted)
			if err := unix.Mount("/proc/thread-self/ns/net", ns.path, "", unix.MS_BIND, ""); err != nil {
				return err
			}
			mounted <- true
			if err := loopbackUp(); err != nil {
				return err
			}
			for _, a := range addrs {
				l, err := net.Listen("tcp4", a)
				if err != nil {
					return err
				}
				ns.listeners = append(ns.listeners, l)
			}
			return nil
		})
	}()
	err := <-errc
	t.Cleanup(func() {
		for _, l := range ns.listeners {
			l.Close()
		}
		ns.serving.Wait()
		if <-mounted {
			if err := unix.Unmount(ns.path, unix.MNT_DETACH); err != nil {
				t.Error(err)
			}
		}
		os.Remove(ns.path)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ns.listeners {
		ns.serving.Add(1)
		go ns.echo(l)
	}
	return ns
}

// inNewNetNS runs fn on a thread of its own in a new network namespace,
// and brings the thread back; a thread that cannot come back stays locked
// and ends with its goroutine. (Not left locked in any case: a goroutine
// on the main thread would wedge it there instead of ending it.)
func inNewNetNS(fn func() error) error {
	return onNetNSThread(func() error { return unix.Unshare(unix.CLONE_NEWNET) }, fn)
}

// inNetNS runs fn in the network namespace at path, like inNewNetNS.
func inNetNS(path string, fn func() error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return onNetNSThread(func() error { return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET) }, fn)
}

func onNetNSThread(enter, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer home.Close()
		if err := enter(); err != nil {
			errc <- err
			return
		}
		err = fn()
		if serr := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); serr != nil {
			errc <- serr
			return
		}
		goruntime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// echo answers each connection with what it sends.
func (ns *netNS) echo(l net.Listener) {
	defer ns.serving.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		ns.serving.Add(1)
		go func() {
			defer ns.serving.Done()
			io.Copy(c, c)
			c.Close()
		}()
	}
}

func (ns *netNS) port(i int) int32 {
	return int32(ns.listeners[i].Addr().(*net.TCPAddr).Port)
}

// loopbackUp sets lo up in the calling thread's network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// forward runs PortForward over a pipe and checks that what goes in comes
// back.
func forward(t *testing.T, nsPath string, port int32) {
	t.Helper()
	client, server := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- PortForward(context.Background(), nsPath, port, server) }()
	for _, msg := range []string{"ping", "pong pong"} {
		if _, err := client.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(client, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo of %q: %q %v", msg, buf, err)
		}
	}
	client.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("PortForward: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("PortForward did not end with its stream")
	}
}

// hostNetNS names this process's (the host's) network namespace.
func hostNetNS(t *testing.T) string {
	ns, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// threadsOutside lists the threads of this process not in network
// namespace ns.
func threadsOutside(t *testing.T, ns string) []string {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if got, err := os.Readlink(filepath.Join("/proc/self/task", e.Name(), "ns/net")); err == nil && got != ns {
			out = append(out, e.Name()+" in "+got)
		}
	}
	return out
}

func TestPortForward(t *testing.T) {
	host := hostNetNS(t)
	ns := newNetNS(t, "127.0.0.1:0")
	port := ns.port(0)
	// The port is the pod's: nothing answers on the host's loopback
	// (unless another process happens to hold the same number).
	if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))); err == nil {
		c.Close()
		t.Logf("port %d is taken on the host too; the namespace check below still holds", port)
	}
	for range 20 {
		forward(t, ns.path, port)
	}
	// No thread stayed in the pod's namespace.
	if left := threadsOutside(t, host); len(left) > 0 {
		t.Fatalf("threads left in another network namespace: %v", left)
	}
}

func TestPortForwardIPv6(t *testing.T) {
	ns := newNetNS(t)
	// IPv6 may be off in the kernel: then there is nothing to test.
	var l net.Listener
	if err := inNetNS(ns.path, func() (err error) {
		l, err = net.Listen("tcp6", "[::1]:0")
		return err
	}); err != nil {
		t.Skipf("no IPv6 loopback in the namespace: %v", err)
	}
	ns.listeners = append(ns.listeners, l)
	ns.serving.Add(1)
	go ns.echo(l)
	forward(t, ns.path, ns.port(0))
}

func TestPortForwardErrors(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	if err := PortForward(context.Background(), "/nonexistent/netns", 80, server); !errdefs.IsNotFound(err) {
		t.Fatalf("missing namespace: %v", err)
	}
	for _, port := range []int32{0, -1, 65536} {
		_, server := net.Pipe()
		if err := PortForward(context.Background(), "/proc/self/ns/net", port, server); !errdefs.IsInvalidArgument(err) {
			t.Fatalf("port %d: %v", port, err)
		}
	}
	ns := newNetNS(t, "127.0.0.1:0")
	port := ns.port(0)
	ns.listeners[0].Close() // nothing listens there now
	_, server = net.Pipe()
	if err := PortForward(context.Background(), ns.path, port, server); !errdefs.IsUnavailable(err) {
		t.Fatalf("closed port: %v", err)
	}
}

// TestPortForwardEndsWithContext: a forward whose context ends stops and
// closes the stream.
func TestPortForwardEndsWithContext(t *testing.T) {
	ns := newNetNS(t, "127.0.0.1:0")
	client, server := net.Pipe()
	defer client.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- PortForward(ctx, ns.path, ns.port(0), server) }()
	client.Write([]byte("x"))
	io.ReadFull(client, make([]byte, 1))
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("PortForward did not end with its context")
	}
	if _, err := client.Write([]byte("y")); err == nil {
		t.Fatal("stream still open after PortForward returned")
	}
}
