package stdio

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Input written to the stdin FIFO just before CloseStdin (a client that
// writes and then calls CloseIO, while still holding its end open) reaches
// the process whole, followed by EOF: the close waits for the copy to drain
// the FIFO instead of cutting it off.
func TestCloseStdinKeepsWrittenInput(t *testing.T) {
	for i := 0; i < 50; i++ {
		fifo := filepath.Join(t.TempDir(), "stdin")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := New(Config{Stdin: fifo})
		if err != nil {
			t.Fatal(err)
		}
		// What runc would hand the process; Started closes the shim's
		// own copy.
		fd, err := syscall.Dup(int(p.Child.Stdin.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		child := os.NewFile(uintptr(fd), "child-stdin")
		if err := p.Started(); err != nil {
			t.Fatal(err)
		}
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("input %d\n", i)
		if _, err := w.WriteString(want); err != nil {
			t.Fatal(err)
		}
		p.CloseStdin()
		got, err := io.ReadAll(child)
		child.Close()
		w.Close()
		p.Close()
		if err != nil || string(got) != want {
			t.Fatalf("round %d: the process read %q (%v), want %q", i, got, err, want)
		}
	}
}
