// Package logs writes and reads the kubelet's CRI container log format.
//
// A CRI log file holds one entry per line:
//
//	<timestamp> <stream> <tag> <content>\n
//
// The timestamp is the time the line was read, in UTC, RFC 3339 with
// nanoseconds (always nine fractional digits, so entries line up and sort
// as text); stream is "stdout" or "stderr"; tag is "F" for the end of a
// line and "P" for a part of one that goes on in the next entry of the
// same stream. The kubelet (kubectl logs) joins P entries with the F that
// follows.
//
// A Writer turns a container's raw output into such entries, the way
// containerd does: "\n" and "\r\n" end a line and are not written; a line
// longer than the maximum line size is cut into P entries of exactly that
// size and a final F; output that ends without a newline is written as a
// P entry, since the line never ended. Both streams of a container share
// one file and one Writer; each entry is written with one write(2) under
// the Writer's lock, so entries of different streams never mix, and a
// rotation by the kubelet (Reopen) falls between entries.
package logs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/containerd/errdefs"
)

// The streams and tags of a CRI log entry.
const (
	Stdout = "stdout"
	Stderr = "stderr"

	tagFull    = 'F'
	tagPartial = 'P'
)

// timeFormat is time.RFC3339Nano with the trailing zeros of the fraction
// kept: every entry's timestamp has the same width, and the kubelet parses
// it with time.RFC3339Nano all the same.
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// copyBufferSize is how much Copy reads at once.
const copyBufferSize = 32 << 10

// Writer writes a container's stdout and stderr into one CRI log file;
// safe for concurrent streams.
type Writer struct {
	path        string
	maxLineSize int

	mu     sync.Mutex
	file   *os.File // nil once closed, or when a Reopen failed
	closed bool
}

// Open opens (creating, appending, mode 0640) the log at path;
// maxLineSize <= 0 means no limit (containerd's
// max_container_log_line_size default is 16384).
func Open(path string, maxLineSize int) (*Writer, error) {
	if path == "" {
		return nil, fmt.Errorf("logs: empty log path: %w", errdefs.ErrInvalidArgument)
	}
	f, err := openFile(path)
	if err != nil {
		return nil, err
	}
	return &Writer{path: path, maxLineSize: maxLineSize, file: f}, nil
}

func openFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		var class error = errdefs.ErrUnavailable
		if errors.Is(err, os.ErrNotExist) {
			class = errdefs.ErrNotFound
		}
		return nil, fmt.Errorf("logs: open container log %q: %w: %w", path, class, err)
	}
	return f, nil
}

// Path is the log file's path.
func (w *Writer) Path() string { return w.path }

// Copy reads r (one stream) until EOF and writes it as CRI lines of
// stream ("stdout"/"stderr"); it returns when r ends. A read error other
// than EOF ends the copy too and is returned. Failed writes to the file
// do not stop the copy (the container's output must be drained or the
// container blocks); the first of them is returned at the end.
func (w *Writer) Copy(stream string, r io.Reader) error {
	sw, err := w.Stream(stream)
	if err != nil {
		return err
	}
	buf := make([]byte, copyBufferSize)
	var readErr error
	for {
		n, err := r.Read(buf)
		if n > 0 {
			sw.Write(buf[:n])
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				readErr = fmt.Errorf("logs: read %s for %q: %w", stream, w.path, err)
			}
			break
		}
	}
	return errors.Join(readErr, sw.Close())
}

// Stream returns a writer that turns one stream's raw output into CRI
// entries of the log: for callers that read the output themselves (to
// send it elsewhere too). Its Close writes what is left of an unfinished
// line.
func (w *Writer) Stream(stream string) (*StreamWriter, error) {
	if stream != Stdout && stream != Stderr {
		return nil, fmt.Errorf("logs: stream %q is neither %q nor %q: %w", stream, Stdout, Stderr, errdefs.ErrInvalidArgument)
	}
	return &StreamWriter{w: w, stream: stream}, nil
}

// writeEntry appends one whole entry to the file.
func (w *Writer) writeEntry(entry []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.file == nil {
		if w.closed {
			return fmt.Errorf("logs: %q: %w", w.path, os.ErrClosed)
		}
		return fmt.Errorf("logs: %q is not open (a reopen failed): %w", w.path, errdefs.ErrUnavailable)
	}
	if _, err := w.file.Write(entry); err != nil {
		return fmt.Errorf("logs: write %q: %w", w.path, err)
	}
	return nil
}

// Reopen closes the file and opens path again (the kubelet rotated it:
// ReopenContainerLog); lines in flight are not lost or split. If the open
// fails, entries are dropped until a Reopen succeeds.
func (w *Writer) Reopen() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return fmt.Errorf("logs: reopen %q: writer is closed: %w", w.path, errdefs.ErrFailedPrecondition)
	}
	var closeErr error
	if w.file != nil {
		closeErr = w.file.Close()
		w.file = nil
	}
	f, err := openFile(w.path)
	if err != nil {
		return err
	}
	w.file = f
	if closeErr != nil {
		return fmt.Errorf("logs: close %q before reopening: %w", w.path, closeErr)
	}
	return nil
}

