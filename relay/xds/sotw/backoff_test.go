package sotw

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := newBackoff(BackoffOptions{Initial: 100 * time.Millisecond, Max: time.Second})
	ceiling := 100 * time.Millisecond
	for i := range 10 {
		d := b.next()
		if d < ceiling/2 || d > ceiling {
			t.Errorf("attempt %d: delay %v outside [%v, %v]", i, d, ceiling/2, ceiling)
		}
		ceiling = min(2*ceiling, time.Second)
	}
	b.reset()
	if d := b.next(); d > 100*time.Millisecond {
		t.Errorf("delay after reset = %v, want ≤ 100ms", d)
	}
}

func TestBackoffDefaults(t *testing.T) {
	o := BackoffOptions{}.withDefaults()
	if o.Initial != DefaultBackoffInitial || o.Max != DefaultBackoffMax {
		t.Errorf("defaults = %+v", o)
	}
	if o := (BackoffOptions{Initial: time.Minute}).withDefaults(); o.Max != time.Minute {
		t.Errorf("Max below Initial not raised: %+v", o)
	}
}

func TestBackoffJitter(t *testing.T) {
	// 50 draws from [50ms, 100ms] are not all equal unless jitter is gone.
	seen := map[time.Duration]bool{}
	for range 50 {
		b := newBackoff(BackoffOptions{Initial: 100 * time.Millisecond, Max: time.Second})
		seen[b.next()] = true
	}
	if len(seen) < 2 {
		t.Errorf("50 first delays took %d distinct values: no jitter", len(seen))
	}
}
