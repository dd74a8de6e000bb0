package daemon

import (
	"fmt"
	"strings"
	"sync"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"

	"github.com/hullrt/hull/plugin"
)

// healthReporter is what the health plugin offers the daemon: hulld is
// serving, or not, as a whole.
type healthReporter interface {
	SetServing(bool)
	Shutdown()
}

// notify sends states to the service manager (systemd, through
// $NOTIFY_SOCKET), when there is one; without it nothing is sent.
func (d *Daemon) notify(states ...string) error {
	_, err := sddaemon.SdNotify(false, strings.Join(states, "\n"))
	return err
}

func (d *Daemon) healthReporters() []healthReporter {
	var hs []healthReporter
	for _, inst := range d.plugins.GetByType(plugin.GRPCPlugin) {
		if h, ok := inst.(healthReporter); ok {
			hs = append(hs, h)
		}
	}
	return hs
}

// ready says that hulld serves: called once every plugin that must run
// runs (New fails otherwise) and every listener accepts, so that a
// `systemctl start hull` returns when clients can connect, not before.
func (d *Daemon) ready() {
	for _, h := range d.healthReporters() {
		h.SetServing(true)
	}
	status := fmt.Sprintf("serving on %s", d.cfg.GRPC.Address)
	if err := d.notify(sddaemon.SdNotifyReady, "STATUS="+status); err != nil {
		d.log.Warn("tell the service manager hulld is ready", "error", err)
	}
}

// stopping says that hulld no longer takes work: health checks answer
// NOT_SERVING while in-flight calls finish, and systemd knows the stop is
// hulld's own.
func (d *Daemon) stopping() {
	for _, h := range d.healthReporters() {
		h.Shutdown()
	}
	if err := d.notify(sddaemon.SdNotifyStopping, "STATUS=stopping"); err != nil {
		d.log.Warn("tell the service manager hulld is stopping", "error", err)
	}
}

// startWatchdog sends WATCHDOG=1 every half of the unit's WatchdogSec
// until the returned stop is called, which waits for the goroutine. Ticks
// come from the Go runtime's timers, so a hulld whose scheduler is stuck
// (or that is stopped by a debugger) is restarted by systemd.
func (d *Daemon) startWatchdog() (stop func()) {
	// Half the unit's WatchdogSec, for this process only ($WATCHDOG_PID).
	interval, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil {
		d.log.Warn("watchdog settings", "error", err)
	}
	if interval /= 2; interval <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := d.notify(sddaemon.SdNotifyWatchdog); err != nil {
					d.log.Warn("watchdog notification", "error", err)
				}
			}
		}
	}()
	d.log.Info("watchdog notifications on", "interval", interval)
	return func() { close(done); wg.Wait() }
}