// Close closes the file; entries written after it are dropped.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	if w.file == nil {
		return nil
	}
	err := w.file.Close()
	w.file = nil
	return err
}

// StreamWriter cuts one stream's output into CRI entries. It is not safe
// for concurrent use: one stream has one reader.
type StreamWriter struct {
	w      *Writer
	stream string
	// pending is the line read so far, not written yet.
	pending []byte
	entry   []byte // reused buffer of the entry being written
	err     error  // the first write error
	closed  bool
}

// Write takes output of the stream; it always consumes all of p. The
// error is the first failure to write an entry, kept until Close.
func (s *StreamWriter) Write(p []byte) (int, error) {
	if s.closed {
		return 0, fmt.Errorf("logs: %s stream of %q: %w", s.stream, s.w.path, os.ErrClosed)
	}
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.pending = append(s.pending, p...)
			s.cut(true)
			break
		}
		s.pending = append(s.pending, p[:i]...)
		p = p[i+1:]
		// Cut before dropping a '\r': the one a "\r\n" ends with does not
		// count towards the line's size.
		s.cut(true)
		if l := len(s.pending); l > 0 && s.pending[l-1] == '\r' {
			s.pending = s.pending[:l-1]
		}
		s.emit(tagFull, s.pending)
		s.pending = s.pending[:0]
	}
	return n, s.err
}

// cut writes P entries while the pending line is longer than the maximum.
// A last byte '\r' is not counted when waiting is set: it may be the
// start of a "\r\n" the next write ends.
func (s *StreamWriter) cut(waiting bool) {
	max := s.w.maxLineSize
	if max <= 0 {
		return
	}
	for len(s.pending) > max {
		if waiting && len(s.pending) == max+1 && s.pending[max] == '\r' {
			return
		}
		s.emit(tagPartial, s.pending[:max])
		s.pending = append(s.pending[:0], s.pending[max:]...)
	}
}

// emit writes one entry of content with tag.
func (s *StreamWriter) emit(tag byte, content []byte) {
	s.entry = appendEntry(s.entry[:0], time.Now(), s.stream, tag == tagPartial, content)
	if err := s.w.writeEntry(s.entry); err != nil && s.err == nil {
		s.err = err
	}
}

// Close writes the rest of an unfinished line as a P entry (it has no
// end: the output stopped in its middle) and returns the first write
// error, if any.
func (s *StreamWriter) Close() error {
	if s.closed {
		return s.err
	}
	s.closed = true
	s.cut(false)
	if len(s.pending) > 0 {
		s.emit(tagPartial, s.pending)
		s.pending = nil
	}
	return s.err
}

// Line is one parsed entry of a CRI log.
type Line struct {
	Time    time.Time
	Stream  string // Stdout or Stderr
	Partial bool   // tag P: the line goes on in the next entry of Stream
	Content []byte // without the entry's newline
}

// AppendTo appends l as a log entry, newline included, to b.
func (l Line) AppendTo(b []byte) []byte {
	return appendEntry(b, l.Time, l.Stream, l.Partial, l.Content)
}

func appendEntry(b []byte, t time.Time, stream string, partial bool, content []byte) []byte {
	b = t.UTC().AppendFormat(b, timeFormat)
	b = append(b, ' ')
	b = append(b, stream...)
	tag := byte(tagFull)
	if partial {
		tag = tagPartial
	}
	b = append(b, ' ', tag, ' ')
	b = append(b, content...)
	return append(b, '\n')
}

// Parse parses one CRI log line (for tests and for hullctl): time,
// stream, partial, content. The line's newline is optional. As the
// kubelet does, a tag may carry more after a ':' ("F:x"), which is
// ignored; its first part must be F or P.
func Parse(line []byte) (Line, error) {
	bad := func(why string) (Line, error) {
		return Line{}, fmt.Errorf("logs: CRI log line %q: %s: %w", clip(line), why, errdefs.ErrInvalidArgument)
	}
	rest, _ := bytes.CutSuffix(line, []byte{'\n'})
	if bytes.IndexByte(rest, '\n') >= 0 {
		return bad("more than one line")
	}
	ts, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return bad("no stream after the timestamp")
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return bad("timestamp is not RFC 3339: " + err.Error())
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return bad("no tag after the stream")
	}
	if s := string(stream); s != Stdout && s != Stderr {
		return bad("stream is neither stdout nor stderr")
	}
	tags, content, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return bad("no content after the tag")
	}
	tag, _, _ := bytes.Cut(tags, []byte{':'})
	if len(tag) != 1 || (tag[0] != tagFull && tag[0] != tagPartial) {
		return bad("tag is neither F nor P")
	}
	return Line{
		Time:    t,
		Stream:  string(stream),
		Partial: tag[0] == tagPartial,
		Content: bytes.Clone(content),
	}, nil
}

// clip shortens a line for an error message.
func clip(b []byte) []byte {
	const max = 80
	if len(b) > max {
		return b[:max]
	}
	return b
}
