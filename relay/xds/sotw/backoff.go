package sotw

import "github.com/meshrelay/meshrelay/internal/backoff"

// Default backoff between two streams.
const (
	DefaultBackoffInitial = backoff.DefaultInitial // 100 ms
	DefaultBackoffMax     = backoff.DefaultMax     // 30 s
)

// BackoffOptions bound the delay before reopening a stream that ended:
// Initial after the first failure, doubling up to Max, jittered.
type BackoffOptions = backoff.Options
