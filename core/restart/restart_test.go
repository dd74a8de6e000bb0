package restart

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParsePolicy(t *testing.T) {
	for in, want := range map[string]Policy{
		"":               {Name: Always},
		"always":         {Name: Always},
		"no":             {Name: No},
		"unless-stopped": {Name: UnlessStopped},
		"on-failure":     {Name: OnFailure},
		"on-failure:0":   {Name: OnFailure},
		"on-failure:3":   {Name: OnFailure, MaxRetries: 3},
	} {
		got, err := ParsePolicy(in)
		if err != nil || got != want {
			t.Errorf("ParsePolicy(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"sometimes", "Always", "always:2", "no:1", "unless-stopped:", "on-failure:", "on-failure:x", "on-failure:-1", "on-failure:+2", "on-failure:1:2", strings.Repeat("a", 100)} {
		_, err := ParsePolicy(in)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParsePolicy(%q): %v, want InvalidArgument", in, err)
		}
		if len(in) < 20 && (err == nil || !strings.Contains(err.Error(), in)) {
			t.Errorf("ParsePolicy(%q): %v does not name the value", in, err)
		}
	}
	if s := (Policy{Name: OnFailure, MaxRetries: 2}).String(); s != "on-failure:2" {
		t.Errorf("String %q", s)
	}
}

func TestDecide(t *testing.T) {
	gone := Task{}
	running := Task{Exists: true, Status: Running}
	failed := Task{Exists: true, Status: Stopped, ExitStatus: 3}
	succeeded := Task{Exists: true, Status: Stopped}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		task   Task
		want   Action
	}{
		{"no status label", map[string]string{PolicyLabel: Always}, gone, Leave},
		{"status other than running or stopped", map[string]string{StatusLabel: "paused"}, gone, Leave},
		{"running stays", map[string]string{StatusLabel: Running}, running, Leave},
		{"paused is left", map[string]string{StatusLabel: Running}, Task{Exists: true, Status: "paused"}, Leave},
		{"pausing is left", map[string]string{StatusLabel: Running}, Task{Exists: true, Status: "pausing"}, Leave},
		{"no policy is always, task gone", map[string]string{StatusLabel: Running}, gone, Start},
		{"always, succeeded", map[string]string{StatusLabel: Running, PolicyLabel: "always"}, succeeded, Start},
		{"created is started again", map[string]string{StatusLabel: Running}, Task{Exists: true, Status: "created"}, Start},
		{"no", map[string]string{StatusLabel: Running, PolicyLabel: "no"}, failed, Leave},
		{"on-failure, failed", map[string]string{StatusLabel: Running, PolicyLabel: "on-failure"}, failed, Start},
		{"on-failure, succeeded", map[string]string{StatusLabel: Running, PolicyLabel: "on-failure"}, succeeded, Leave},
		{"on-failure, gone", map[string]string{StatusLabel: Running, PolicyLabel: "on-failure"}, gone, Leave},
		{"on-failure:2, count 1", map[string]string{StatusLabel: Running, PolicyLabel: "on-failure:2", CountLabel: "1"}, failed, Start},
		{"on-failure:2, count 2", map[string]string{StatusLabel: Running, PolicyLabel: "on-failure:2", CountLabel: "2"}, failed, Leave},
		{"on-failure, count 100", map[string]string{StatusLabel: Running, PolicyLabel: "on-failure", CountLabel: "100"}, failed, Start},
		{"unless-stopped", map[string]string{StatusLabel: Running, PolicyLabel: "unless-stopped"}, failed, Start},
		{"unless-stopped, explicitly stopped", map[string]string{StatusLabel: Running, PolicyLabel: "unless-stopped", ExplicitlyStoppedLabel: "true"}, failed, Leave},
		{"unless-stopped, not explicitly stopped", map[string]string{StatusLabel: Running, PolicyLabel: "unless-stopped", ExplicitlyStoppedLabel: "false"}, gone, Start},
		{"stopped, running task", map[string]string{StatusLabel: Stopped}, running, Stop},
		{"stopped, stopped task", map[string]string{StatusLabel: Stopped}, failed, Leave},
		{"stopped, no task", map[string]string{StatusLabel: Stopped}, gone, Leave},
	} {
		got, err := Decide(tc.labels, tc.task)
		if err != nil || got != tc.want {
			t.Errorf("%s: %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	// Labels the monitor cannot read leave the container alone, with an
	// error naming the label.
	for _, labels := range []map[string]string{
		{StatusLabel: Running, PolicyLabel: "sometimes"},
		{StatusLabel: Running, PolicyLabel: "on-failure:2", CountLabel: "many"},
	} {
		got, err := Decide(labels, failed)
		if got != Leave || !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "containerd.io/restart.") {
			t.Errorf("%v: %v, %v; want leave and InvalidArgument naming the label", labels, got, err)
		}
	}
}

func TestCount(t *testing.T) {
	for in, want := range map[string]int{"": 0, "0": 0, "7": 7} {
		if n, err := Count(map[string]string{CountLabel: in}); n != want || err != nil {
			t.Errorf("Count(%q) = %d, %v", in, n, err)
		}
	}
	if n, err := Count(nil); n != 0 || err != nil {
		t.Errorf("no label: %d, %v", n, err)
	}
	for _, in := range []string{"-1", "x", "1.5"} {
		if _, err := Count(map[string]string{CountLabel: in}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Count(%q): %v", in, err)
		}
	}
}

func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{"", "always", "no", "unless-stopped", "on-failure", "on-failure:3", "on-failure:x", "always:1", "on-failure:-1", "on-failure:99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePolicy(s)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("%q: error %v is not InvalidArgument", s, err)
			}
			return
		}
		if p.MaxRetries < 0 {
			t.Fatalf("%q: negative retries %d", s, p.MaxRetries)
		}
		// What parses prints back to something that parses the same.
		again, err := ParsePolicy(p.String())
		if err != nil || again != p {
			t.Fatalf("%q: %+v prints as %q, which parses as %+v, %v", s, p, p.String(), again, err)
		}
	})
}

func FuzzDecide(f *testing.F) {
	f.Add("running", "on-failure:2", "1", "", true, "stopped", uint32(1))
	f.Add("running", "sometimes", "", "", false, "", uint32(0))
	f.Add("stopped", "", "", "true", true, "running", uint32(0))
	f.Fuzz(func(t *testing.T, status, policy, count, stopped string, exists bool, taskStatus string, exit uint32) {
		labels := map[string]string{StatusLabel: status, PolicyLabel: policy, CountLabel: count, ExplicitlyStoppedLabel: stopped}
		a, err := Decide(labels, Task{Exists: exists, Status: taskStatus, ExitStatus: exit})
		if err != nil && a != Leave {
			t.Fatalf("%v: %v with error %v", labels, a, err)
		}
		if a == Stop && status != Stopped {
			t.Fatalf("%v: stop when the status label is %q", labels, status)
		}
		if a == Start && (status != Running || (exists && taskStatus == Running)) {
			t.Fatalf("%v: start of a task that is %q/%v", labels, taskStatus, exists)
		}
	})
}
