//go:build !hullcrash

package crashpoint

// Enabled reports whether this binary honours HULL_CRASHPOINT.
const Enabled = false

func hit(string) {}
