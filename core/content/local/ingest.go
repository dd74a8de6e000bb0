package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/hullrt/hull/core/content"
)

// Names of the files in an ingest directory.
const (
	dataFile      = "data"
	refFile       = "ref"
	startedAtFile = "startedat"
	updatedAtFile = "updatedat"
	totalFile     = "total"
	expectedFile  = "expected"
)

func (s *Store) ingestDir(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return filepath.Join(s.root, "ingest", hex.EncodeToString(sum[:]))
}

// lock takes ref for one writer. The lock lives in the Store, not on disk:
// hulld is the only process on its root, and a writer that died with its
// process must not keep its ref locked.
func (s *Store) lock(ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if since, ok := s.locks[ref]; ok {
		return fmt.Errorf("ref %s locked for %s (since %s): %w",
			ref, time.Since(since).Round(time.Millisecond), since.Format(time.RFC3339Nano), errdefs.ErrUnavailable)
	}
	s.locks[ref] = time.Now()
	return nil
}

func (s *Store) unlock(ref string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.locks, ref)
}

// Status reports the ingest ref as it is on disk. While a writer holds ref,
// Offset is still exact (writes are not buffered), and UpdatedAt comes from
// the data file's modification time because updatedat is only rewritten when
// the writer closes.
func (s *Store) Status(ctx context.Context, ref string) (content.Status, error) {
	st, err := readStatus(s.ingestDir(ref))
	if err != nil {
		return content.Status{}, fmt.Errorf("ingest ref %q: %w", ref, err)
	}
	if st.Ref != ref {
		// Only a hand-made directory could get here; don't report it as ref.
		return content.Status{}, fmt.Errorf("ingest ref %q: %w", ref, errdefs.ErrNotFound)
	}
	return st, nil
}

// ListStatuses reports every ingest on disk. Filters are not supported at
// this layer (the metadata layer, which knows namespaces, filters); rather
// than silently return more than asked, any non-empty filter is rejected with
// NotImplemented.
func (s *Store) ListStatuses(ctx context.Context, filters ...string) ([]content.Status, error) {
	for _, f := range filters {
		if f != "" {
			return nil, fmt.Errorf("ingest filter %q: filters are not supported by the local store: %w", f, errdefs.ErrNotImplemented)
		}
	}
	ingest := filepath.Join(s.root, "ingest")
	entries, err := os.ReadDir(ingest)
	if err != nil {
		return nil, fmt.Errorf("list ingests: %w", err)
	}
	var out []content.Status
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !e.IsDir() {
			continue
		}
		st, err := readStatus(filepath.Join(ingest, e.Name()))
		if errdefs.IsNotFound(err) {
			continue // leftover of a crash, or aborted while we listed
		} else if err != nil {
			return nil, fmt.Errorf("list ingests: %s: %w", e.Name(), err)
		}
		out = append(out, st)
	}
	return out, nil
}

// Abort discards the ingest ref. It does not wait for a writer holding ref:
// that writer's Commit then fails with NotFound, as if the ingest had been
// aborted just before it was opened.
func (s *Store) Abort(ctx context.Context, ref string) error {
	dir := s.ingestDir(ref)
	if _, err := os.Lstat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("ingest ref %q: %w", ref, errdefs.ErrNotFound)
		}
		return fmt.Errorf("abort ingest ref %q: %w", ref, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("abort ingest ref %q: %w", ref, err)
	}
	return nil
}

// CleanupIngests removes what under ingest/ no writer can resume and no
// ListStatuses reports, so that neither Abort nor any other call would ever
// free its space: directories without a data file or without a ref (a crash
// or a full disk while the ingest was being created leaves one with only an
// empty .ref.tmp), directories whose ref does not hash to their name, and
// stray files. Ingests a writer of this Store holds are left alone, however
// incomplete: it may be creating them right now. It returns how many
// entries it removed.
func (s *Store) CleanupIngests(ctx context.Context) (int, error) {
	ingest := filepath.Join(s.root, "ingest")
	entries, err := os.ReadDir(ingest)
	if err != nil {
		return 0, fmt.Errorf("clean up ingests: %w", err)
	}
	removed := 0
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		ok, err := s.removeUnusableIngest(ingest, e)
		if err != nil {
			return removed, fmt.Errorf("clean up ingests: %s: %w", e.Name(), err)
		}
		if ok {
			removed++
		}
	}
	return removed, nil
}

