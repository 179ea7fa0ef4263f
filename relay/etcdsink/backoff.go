package etcdsink

import (
	"context"
	"math/rand/v2"
	"time"
)

// retryDelay implements Backoff for one goroutine.
type retryDelay struct {
	cfg      Backoff
	failures int
}

// next returns how long to wait after one more consecutive failure.
func (r *retryDelay) next() time.Duration {
	d := r.cfg.Initial
	for i := 0; i < r.failures && d < r.cfg.Max; i++ {
		d *= 2
	}
	d = min(d, r.cfg.Max)
	r.failures++
	return d/2 + rand.N(d/2+1)
}

func (r *retryDelay) reset() { r.failures = 0 }

// wait sleeps for next(); it returns false when ctx ended first.
func (r *retryDelay) wait(ctx context.Context) bool {
	t := time.NewTimer(r.next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
