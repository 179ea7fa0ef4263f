package sotw

import (
	"context"
	"fmt"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
)

// handleResponse validates one response, ACKs or NACKs it, applies it to the
// state, updates the dependent subscription, and gives the resulting Updates
// to the handler.
func (c *Client) handleResponse(ctx context.Context, s *stream, resp *discoveryv3.DiscoveryResponse, at time.Time) {
	var size int
	for _, a := range resp.GetResources() {
		size += len(a.GetValue())
	}
	c.stats.Received(size)

	typ := typeByURL(resp.GetTypeUrl())
	if typ == nil {
		c.log.Warn("xds response of a type never requested; ignored", "type", resp.GetTypeUrl(), "nonce", resp.GetNonce())
		return
	}
	s.nonce[typ.url] = resp.GetNonce()
	ca := c.caches[typ.url]

	entries, err := ca.decode(resp)
	if err != nil {
		c.stats.NACKs.Inc()
		c.health.Nacked(typ.url, err, c.log)
		c.stats.SetError(fmt.Errorf("NACK %s version %q: %w", typ.short, resp.GetVersionInfo(), err), at)
		c.log.Warn("xds NACK", "type", typ.short, "version", resp.GetVersionInfo(), "nonce", resp.GetNonce(),
			"kept_version", s.version[typ.url], "reason", err)
		s.send(typ, c.names(typ), &statuspb.Status{Code: int32(codes.InvalidArgument), Message: err.Error()})
		return
	}

	// Accepted: apply, then ACK with the full current names.
	wasComplete := s.complete
	u := Update{TypeURL: typ.url, ReceivedAt: at}
	if typ.fullState {
		u.Upserted, u.Removed = ca.replaceAll(entries)
	} else {
		sub := c.subs[typ.url]
		u.Upserted = ca.merge(entries, sub)
		var got []string
		for _, e := range entries {
			if sub.has(e.name) {
				s.received[typ.url].add(e.name)
				got = append(got, e.name)
			}
		}
		if typ == endpointType {
			c.eds.receive(got)
		}
	}
	s.version[typ.url] = resp.GetVersionInfo()
	s.accepted[typ.url] = true
	s.healthy = true
	c.stats.ACKs.Inc()
	c.health.Acked(typ.url)
	s.send(typ, c.names(typ), nil)
	var updates []Update
	if !u.empty() {
		updates = append(updates, u)
	}

	// Clusters and listeners define what EDS and RDS names to subscribe to.
	if typ.dependent != "" {
		if u := c.updateSubscription(s, typ, at); u != nil {
			updates = append(updates, *u)
		}
	}
	c.publishSizes()

	if c.checkComplete(s, time.Now()) && len(updates) == 0 {
		updates = append(updates, Update{TypeURL: typ.url, ReceivedAt: at})
	}
	c.emit(ctx, s, updates, wasComplete)
}

// updateSubscription makes the subscription of typ's dependent type what
// typ's resources refer to (through Options.EDSFilter for EDS), sends it
// when it changed, and returns the Update removing the resources whose
// names left it, if any.
func (c *Client) updateSubscription(s *stream, typ *resourceType, at time.Time) *Update {
	dep := typeByURL(typ.dependent)
	sub := c.subs[dep.url]
	refs := c.caches[typ.url].references()
	if typ == clusterType && c.opts.EDSFilter != nil {
		filtered := c.caches[typ.url].referencesOf(func(e *entry) bool {
			cl, ok := e.msg.(*clusterv3.Cluster)
			return !ok || c.opts.EDSFilter(e.name, cl)
		})
		if len(filtered) == 0 && len(refs) > 0 {
			// An empty EDS request is never sent (it would read as a
			// wildcard), so Istiod would not learn of the change and
			// would not send the names again when they come back: keep
			// the subscription as it is.
			return nil
		}
		refs = filtered
	}
	removed, changed := sub.replace(refs)
	if !changed {
		return nil
	}
	s.subscriptionChanged(at, c.opts.SyncTimeout)
	if dep == endpointType {
		c.eds.subscribe(sub, at)
	}
	c.log.Info("xds subscription", "type", dep.short, "names", sub.len(), "unsubscribed", len(removed))
	var u *Update
	// Partial types lose a resource only here, when its name leaves the
	// subscription.
	if dropped := c.caches[dep.url].drop(removed); len(dropped) > 0 {
		u = &Update{TypeURL: dep.url, Removed: dropped, ReceivedAt: at}
	}
	s.send(dep, sub.sorted(), nil)
	return u
}

// resubscribe applies a changed Options.EDSFilter.
func (c *Client) resubscribe(ctx context.Context, s *stream, at time.Time) {
	if !s.accepted[clusterType.url] {
		return // the first CDS response subscribes
	}
	wasComplete := s.complete
	u := c.updateSubscription(s, clusterType, at)
	c.publishSizes()
	if u != nil {
		c.emit(ctx, s, []Update{*u}, wasComplete)
	}
}

// handleSyncTimeout reports completeness reached because SyncTimeout passed
// since the latest subscription change.
func (c *Client) handleSyncTimeout(ctx context.Context, s *stream, now time.Time) {
	wasComplete := s.complete
	if c.checkComplete(s, now) {
		c.emit(ctx, s, []Update{{ReceivedAt: now}}, wasComplete)
	}
}

// checkComplete marks the stream complete when it newly is and reports
// whether it did. CDS and LDS must have been accepted on this stream (without
// them nothing says what exists); EDS and RDS names that never arrived are
// forgiven once SyncTimeout passed since the latest subscription change.
func (c *Client) checkComplete(s *stream, now time.Time) bool {
	if s.complete || !s.accepted[clusterType.url] || !s.accepted[listenerType.url] {
		return false
	}
	missing := 0
	for _, t := range []*resourceType{endpointType, routeType} {
		for name := range c.subs[t.url].names {
			if !s.received[t.url].has(name) {
				missing++
			}
		}
	}
	timedOut := now.Sub(s.lastSubChange) >= c.opts.SyncTimeout
	if missing > 0 && !timedOut {
		return false
	}
	s.complete = true
	s.syncTimer.Stop()
	c.stats.Complete.Store(true)
	c.log.Info("xds state complete", "clusters", c.caches[clusterType.url].len(), "listeners", c.caches[listenerType.url].len(),
		"assignments", c.caches[endpointType.url].len(), "routes", c.caches[routeType.url].len(), "never_received", missing)
	return true
}

// emit gives updates to the handler in order. When the stream just became
// complete, only the last update of the batch says so: the state is complete
// once all of them are applied.
func (c *Client) emit(ctx context.Context, s *stream, updates []Update, wasComplete bool) {
	for i, u := range updates {
		u.NewlyComplete = !wasComplete && s.complete && i == len(updates)-1
		u.Complete = wasComplete || u.NewlyComplete
		c.stats.Updates.Inc()
		c.handler.OnUpdate(ctx, u)
	}
}
