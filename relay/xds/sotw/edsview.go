package sotw

import (
	"maps"
	"sync"
	"time"
)

// edsView is the EDS subscription state other goroutines may read
// (Client.EDSState), kept by the goroutine running Run.
type edsView struct {
	mu         sync.Mutex
	subscribed nameSet
	received   nameSet   // on the current stream
	since      time.Time // the latest subscription change or stream start
}

// reset starts a stream: nothing received yet.
func (v *edsView) reset(sub *subscription, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.subscribed, v.received, v.since = maps.Clone(sub.names), nameSet{}, now
}

// subscribe records a changed subscription.
func (v *edsView) subscribe(sub *subscription, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.subscribed, v.since = maps.Clone(sub.names), now
}

// receive records names received on the current stream.
func (v *edsView) receive(names []string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, n := range names {
		v.received.add(n)
	}
}

// EDSState tells about one EDS name: awaiting is true while it is
// subscribed, not yet received on the current stream, and the sync timeout
// since the latest subscription change (or the stream's start) has not
// passed; received is true once it arrived on the current stream. Safe from
// any goroutine.
func (c *Client) EDSState(name string) (awaiting, received bool) {
	v := &c.eds
	v.mu.Lock()
	defer v.mu.Unlock()
	received = v.received.has(name)
	awaiting = v.subscribed.has(name) && !received && time.Since(v.since) < c.opts.SyncTimeout
	return awaiting, received
}
