package logs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// readLog parses every entry of the log at path.
func readLog(t *testing.T, path string) []Line {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []Line
	// Not bufio.ScanLines: it would drop a '\r' that ends an entry.
	for _, e := range bytes.SplitAfter(data, []byte{'\n'}) {
		if len(e) == 0 {
			continue
		}
		l, err := Parse(e)
		if err != nil {
			t.Fatalf("entry %q: %v", e, err)
		}
		lines = append(lines, l)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("log does not end with a newline: %q", data)
	}
	return lines
}

// entries renders lines as "stream tag content" for comparing.
func entries(lines []Line) []string {
	var out []string
	for _, l := range lines {
		tag := "F"
		if l.Partial {
			tag = "P"
		}
		out = append(out, l.Stream+" "+tag+" "+string(l.Content))
	}
	return out
}

// copyChunks writes the input to a new log in the given chunks and
// returns the entries.
func copyChunks(t *testing.T, max int, chunks ...string) []string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Open(path, max)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		for _, c := range chunks {
			pw.Write([]byte(c))
		}
		pw.Close()
	}()
	if err := w.Copy(Stdout, pr); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return entries(readLog(t, path))
}

func TestLines(t *testing.T) {
	for _, tc := range []struct {
		name   string
		max    int
		chunks []string
		want   []string
	}{
		{"full lines", 0, []string{"a\nbb\n"}, []string{"stdout F a", "stdout F bb"}},
		{"empty line", 0, []string{"\n\n"}, []string{"stdout F ", "stdout F "}},
		{"split across reads", 0, []string{"he", "llo\nwor", "ld\n"}, []string{"stdout F hello", "stdout F world"}},
		{"crlf", 0, []string{"a\r\nb\n"}, []string{"stdout F a", "stdout F b"}},
		{"crlf across reads", 0, []string{"a\r", "\nb\n"}, []string{"stdout F a", "stdout F b"}},
		{"lone cr kept", 0, []string{"a\rb\n\r\r\n"}, []string{"stdout F a\rb", "stdout F \r"}},
		{"eof without newline is partial", 0, []string{"a\nrest"}, []string{"stdout F a", "stdout P rest"}},
		{"split at max", 4, []string{"abcdefghij\n"}, []string{"stdout P abcd", "stdout P efgh", "stdout F ij"}},
		{"exactly max", 4, []string{"abcd\nabcde\n"}, []string{"stdout F abcd", "stdout P abcd", "stdout F e"}},
		{"split across reads at max", 3, []string{"ab", "cd", "ef", "g\n"}, []string{"stdout P abc", "stdout P def", "stdout F g"}},
		{"crlf does not count", 3, []string{"abc\r", "\n"}, []string{"stdout F abc"}},
		{"cr past max then more", 3, []string{"abc\r", "x\n"}, []string{"stdout P abc", "stdout F \rx"}},
		{"long tail at eof", 3, []string{"abcdefg"}, []string{"stdout P abc", "stdout P def", "stdout P g"}},
		{"tail cr at eof", 3, []string{"abc\r"}, []string{"stdout P abc", "stdout P \r"}},
		{"max multiple at eof", 2, []string{"abcd"}, []string{"stdout P ab", "stdout P cd"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := copyChunks(t, tc.max, tc.chunks...)
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tc.want) {
				t.Fatalf("entries\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestEntryFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if err := w.Copy(Stderr, strings.NewReader("x y\n")); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	w.Close()
	data, _ := os.ReadFile(path)
	// 2024-01-02T03:04:05.000000000Z stderr F x y\n: fixed-width UTC.
	if len(data) != len("2006-01-02T15:04:05.000000000Z")+len(" stderr F x y\n") || !bytes.HasSuffix(data, []byte("Z stderr F x y\n")) {
		t.Fatalf("entry %q", data)
	}
	l, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if l.Time.Before(before.Truncate(time.Nanosecond)) || l.Time.After(after) || l.Time.Location() != time.UTC {
		t.Fatalf("time %v not between %v and %v, or not UTC", l.Time, before, after)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("log mode %v %v", fi.Mode(), err)
	}
}

func TestOpenAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	for _, s := range []string{"one\n", "two\n"} {
		w, err := Open(path, 0)
		if err != nil {
			t.Fatal(err)
		}
		w.Copy(Stdout, strings.NewReader(s))
		w.Close()
	}
	if got := entries(readLog(t, path)); len(got) != 2 || got[0] != "stdout F one" || got[1] != "stdout F two" {
		t.Fatalf("entries %q", got)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing", "c.log"), 0); !errdefs.IsNotFound(err) {
		t.Fatalf("open in a missing directory: %v", err)
	}
	w, _ := Open(path, 0)
	if _, err := w.Stream("stdin"); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("stream stdin: %v", err)
	}
	w.Close()
}

// TestStreamsDoNotMix: two streams written at once, in small pieces, give
// entries each of which is one stream's whole line.
func TestStreamsDoNotMix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	var wg sync.WaitGroup
	for _, stream := range []string{Stdout, Stderr} {
		pr, pw := io.Pipe()
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer pw.Close()
			for i := 0; i < n; i++ {
				line := fmt.Sprintf("%s-%d-%s\n", stream, i, strings.Repeat(stream[3:], 50))
				// Byte by byte for some, so that lines are in flight on
				// both streams at once.
				for j := 0; j < len(line); j += 7 {
					pw.Write([]byte(line[j:min(j+7, len(line))]))
				}
			}
		}()
		go func() {
			defer wg.Done()
			if err := w.Copy(stream, pr); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	w.Close()
	next := map[string]int{}
	for _, l := range readLog(t, path) {
		want := fmt.Sprintf("%s-%d-%s", l.Stream, next[l.Stream], strings.Repeat(l.Stream[3:], 50))
		if l.Partial || string(l.Content) != want {
			t.Fatalf("entry %s %v %q, want %q", l.Stream, l.Partial, l.Content, want)
		}
		next[l.Stream]++
	}
	if next[Stdout] != n || next[Stderr] != n {
		t.Fatalf("entries per stream %v", next)
	}
}

// TestReopenAfterRename: the kubelet renames the log and asks for a
// reopen; what follows goes to a new file at the path, nothing is lost
// and no entry is cut.
func TestReopenAfterRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.log")
	w, err := Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- w.Copy(Stdout, pr) }()
	const n = 300
	writes := make(chan struct{})
	go func() {
		defer close(writes)
		for i := 0; i < n; i++ {
			fmt.Fprintf(pw, "line %d\n", i)
		}
	}()
	rotated := filepath.Join(dir, "c.log.1")
	// Rotate while lines are being written.
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	<-writes
	fmt.Fprintf(pw, "after\n")
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	w.Close()
	all := append(entries(readLog(t, rotated)), entries(readLog(t, path))...)
	for i := 0; i < n; i++ {
		if all[i] != fmt.Sprintf("stdout F line %d", i) {
			t.Fatalf("entry %d: %q", i, all[i])
		}
	}
	cur := entries(readLog(t, path))
	if len(all) != n+1 || cur[len(cur)-1] != "stdout F after" {
		t.Fatalf("%d entries, new file %q", len(all), cur)
	}
	if err := w.Reopen(); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("reopen after close: %v", err)
	}
}

