package nodeagent

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/meshrelay/meshrelay/internal/backoff"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	"github.com/meshrelay/meshrelay/nodeagent/nodemodel"
)

// change is one service's change put into the table for the next write:
// its new frontends, or its removal.
type change struct {
	svc     keyspace.Service
	fes     []nodemodel.Frontend
	removed bool
}

// parking isolates failing services from the writer. It remembers the
// frontends last written for every service; when a change set fails, the
// services of that change set are put back at their last written state
// and tried again in halves, so that the writable ones are written and
// each failing one is parked: kept at its last written state and retried
// with backoff, while other services keep flowing. A removal always
// supersedes a parked change. Owned by the agent's main loop.
type parking struct {
	written map[keyspace.Service][]nodemodel.Frontend // last written frontends
	parked  map[keyspace.Service]*parked
}

// parked is a change the datapath refused.
type parked struct {
	change
	since time.Time // when it was first parked
	next  time.Time // when to try it again
	retry *backoff.Backoff
	err   error
}

func newParking() parking {
	return parking{written: map[keyspace.Service][]nodemodel.Frontend{}, parked: map[keyspace.Service]*parked{}}
}

// Parking backoff: 1 s doubling to 1 min, jittered.
const (
	parkRetryInitial = time.Second
	parkRetryMax     = time.Minute
)

// setChange puts c into the table.
func (a *Agent) setChange(c change) {
	if c.removed {
		a.w.table.Remove(c.svc)
		return
	}
	a.w.table.Set(c.svc, c.fes)
}

// rememberHeld records, for a service not written by this agent yet, what
// the datapath already holds for the frontends fes claims (entries of a
// previous run), as its last written state: a failing first change then
// reverts to them instead of removing them.
func (a *Agent) rememberHeld(svc keyspace.Service, fes []nodemodel.Frontend) {
	if _, ok := a.park.written[svc]; ok {
		return
	}
	st := a.w.table.Applied()
	var held []nodemodel.Frontend
	for _, fe := range fes {
		if _, ok := st.Frontends[fe.Key]; !ok {
			continue
		}
		weights := map[uint32]uint32{}
		for _, id := range st.SlotTable(fe.Key) {
			weights[id]++
		}
		h := nodemodel.Frontend{Key: fe.Key, Backends: []nodemodel.Backend{}}
		for id, w := range weights {
			if bv, ok := st.Backends[datapath.BackendKey{BackendId: id}]; ok {
				h.Backends = append(h.Backends, nodemodel.Backend{Addr: bv.AddrPort(), Weight: w})
			}
		}
		slices.SortFunc(h.Backends, func(x, y nodemodel.Backend) int { return x.Addr.Compare(y.Addr) })
		held = append(held, h)
	}
	if len(held) > 0 {
		a.park.written[svc] = held
	}
}

// revert puts svc back at its last written state in the table. A service
// never written has no entries of its own.
func (a *Agent) revert(svc keyspace.Service) {
	if fes, ok := a.park.written[svc]; ok {
		a.w.table.Set(svc, fes)
		return
	}
	a.w.table.Remove(svc)
}

