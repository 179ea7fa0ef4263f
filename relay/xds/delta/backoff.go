package delta

import "github.com/meshrelay/meshrelay/internal/backoff"

// BackoffOptions bound the delay before reopening a stream that ended:
// Initial after the first failure, doubling up to Max, jittered. Zero values
// mean backoff.DefaultInitial (100 ms) and backoff.DefaultMax (30 s).
type BackoffOptions = backoff.Options
