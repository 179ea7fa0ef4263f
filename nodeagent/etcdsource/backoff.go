package etcdsource

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff spaces retries after etcd errors: 100 ms doubling to 5 s, with
// jitter, starting over when the previous failure is more than a minute old.
type backoff struct {
	delay time.Duration
	last  time.Time
}

const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// wait sleeps for the next delay. It returns false when ctx is done first.
func (b *backoff) wait(ctx context.Context) bool {
	now := time.Now()
	if b.delay == 0 || now.Sub(b.last) > time.Minute {
		b.delay = minBackoff
	} else {
		b.delay = min(2*b.delay, maxBackoff)
	}
	b.last = now
	d := b.delay/2 + rand.N(b.delay/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
