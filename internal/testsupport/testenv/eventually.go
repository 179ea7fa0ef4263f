package testenv

import (
	"testing"
	"time"
)

// Timeout is how long Eventually and EventuallyTrue poll before failing the
// test. It is generous because CI shares two cores with other tests; it is
// a bound on a hang, never a timing claim.
const Timeout = 30 * time.Second

// pollInterval is how often Eventually looks again.
const pollInterval = 10 * time.Millisecond

// Eventually polls cond every 10 ms until it returns nil, and fails the test
// with cond's last error after Timeout.
func Eventually(tb testing.TB, what string, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(Timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: still failing after %v: %v", what, Timeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// EventuallyTrue polls cond every 10 ms until it is true, and fails the test
// after Timeout.
func EventuallyTrue(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", Timeout, what)
		}
		time.Sleep(pollInterval)
	}
}
