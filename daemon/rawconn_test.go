package daemon

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// rawPair returns a rawConn accepted by a rawListener and the client end.
func rawPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	rl := newRawListener(l)
	t.Cleanup(func() { rl.Close() })
	client, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := rl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := server.(*rawConn); !ok {
		t.Fatalf("accepted a %T, want *rawConn", server)
	}
	t.Cleanup(func() { server.Close() })
	return server, client
}

func TestRawConnCarriesLargeWritesBothWays(t *testing.T) {
	server, client := rawPair(t)
	// Larger than a socket buffer, so that writes wait for room.
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	errc := make(chan error, 1)
	go func() { _, err := server.Write(data); errc <- err }()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("client read %v, equal %v", err, bytes.Equal(got, data))
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	go func() { _, err := client.Write(data); errc <- err }()
	if _, err := io.ReadFull(server, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("server read %v, equal %v", err, bytes.Equal(got, data))
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if n, err := server.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty read: %d %v", n, err)
	}
}

func TestRawConnEOFDeadlineAndClose(t *testing.T) {
	server, client := rawPair(t)
	// A deadline ends a read that waits.
	server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := server.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
	server.SetReadDeadline(time.Time{})
	// Close from another goroutine ends a read that waits.
	errc := make(chan error, 1)
	go func() { _, err := server.Read(make([]byte, 1)); errc <- err }()
	time.Sleep(20 * time.Millisecond)
	server.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read on a closed conn: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a waiting read")
	}
	// The peer's close is EOF; a write to a closed peer is an error.
	s2, c2 := rawPair(t)
	c2.Close()
	if _, err := s2.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after the peer closed: %v", err)
	}
	if _, err := s2.Write([]byte("x")); err == nil {
		t.Fatal("a write to a closed peer succeeded")
	}
	_ = client
}