// writeChanges writes the table's pending change set, which holds cs. When
// the datapath refuses it, the failing services of cs are isolated and
// parked; it returns an error only when ctx is done.
func (a *Agent) writeChanges(ctx context.Context, cs []change) error {
	err := a.w.write(ctx, false)
	if err == nil {
		a.settle(cs)
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for _, c := range cs {
		a.revert(c.svc)
	}
	return a.isolate(ctx, cs)
}

// isolate writes group on top of the last written states; when that
// fails it tries each half, down to single services, which it parks.
func (a *Agent) isolate(ctx context.Context, group []change) error {
	// First the last written states, without what a failed Apply left
	// half-written: its entries may fill a map.
	if err := a.w.write(ctx, true); err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	if len(group) == 0 {
		return nil
	}
	for _, c := range group {
		a.setChange(c)
	}
	err := a.w.write(ctx, false)
	if err == nil {
		a.settle(group)
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for _, c := range group {
		a.revert(c.svc)
	}
	if len(group) == 1 {
		a.parkChange(group[0], err)
		// Remove what the failed Apply left half-written.
		if err := a.w.write(ctx, true); err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		return nil
	}
	h := len(group) / 2
	if err := a.isolate(ctx, group[:h]); err != nil {
		return err
	}
	return a.isolate(ctx, group[h:])
}

// settle records that cs were written.
func (a *Agent) settle(cs []change) {
	for _, c := range cs {
		if c.removed {
			delete(a.park.written, c.svc)
		} else {
			a.park.written[c.svc] = c.fes
		}
		if p := a.park.parked[c.svc]; p != nil {
			delete(a.park.parked, c.svc)
			a.log.Info("parked service written or removed", "service", c.svc, "removal", c.removed,
				"parked_for", a.opts.Now().Sub(p.since).Round(time.Millisecond))
		}
	}
	a.publishParked()
}

// parkChange parks c after the datapath refused it.
func (a *Agent) parkChange(c change, err error) {
	now := a.opts.Now()
	p := a.park.parked[c.svc]
	if p == nil {
		p = &parked{since: now, retry: backoff.New(backoff.Options{Initial: parkRetryInitial, Max: parkRetryMax})}
		a.park.parked[c.svc] = p
		a.m.parks.Inc()
		a.log.Error("datapath refused a service's entries: parking it at its last written state, retrying with backoff; other services keep flowing",
			"service", c.svc, "frontends", len(c.fes), "removal", c.removed, "err", err)
	}
	p.change, p.err = c, err
	p.next = now.Add(p.retry.Next())
	a.publishParked()
}

// nextParkRetry returns how long until the next parked change is due.
func (a *Agent) nextParkRetry() (time.Duration, bool) {
	var next time.Time
	for _, p := range a.park.parked {
		if next.IsZero() || p.next.Before(next) {
			next = p.next
		}
	}
	if next.IsZero() {
		return 0, false
	}
	return max(next.Sub(a.opts.Now()), 0), true
}

// retryParked tries the parked changes that are due again.
func (a *Agent) retryParked(ctx context.Context) error {
	now := a.opts.Now()
	var due []change
	for _, p := range a.park.parked {
		if !now.Before(p.next) {
			due = append(due, p.change)
		}
	}
	slices.SortFunc(due, func(x, y change) int { return compareServices(x.svc, y.svc) })
	if len(due) == 0 {
		return nil
	}
	if err := a.isolate(ctx, due); err != nil {
		return err
	}
	a.publish()
	return nil
}

// publishParked stores the number of parked services for Stats and the
// health check.
func (a *Agent) publishParked() {
	a.m.parked.Set(float64(len(a.park.parked)))
	a.mu.Lock()
	a.parkedNames = a.parkedNames[:0]
	for svc := range a.park.parked {
		a.parkedNames = append(a.parkedNames, svc)
	}
	a.mu.Unlock()
}

// Healthy reports false, with the reason, when the apply loop made no
// progress for Options.StallTimeout while work is pending (queued changes
// or parked services): the kubelet restarts a truly stuck agent, and a
// restart writes nothing when nothing changed.
func (a *Agent) Healthy() (bool, string) {
	a.mu.Lock()
	queued, parkedN := a.queuedLocked(), len(a.parkedNames)
	w := a.w
	a.mu.Unlock()
	if w == nil || (queued == 0 && parkedN == 0) {
		return true, ""
	}
	stalled := a.opts.Now().Sub(time.Unix(0, w.lastProgress.Load()))
	if stalled < a.opts.StallTimeout {
		return true, ""
	}
	return false, fmt.Sprintf("no datapath write succeeded for %s with work pending (%d queued, %d parked services)",
		stalled.Round(time.Second), queued, parkedN)
}

// compareServices orders services by namespace, then name.
func compareServices(x, y keyspace.Service) int {
	return cmp.Or(cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Name, y.Name))
}
