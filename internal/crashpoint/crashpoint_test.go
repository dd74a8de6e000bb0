package crashpoint

import "testing"

// A normal build must never crash, whatever the environment says.
func TestHitIsInertWithoutTheTag(t *testing.T) {
	if Enabled {
		t.Skip("built with hullcrash")
	}
	t.Setenv(EnvVar, TaskRecorded)
	Hit(TaskRecorded)
}