// removeUnusableIngest removes the entry e of the ingest directory if it
// holds no usable ingest. It holds s.mu throughout, so a writer takes its ref
// either before (and the entry is left to it) or after the removal (and
// creates the ingest afresh).
func (s *Store) removeUnusableIngest(ingest string, e fs.DirEntry) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ref := range s.locks {
		if filepath.Base(s.ingestDir(ref)) == e.Name() {
			return false, nil
		}
	}
	p := filepath.Join(ingest, e.Name())
	if e.IsDir() {
		st, err := readStatus(p)
		if err == nil && filepath.Base(s.ingestDir(st.Ref)) == e.Name() {
			return false, nil // a resumable ingest
		}
		if err != nil && !errdefs.IsNotFound(err) {
			return false, err
		}
	}
	return true, os.RemoveAll(p)
}

// readStatus reads an ingest directory; NotFound if it holds no ingest.
// Metadata files that are missing or unreadable give zero values instead of
// errors: they are advisory, and the data file is the ingest.
func readStatus(dir string) (content.Status, error) {
	fi, err := os.Stat(filepath.Join(dir, dataFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return content.Status{}, errdefs.ErrNotFound
		}
		return content.Status{}, err
	}
	ref, err := os.ReadFile(filepath.Join(dir, refFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return content.Status{}, errdefs.ErrNotFound
		}
		return content.Status{}, err
	}
	m := readMeta(dir)
	st := content.Status{
		Ref:       string(ref),
		Offset:    fi.Size(),
		Total:     m.total,
		Expected:  m.expected,
		StartedAt: m.startedAt,
		UpdatedAt: m.updatedAt,
	}
	if mt := fi.ModTime(); mt.After(st.UpdatedAt) {
		st.UpdatedAt = mt
	}
	return st, nil
}

// meta is what an ingest directory records besides its data.
type meta struct {
	startedAt, updatedAt time.Time
	total                int64
	expected             digest.Digest
}

func readMeta(dir string) meta {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	var m meta
	m.startedAt, _ = time.Parse(time.RFC3339Nano, read(startedAtFile))
	if m.startedAt.IsZero() {
		// A new ingest records its start as its ref file's mtime.
		if fi, err := os.Stat(filepath.Join(dir, refFile)); err == nil {
			m.startedAt = fi.ModTime()
		}
	}
	m.updatedAt, _ = time.Parse(time.RFC3339Nano, read(updatedAtFile))
	if n, err := strconv.ParseInt(read(totalFile), 10, 64); err == nil && n > 0 {
		m.total = n
	}
	if d := digest.Digest(read(expectedFile)); d.Validate() == nil {
		m.expected = d
	}
	return m
}

// writeMeta replaces the file name in dir atomically, so that a crash leaves
// the old value or the new one, never a prefix that still parses (a cut-off
// total would be a wrong total). No fsync: losing the newest value to a power
// cut is harmless, these files are advisory.
func writeMeta(dir, name, value string) error {
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(value), 0o600); err != nil {
		// WriteFile creates the file before it writes: on a full disk that
		// leaves an empty one behind, which is nothing worth keeping.
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// writeMetaInPlace writes the file name in dir directly: for an ingest
// that has no data file yet, where a crash leaves no ingest to misread.
func writeMetaInPlace(dir, name, value string) error {
	if err := os.WriteFile(filepath.Join(dir, name), []byte(value), 0o600); err != nil {
		os.Remove(filepath.Join(dir, name))
		return err
	}
	return nil
}

// makeDir creates dir and its missing parents, reporting whether dir is
// new (and so holds nothing from an earlier attempt).
func makeDir(dir string) (bool, error) {
	err := os.Mkdir(dir, 0o700)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrExist):
		return false, nil
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
			return false, err
		}
		return makeDir(dir)
	}
	return false, err
}

// removeIngestDir removes an ingest directory whose data is gone: its
// usual files one by one, the whole tree only if anything else is left.
func removeIngestDir(dir string) error {
	for _, name := range []string{refFile, totalFile, expectedFile} {
		os.Remove(filepath.Join(dir, name))
	}
	if err := os.Remove(dir); err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return os.RemoveAll(dir)
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
