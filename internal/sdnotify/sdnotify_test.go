package sdnotify

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// listen opens a datagram socket at addr, as systemd's manager does.
func listen(t *testing.T, addr string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func receive(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestNotifyPathAndAbstract(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	abstract := "@hull-sdnotify-test-" + filepath.Base(t.TempDir())
	for _, addr := range []string{path, abstract} {
		c := listen(t, addr)
		n, err := FromEnv(env(map[string]string{SocketEnv: addr}), 1)
		if err != nil {
			t.Fatal(err)
		}
		if !n.Enabled() {
			t.Fatalf("%s: notifier not enabled", addr)
		}
		if err := n.Notify(Ready, Status("serving\non /x")); err != nil {
			t.Fatal(err)
		}
		if got := receive(t, c); got != "READY=1\nSTATUS=serving on /x" {
			t.Errorf("%s: datagram %q", addr, got)
		}
	}
}

func TestDisabledSendsNothing(t *testing.T) {
	n, err := FromEnv(env(nil), 1)
	if err != nil {
		t.Fatal(err)
	}
	if n.Enabled() || n.WatchdogInterval() != 0 {
		t.Errorf("enabled %v, watchdog %v without %s", n.Enabled(), n.WatchdogInterval(), SocketEnv)
	}
	if err := n.Notify(Ready); err != nil {
		t.Errorf("Notify without a socket: %v", err)
	}
	var zero *Notifier
	if err := zero.Notify(Ready); err != nil || zero.Enabled() {
		t.Errorf("nil notifier: %v", err)
	}
}

func TestNotifyRefusesBadAssignments(t *testing.T) {
	c := listen(t, filepath.Join(t.TempDir(), "n"))
	n, err := FromEnv(env(map[string]string{SocketEnv: c.LocalAddr().String()}), 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"READY", "READY=1\nSTOPPING=1"} {
		if err := n.Notify(a); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Notify(%q) = %v, want InvalidArgument", a, err)
		}
	}
}

func TestNotifyToAbsentSocketFails(t *testing.T) {
	n, err := FromEnv(env(map[string]string{SocketEnv: filepath.Join(t.TempDir(), "gone")}), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(Ready); err == nil || !strings.Contains(err.Error(), "gone") {
		t.Errorf("Notify to a missing socket: %v", err)
	}
}

func TestParseSocket(t *testing.T) {
	for _, s := range []string{"", "relative/path", "@", "vsock:2:1234", "/a\x00b", "/" + strings.Repeat("x", 107)} {
		if _, err := ParseSocket(s); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParseSocket(%q) = %v, want InvalidArgument", s, err)
		}
	}
	for _, s := range []string{"/run/systemd/notify", "@abstract"} {
		if a, err := ParseSocket(s); err != nil || a.Name != s {
			t.Errorf("ParseSocket(%q) = %v, %v", s, a, err)
		}
	}
}

func TestParseWatchdog(t *testing.T) {
	for _, c := range []struct {
		usec, pid string
		want      time.Duration
		bad       bool
	}{
		{"", "", 0, false},
		{"2000000", "", 2 * time.Second, false},
		{"2000000", "42", 2 * time.Second, false},
		{"2000000", "43", 0, false}, // another process's watchdog
		{"0", "", 0, true},
		{"-5", "", 0, true},
		{"soon", "", 0, true},
		{"99999999999999999999", "", 0, true},
		{"2000000", "x", 0, true},
		{"2000000", "0", 0, true},
	} {
		got, err := ParseWatchdog(c.usec, c.pid, 42)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("ParseWatchdog(%q, %q) = %v, %v; want %v, error %v", c.usec, c.pid, got, err, c.want, c.bad)
		}
	}
	n, err := FromEnv(env(map[string]string{SocketEnv: "/run/x", WatchdogUSec: "3000000"}), 1)
	if err != nil || n.WatchdogInterval() != 1500*time.Millisecond {
		t.Errorf("WatchdogInterval = %v, %v; want half of 3s", n.WatchdogInterval(), err)
	}
	if _, err := FromEnv(env(map[string]string{SocketEnv: "/run/x", WatchdogUSec: "soon"}), 1); !errdefs.IsInvalidArgument(err) {
		t.Errorf("FromEnv with a bad %s: %v", WatchdogUSec, err)
	}
}

func FuzzParseWatchdog(f *testing.F) {
	for _, s := range [][2]string{{"", ""}, {"2000000", ""}, {"1", "1"}, {"18446744073709551615", "1"}, {"9223372036854775", "2"}, {"+5", "-1"}, {"0x10", " 1"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, usec, pid string) {
		d, err := ParseWatchdog(usec, pid, 1)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("error %v is not InvalidArgument", err)
			}
			return
		}
		if d < 0 || (usec == "" && d != 0) {
			t.Fatalf("ParseWatchdog(%q, %q) = %v", usec, pid, d)
		}
	})
}

func FuzzParseSocket(f *testing.F) {
	for _, s := range []string{"/run/systemd/notify", "@x", "", "@", "rel", "vsock:1:2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseSocket(s)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("error %v is not InvalidArgument", err)
			}
			return
		}
		if a.Name != s || len(s) > 107 || (s[0] != '/' && s[0] != '@') {
			t.Fatalf("ParseSocket(%q) accepted as %q", s, a.Name)
		}
	})
}
