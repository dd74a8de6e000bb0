package shims

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hullrt/hull/core/runtime"
	"github.com/hullrt/hull/internal/pidfd"
	"github.com/hullrt/hull/shim/launch"
)

// teardown removes every trace of a task that hulld will not report: the
// processes still working on its bundle (its shim, a runc create in
// flight), the runc container and rootfs mount (through the shim binary's
// delete command), the shim's socket and the bundle with its work
// directory. It is how hulld closes the windows between starting a shim
// and recording the task, and between deleting a container and removing
// its bundle: after a crash in one of them, what hulld does not list is
// gone rather than leaked.
//
// kill says whether processes working on the bundle may be killed: not
// when a live shim answered and was asked to go, since a group shim serves
// other tasks too.
func (m *Manager) teardown(ctx context.Context, b *bundle, rec shimRecord, kill bool) (runtime.Exit, error) {
	var errs []error
	if kill {
		if err := killBundleProcs(b, 5*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	exit := runtime.Exit{Status: 255, ExitedAt: time.Now().UTC()}
	if rec.Binary != "" {
		e, err := m.deleteShim(ctx, rec.Binary, b)
		exit = e
		if err != nil {
			errs = append(errs, err)
		}
	}
	if p, err := socketPath(rec.Address); err == nil && !launch.Answers(p) {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := b.remove(); err != nil {
		errs = append(errs, fmt.Errorf("remove bundle %s: %w", b.Path, err))
	}
	return exit, errors.Join(errs...)
}

// killBundleProcs kills the processes working on bundle b and waits, up to
// timeout, for them to be gone: those whose working directory is the
// bundle (its shim; runc before it enters the container) and those given
// the bundle's path as an argument (runc create --bundle). A runc create
// left running by a killed shim would otherwise finish after the cleanup
// and leave a container no one knows.
func killBundleProcs(b *bundle, timeout time.Duration) error {
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	var pids []int
	arg := []byte(b.Path)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || pid <= 1 {
			continue
		}
		if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil && cwd == b.Path {
			pids = append(pids, pid)
		} else if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && slices.ContainsFunc(bytes.Split(cmd, []byte{0}), func(a []byte) bool { return bytes.Equal(a, arg) }) {
			pids = append(pids, pid)
		}
	}
	if err := pidfd.KillAndWait(pids, timeout); err != nil {
		return fmt.Errorf("processes working on bundle %s: %w", b.Path, err)
	}
	return nil
}

// sweepRunc deletes the runc containers under hulld's own runc root that
// no task owns, through `runc delete --force` (which also removes their
// cgroups), and removes a container directory runc no longer recognises
// (a create killed before it wrote its state). keep reports the tasks to
// leave alone; minAge spares state younger than that, which may be a
// create not yet registered. Containers of tasks that named another runc
// root are not hulld's to sweep.
func (m *Manager) sweepRunc(ctx context.Context, keep func(ns, id string) bool, minAge time.Duration) {
	if m.cfg.RuncRoot == "" {
		return
	}
	nsDirs, err := os.ReadDir(m.cfg.RuncRoot)
	if err != nil {
		return
	}
	runcBin, lookErr := exec.LookPath("runc")
	for _, nsd := range nsDirs {
		if !nsd.IsDir() {
			continue
		}
		root := filepath.Join(m.cfg.RuncRoot, nsd.Name())
		ids, _ := os.ReadDir(root)
		for _, idd := range ids {
			if !idd.IsDir() || keep(nsd.Name(), idd.Name()) {
				continue
			}
			dir := filepath.Join(root, idd.Name())
			if info, err := idd.Info(); err != nil || time.Since(info.ModTime()) < minAge {
				continue
			}
			what := "runc container " + key(nsd.Name(), idd.Name())
			if lookErr != nil {
				m.cleanupFailed(what, fmt.Errorf("no task owns it and runc is not on PATH to delete it: %w", lookErr))
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			out, err := exec.CommandContext(cctx, runcBin, "--root", root, "delete", "--force", idd.Name()).CombinedOutput()
			cancel()
			if _, serr := os.Stat(filepath.Join(dir, "state.json")); err != nil && errors.Is(serr, os.ErrNotExist) {
				err = os.RemoveAll(dir)
			}
			if err != nil {
				m.cleanupFailed(what, fmt.Errorf("runc delete --force: %v: %s", err, strings.TrimSpace(string(out))))
				continue
			}
			m.log.Warn("removed a runc container no task owns", "namespace", nsd.Name(), "id", idd.Name())
		}
	}
}

// sweepSockets removes the shim sockets that no shim answers on in the
// directories hulld's shims use: those of shims killed before hulld
// recorded their address, which no record leads to. Besides today's
// directory, the ones earlier hullds used (<dir of address>/s, or its
// fallback) are swept, so that an upgrade in place leaves nothing behind.
// Only files named as shims name their sockets are touched.
func (m *Manager) sweepSockets() {
	dirs := []string{m.socketDir()}
	if m.cfg.Address != "" {
		for _, d := range []string{filepath.Join(filepath.Dir(m.cfg.Address), "s"), launch.SocketDir(m.cfg.Address, shimSocketNameLen)} {
			if !slices.Contains(dirs, d) {
				dirs = append(dirs, d)
			}
		}
	}
	for _, dir := range dirs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.Type()&os.ModeSocket == 0 || !launch.IsSocketName(e.Name()) {
				continue
			}
			p := filepath.Join(dir, e.Name())
			if !launch.Answers(p) {
				os.Remove(p)
			}
		}
	}
}

// cleanupFailed logs that what could not be cleaned up, once for each
// distinct reason: the reconciler retries every interval, and an operator
// needs the first report, not one a minute.
func (m *Manager) cleanupFailed(what string, err error) {
	msg := err.Error()
	m.mu.Lock()
	seen := m.failures[what] == msg
	m.failures[what] = msg
	m.mu.Unlock()
	if !seen {
		m.log.Warn("could not clean up "+what+"; will retry", "error", err)
	}
}

// cleanedUp forgets a failure logged for what, once it went.
func (m *Manager) cleanedUp(what string) {
	m.mu.Lock()
	delete(m.failures, what)
	m.mu.Unlock()
}
