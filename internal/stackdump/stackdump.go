// Package stackdump reads every goroutine's stack: for the goroutine dumps
// that hulld and its shims write on SIGUSR1, and for tests that look for
// the goroutines their package left running.
package stackdump

import "runtime"

// All returns the stacks of all goroutines as runtime.Stack prints them,
// cut at limit bytes: a dump that large would mean a leak, whose first
// megabytes tell.
func All(limit int) []byte {
	buf := make([]byte, min(64<<10, limit))
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) || len(buf) >= limit {
			return buf[:n]
		}
		buf = make([]byte, min(2*len(buf), limit))
	}
}