// TestWriteErrorsDoNotStopCopy: the container's output is drained even
// when the log cannot be written.
func TestWriteErrorsDoNotStopCopy(t *testing.T) {
	w, err := Open(filepath.Join(t.TempDir(), "c.log"), 0)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	r := strings.NewReader(strings.Repeat("x\n", 100000))
	if err := w.Copy(Stdout, r); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("copy into a closed log: %v", err)
	}
	if r.Len() != 0 {
		t.Fatalf("%d bytes left unread", r.Len())
	}
}

func TestParse(t *testing.T) {
	ts := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	for _, l := range []Line{
		{Time: ts, Stream: Stdout, Content: []byte("hello world")},
		{Time: ts, Stream: Stderr, Partial: true, Content: []byte("  spaced  ")},
		{Time: ts, Stream: Stdout, Content: []byte{}},
		{Time: ts.Truncate(time.Second), Stream: Stdout, Content: []byte("\r")},
	} {
		got, err := Parse(l.AppendTo(nil))
		if err != nil {
			t.Fatal(err)
		}
		if !got.Time.Equal(l.Time) || got.Stream != l.Stream || got.Partial != l.Partial || !bytes.Equal(got.Content, l.Content) {
			t.Fatalf("round trip of %+v gave %+v", l, got)
		}
	}
	// Written by others: variable-width fraction, an offset, extra tags.
	l, err := Parse([]byte("2016-10-06T00:17:09.669794202+02:00 stderr F:x content\n"))
	if err != nil || l.Stream != Stderr || l.Partial || string(l.Content) != "content" || l.Time.Unix() != 1475705829 {
		t.Fatalf("%+v %v", l, err)
	}
	for _, bad := range []string{
		"",
		"2016-10-06T00:17:09.669794202Z",
		"2016-10-06T00:17:09.669794202Z stdout",
		"2016-10-06T00:17:09.669794202Z stdout F",
		"yesterday stdout F x",
		"2016-10-06T00:17:09.669794202Z stdin F x",
		"2016-10-06T00:17:09.669794202Z stdout X x",
		"2016-10-06T00:17:09.669794202Z stdout FP x",
		"2016-10-06T00:17:09.669794202Z stdout F a\nb",
	} {
		if _, err := Parse([]byte(bad)); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Parse(%q): %v", bad, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("2016-10-06T00:17:09.669794202Z stdout F hello\n"))
	f.Add([]byte("2016-10-06T00:17:09Z stderr P \n"))
	f.Add([]byte("2016-10-06T00:17:09.1+01:00 stdout F:a:b x y z"))
	f.Add([]byte("x stdout F y"))
	f.Fuzz(func(t *testing.T, line []byte) {
		l, err := Parse(line)
		if err != nil {
			return
		}
		// What parses formats back to an entry that parses the same.
		again, err := Parse(l.AppendTo(nil))
		if err != nil {
			t.Fatalf("reformatted %q does not parse: %v", l.AppendTo(nil), err)
		}
		if !again.Time.Equal(l.Time) || again.Stream != l.Stream || again.Partial != l.Partial || !bytes.Equal(again.Content, l.Content) {
			t.Fatalf("%+v became %+v", l, again)
		}
	})
}

// FuzzWriter: any output, read in any chunks, comes back from the log's
// entries as it was, but for "\r\n" written as "\n" and a newline after a
// last unfinished line; no entry is longer than the maximum.
func FuzzWriter(f *testing.F) {
	f.Add([]byte("hello\nworld\n"), uint8(0), uint8(3))
	f.Add([]byte("abc\r\ndef\r"), uint8(3), uint8(1))
	f.Add([]byte("\r\r\n\n\r"), uint8(1), uint8(2))
	f.Add([]byte("a long line without an end"), uint8(5), uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, max, chunk uint8) {
		path := filepath.Join(t.TempDir(), "c.log")
		w, err := Open(path, int(max))
		if err != nil {
			t.Fatal(err)
		}
		sw, err := w.Stream(Stdout)
		if err != nil {
			t.Fatal(err)
		}
		step := int(chunk) + 1
		for i := 0; i < len(data); i += step {
			if _, err := sw.Write(data[i:min(i+step, len(data))]); err != nil {
				t.Fatal(err)
			}
		}
		if err := sw.Close(); err != nil {
			t.Fatal(err)
		}
		w.Close()
		var got []byte
		lines := readLog(t, path)
		for i, l := range lines {
			if max > 0 && len(l.Content) > int(max) {
				t.Fatalf("entry of %d bytes, max %d", len(l.Content), max)
			}
			// A P entry shorter than the maximum ends the output.
			if l.Partial && max > 0 && len(l.Content) != int(max) && i != len(lines)-1 {
				t.Fatalf("short partial entry %d of %d: %q", i, len(lines), l.Content)
			}
			got = append(got, l.Content...)
			if !l.Partial {
				got = append(got, '\n')
			}
		}
		want := bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
		if !bytes.Equal(got, want) {
			t.Fatalf("log holds %q, want %q", got, want)
		}
	})
}
