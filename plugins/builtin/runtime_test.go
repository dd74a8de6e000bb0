package builtin

import "testing"

func TestRuncVersionAndFixes(t *testing.T) {
	for out, want := range map[string]string{
		"runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1\nspec: 1.0.2-dev\n": "1.1.5",
		"runc version 1.3.3\ncommit: v1.3.3-0-g\n":                               "1.3.3",
		"runc version 1.4.0-rc.3\n":                                              "1.4.0-rc.3",
		"crun version 1.8\n":                                                     "",
	} {
		if got := RuncVersion(out); got != want {
			t.Errorf("RuncVersion(%q) = %q, want %q", out, got, want)
		}
	}
	for v, fixed := range map[string]bool{
		"1.1.5": false, "1.1.15": false, "1.2.7": false, "1.2.8": true, "1.3.2": false, "1.3.3": true,
		"1.4.0-rc.2": false, "1.4.0-rc.3": true, "1.4.0": true, "1.5.2": true, "2.0.0": true, "garbage": false,
	} {
		if got := RuncFixed(v); got != fixed {
			t.Errorf("RuncFixed(%q) = %v, want %v", v, got, fixed)
		}
	}
}
