package nodeagent

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestFlushPaceLoneChangeAtOnce: a change after a quiet period waits only
// the packing delay, however long the window.
func TestFlushPaceLoneChangeAtOnce(t *testing.T) {
	p := flushPace{window: time.Second}
	t0 := time.Unix(1000, 0)
	if w := p.wait(t0); w != flushPack {
		t.Fatalf("first change waits %v, want %v", w, flushPack)
	}
	p.flushed(t0.Add(flushPack))
	later := t0.Add(5 * time.Second)
	if w := p.wait(later); w != flushPack {
		t.Fatalf("change after quiet waits %v, want %v", w, flushPack)
	}
}

// TestFlushPaceTrailingEdge: a change right after a flush waits for the
// end of the window that flush opened.
func TestFlushPaceTrailingEdge(t *testing.T) {
	p := flushPace{window: 20 * time.Millisecond}
	t0 := time.Unix(1000, 0)
	p.flushed(t0)
	if w := p.wait(t0.Add(5 * time.Millisecond)); w != 15*time.Millisecond {
		t.Fatalf("change 5ms after a flush waits %v, want 15ms", w)
	}
	if w := p.wait(t0.Add(19 * time.Millisecond)); w != flushPack {
		t.Fatalf("change 19ms after a flush waits %v, want the %v pack", w, flushPack)
	}
}

// TestFlushPaceNegativeWindowAtOnce: a negative window (--flush-window 0)
// never waits.
func TestFlushPaceNegativeWindowAtOnce(t *testing.T) {
	p := flushPace{window: -1}
	p.flushed(time.Unix(1000, 0))
	if w := p.wait(time.Unix(1000, 0)); w != 0 {
		t.Fatalf("wait = %v, want 0", w)
	}
}

// TestFlushPaceStorm drives the pace like the main loop does (a flush
// whenever something is queued and its wait is over) with changes arriving
// at random times, and checks at most one flush per window, every change
// flushed within window + pack, and a change after quiet within the pack.
func TestFlushPaceStorm(t *testing.T) {
	const window = 20 * time.Millisecond
	p := flushPace{window: window}
	rng := rand.New(rand.NewPCG(3, 4))
	now := time.Unix(1000, 0)
	var flushes []time.Time
	var queuedAt time.Time // oldest queued change (zero: none)
	dueAt := time.Time{}
	for range 20_000 {
		// Next event: a change arrives, or the pending flush is due.
		gap := time.Duration(rng.IntN(int(3 * time.Millisecond)))
		if rng.IntN(50) == 0 {
			gap = 100 * time.Millisecond // a quiet period
		}
		arrive := now.Add(gap)
		if !dueAt.IsZero() && !dueAt.After(arrive) {
			now = dueAt
			flushes = append(flushes, now)
			if d := now.Sub(queuedAt); d > window+flushPack {
				t.Fatalf("a change waited %v, want <= %v", d, window+flushPack)
			}
			p.flushed(now)
			queuedAt, dueAt = time.Time{}, time.Time{}
			continue
		}
		quiet := len(flushes) == 0 || arrive.Sub(flushes[len(flushes)-1]) >= window
		now = arrive
		if queuedAt.IsZero() {
			queuedAt = now
			dueAt = now.Add(p.wait(now))
			if quiet && dueAt.Sub(now) != flushPack {
				t.Fatalf("change after quiet waits %v, want %v", dueAt.Sub(now), flushPack)
			}
		}
	}
	if len(flushes) < 100 {
		t.Fatalf("only %d flushes", len(flushes))
	}
	for i := 1; i < len(flushes); i++ {
		if d := flushes[i].Sub(flushes[i-1]); d < window {
			t.Fatalf("flushes %v apart, want >= %v (at most one per window)", d, window)
		}
	}
}
