package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/pull"
)

// progressBoard shows a pull or push like ctr does: one line per blob with a
// bar, its state and bytes, then totals and the elapsed time. On a terminal
// it redraws in place; otherwise (or with --plain) it prints a line each time
// a blob changes state, which logs well.
type progressBoard struct {
	w      io.Writer
	live   bool
	start  time.Time
	mu     sync.Mutex
	order  []string
	blobs  map[string]*blobState
	drawn  int // lines drawn last time, to move the cursor back over
	stop   chan struct{}
	done   chan struct{}
	header string
}

type blobState struct {
	kind          string
	status        pull.Status
	offset, total int64
}

func newProgressBoard(w io.Writer, plain bool, header string) *progressBoard {
	b := &progressBoard{w: w, start: time.Now(), blobs: map[string]*blobState{}, header: header, stop: make(chan struct{}), done: make(chan struct{})}
	if f, ok := w.(*os.File); ok && !plain {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		b.live = err == nil
	}
	if b.live {
		go b.loop()
	} else {
		close(b.done)
		fmt.Fprintln(w, header)
	}
	return b
}

func kindOf(desc ocispec.Descriptor) string {
	switch {
	case images.IsIndex(desc.MediaType):
		return "index"
	case images.IsManifest(desc.MediaType):
		return "manifest"
	case strings.Contains(desc.MediaType, "config"):
		return "config"
	}
	return "layer"
}

// Update records one blob's progress; it is safe from several goroutines.
func (b *progressBoard) Update(p pull.Progress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	key := p.Desc.Digest.String()
	st, ok := b.blobs[key]
	if !ok {
		st = &blobState{kind: kindOf(p.Desc), total: p.Desc.Size}
		b.blobs[key] = st
		b.order = append(b.order, key)
	}
	changed := st.status != p.Status
	st.status, st.offset = p.Status, p.Offset
	if !b.live && changed {
		fmt.Fprintf(b.w, "%s-%s: %s %s\n", st.kind, key, p.Status, sizes(st))
	}
}

func sizes(st *blobState) string {
	if st.total <= 0 {
		return ""
	}
	return fmt.Sprintf("%s/%s", humanSize(st.offset), humanSize(st.total))
}

func (b *progressBoard) loop() {
	defer close(b.done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			b.draw()
		case <-b.stop:
			b.draw()
			return
		}
	}
}

func (b *progressBoard) draw() {
	b.mu.Lock()
	defer b.mu.Unlock()
	var sb strings.Builder
	if b.drawn > 0 {
		fmt.Fprintf(&sb, "\x1b[%dA", b.drawn) // back to the first line
	}
	lines := []string{b.header}
	keys := append([]string(nil), b.order...)
	sort.SliceStable(keys, func(i, j int) bool { return rank(b.blobs[keys[i]].kind) < rank(b.blobs[keys[j]].kind) })
	var total int64
	for _, k := range keys {
		st := b.blobs[k]
		total += st.offset
		lines = append(lines, fmt.Sprintf("%-80s %-11s %s %s", st.kind+"-"+k+":", st.status, bar(st), sizes(st)))
	}
	el := time.Since(b.start).Seconds()
	lines = append(lines, fmt.Sprintf("elapsed: %.1f s  total: %s (%s/s)", el, humanSize(total), humanSize(int64(float64(total)/max(el, 0.001)))))
	for _, l := range lines {
		sb.WriteString("\x1b[2K" + l + "\n")
	}
	b.drawn = len(lines)
	io.WriteString(b.w, sb.String())
}

func rank(kind string) int {
	switch kind {
	case "index":
		return 0
	case "manifest":
		return 1
	case "config":
		return 2
	}
	return 3
}

func bar(st *blobState) string {
	const width = 30
	n := width
	if st.status == pull.StatusWaiting {
		n = 0
	} else if (st.status == pull.StatusDownloading || st.status == pull.StatusLocked || st.status == pull.StatusRetrying) && st.total > 0 {
		n = int(float64(width) * float64(st.offset) / float64(st.total))
	}
	return "|" + strings.Repeat("+", n) + strings.Repeat("-", width-n) + "|"
}

// Finish draws the final state and prints the totals.
func (b *progressBoard) Finish() {
	if b.live {
		close(b.stop)
		<-b.done
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var total int64
	for _, st := range b.blobs {
		total += st.offset
	}
	fmt.Fprintf(b.w, "elapsed: %.1f s total: %s\n", time.Since(b.start).Seconds(), humanSize(total))
}
