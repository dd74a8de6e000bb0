package pidfd

import (
	"os/exec"
	"testing"
	"time"
)

func TestKillAndWait(t *testing.T) {
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if err := KillAndWait([]int{cmd.Process.Pid, 0x7ffffff0}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Error("sleep exited cleanly; want killed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sleep still runs")
	}
}
