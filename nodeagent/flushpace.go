package nodeagent

import "time"

// flushPack is how long a change that arrives after quiet waits for the
// changes that come with it (the services of one relay transaction arrive
// as several watch responses within a millisecond or two).
const flushPack = 2 * time.Millisecond

// flushPace decides when queued changes are flushed: a change after quiet
// at once (after flushPack, the leading edge), the changes that follow it
// within the window together at the window's end (the trailing edge). So a
// lone change is not delayed by the window and a burst still flushes at
// most once per window, each service at most once. Used by the agent's
// main loop only.
type flushPace struct {
	window time.Duration // <= 0: flush at once
	last   time.Time     // end of the latest flush (zero: none yet)
}

// wait returns how long to wait at now before flushing what is queued.
func (p *flushPace) wait(now time.Time) time.Duration {
	if p.window <= 0 {
		return 0
	}
	pack := min(flushPack, p.window)
	if p.last.IsZero() {
		return pack
	}
	return max(pack, p.last.Add(p.window).Sub(now))
}

// flushed records a flush that ended at now.
func (p *flushPace) flushed(now time.Time) { p.last = now }
