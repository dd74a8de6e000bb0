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

// TestCopyOutput moves 4 MiB from a pipe into a FIFO whose reader is
// slower than the writer, so that the FIFO fills and the copy must wait
// for room as well as for input; every byte arrives in order and the copy
// ends at the pipe's EOF. A regular file as destination works too.
func TestCopyOutput(t *testing.T) {
	const size = 4 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7 / 5)
	}
	fifo := filepath.Join(t.TempDir(), "out")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	dst, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	reader, err := os.Open(fifo)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	copied := make(chan error, 1)
	go func() { copied <- copyOutput(dst, r) }()
	go func() {
		for off := 0; off < size; off += 100 << 10 {
			w.Write(data[off:min(off+100<<10, size)])
		}
		w.Close()
	}()
	got := make([]byte, 0, size)
	buf := make([]byte, 1000) // small reads: the FIFO stays full
	for len(got) < size {
		n, err := reader.Read(buf)
		if err != nil {
			t.Fatalf("after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != string(data) {
		t.Fatal("the bytes read differ from the bytes written")
	}
	if err := <-copied; err != nil {
		t.Fatalf("copy: %v", err)
	}

	file := filepath.Join(t.TempDir(), "file")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r2, w2, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	go func() { w2.Write(data[:200<<10]); w2.Close() }()
	if err := copyOutput(f, r2); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != string(data[:200<<10]) {
		t.Fatalf("file holds %d bytes (%v), want the %d written", len(b), err, 200<<10)
	}
}
