package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzApply applies fuzzed layers into a root beside a sentinel directory:
// Apply must not panic and must never change anything outside root.
//
// Each input is applied twice: as raw bytes (exercising the tar reader
// and whatever headers survive its checksum), and decoded by fuzzLayer into
// a well-formed tar of hostile entries, so that mutations explore entry
// sequences rather than die on header checksums.
func FuzzApply(f *testing.F) {
	requireRoot(f)
	for _, c := range maliciousCorpus() {
		var entries []entry
		for _, e := range c.entries {
			e.Name = strings.ReplaceAll(e.Name, "$OUT", "/outside")
			e.Link = strings.ReplaceAll(e.Link, "$OUT", "/outside")
			entries = append(entries, e)
		}
		f.Add(buildTar(f, entries...), false)
	}
	f.Add(buildTar(f, entry{Name: "a/", Type: tar.TypeDir}, entry{Name: "a/.wh..wh..opq"}, entry{Name: ".wh.b"}), true)
	f.Add([]byte{0, 3, 1, 2, 7, 4, 1, 6, 2, 2, 9, 3, 5, 1, 1, 0, 8, 8, 8, 1}, false)
	f.Add([]byte{2, 4, 3, 9, 0, 1, 4, 4, 2, 3, 3, 6, 5, 0, 0, 1, 2, 7, 7}, true)
	// One sentinel for the whole run, and a fresh root beside it per input:
	// executions stay cheap, which matters as the fuzzer runs each new
	// interesting input many times to minimize it.
	s := newSentinel(f)
	want := s.quick(f)
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, data []byte, overlay bool) {
		var opts []ApplyOpt
		if overlay {
			opts = append(opts, WithOverlayWhiteouts())
		}
		for _, layer := range [][]byte{data, fuzzLayer(data, s.dir)} {
			root := filepath.Join(s.base, "root-"+strconv.FormatInt(n.Add(1), 10))
			must(t, os.Mkdir(root, 0o755))
			Apply(context.Background(), root, bytes.NewReader(layer), opts...)
			if got := s.quick(t); got != want {
				s.check(t) // names the difference
				t.Fatalf("outside root changed:\n%s\nwant\n%s", got, want)
			}
			must(t, os.RemoveAll(root))
		}
	})
}

// quick describes what lies beside the roots and in the sentinel
// directory, cheaply: names, types, modes, owners, sizes, link counts,
// modification times and content.
func (s *sentinel) quick(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	entries, err := os.ReadDir(s.base)
	must(t, err)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "root") {
			b.WriteString(e.Name() + "\n")
		}
	}
	for _, p := range []string{"", "secret", "target", "dir", "dir/f"} {
		var st unix.Stat_t
		must(t, unix.Lstat(filepath.Join(s.dir, p), &st))
		fmt.Fprintf(&b, "%s %o %d:%d %d %d %d\n", p, st.Mode, st.Uid, st.Gid, st.Size, st.Nlink, st.Mtim.Nano())
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			c, err := os.ReadFile(filepath.Join(s.dir, p))
			must(t, err)
			b.Write(c)
		} else {
			names, err := os.ReadDir(filepath.Join(s.dir, p))
			must(t, err)
			for _, n := range names {
				b.WriteString(" " + n.Name())
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Path pieces and link targets fuzzLayer builds entries from: traversal,
// absolute paths, whiteouts, and names that collide with earlier entries.
var (
	fuzzComponents = []string{"a", "b", "l", "..", ".", "", "outside", ".wh.a", ".wh..wh..opq", ".wh...", "secret", "/", "x"}
	fuzzTargets    = []string{"a", "l", "..", "../outside", "../../outside/secret", "/", "$OUT", "$OUT/secret", "a/b", "l/secret", "/outside", ".", "b/../../.."}
)

// fuzzLayer decodes data into a tar of up to 64 entries. outside is the
// sentinel's host path, which "$OUT" targets stand for.
func fuzzLayer(data []byte, outside string) []byte {
	next := func() int {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return int(b)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i < 64 && len(data) > 0; i++ {
		var name strings.Builder
		if next()%4 == 0 {
			name.WriteString("/")
		}
		for n := next()%4 + 1; n > 0; n-- {
			if name.Len() > 0 && !strings.HasSuffix(name.String(), "/") {
				name.WriteString("/")
			}
			name.WriteString(fuzzComponents[next()%len(fuzzComponents)])
		}
		target := strings.ReplaceAll(fuzzTargets[next()%len(fuzzTargets)], "$OUT", outside)
		hdr := &tar.Header{Name: name.String(), Mode: int64(next()) << 4 & 0o7777, Uid: next() % 3, Gid: next() % 3, Format: tar.FormatPAX}
		if hdr.Name == "" {
			hdr.Name = "."
		}
		var content []byte
		switch next() % 7 {
		case 0:
			hdr.Typeflag = tar.TypeReg
			content = bytes.Repeat([]byte{'x'}, next()%16)
			hdr.Size = int64(len(content))
		case 1:
			hdr.Typeflag = tar.TypeDir
		case 2:
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = target
		case 3:
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = target
		case 4:
			hdr.Typeflag = tar.TypeFifo
		case 5:
			hdr.Typeflag = tar.TypeChar // 0/0 or 1/3 only: harmless
			if next()%2 == 1 {
				hdr.Devmajor, hdr.Devminor = 1, 3
			}
		case 6:
			hdr.Typeflag = tar.TypeReg
			hdr.PAXRecords = map[string]string{paxXattrPrefix + "user.f": "v", paxXattrPrefix + "trusted.overlay.opaque": "y"}
		}
		if tw.WriteHeader(hdr) != nil {
			continue
		}
		tw.Write(content)
	}
	tw.Close()
	return buf.Bytes()
}
