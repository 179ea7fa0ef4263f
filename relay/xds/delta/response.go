package delta

import (
	"context"
	"fmt"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
)

// handleResponse validates one response, ACKs or NACKs it by its nonce,
// applies it to the state and gives the resulting Update to the handler.
func (c *Client) handleResponse(ctx context.Context, s *stream, resp *discoveryv3.DeltaDiscoveryResponse, at time.Time) {
	var size int
	for _, r := range resp.GetResources() {
		size += len(r.GetResource().GetValue())
	}
	c.stats.Received(size)

	typ := typeByURL(resp.GetTypeUrl())
	if typ == nil {
		c.log.Warn("delta xds response of a type never requested; ignored", "type", resp.GetTypeUrl(), "nonce", resp.GetNonce())
		return
	}
	ca := c.caches[typ.url]
	entries, err := ca.decode(resp)
	if err != nil {
		c.stats.NACKs.Inc()
		c.health.Nacked(typ.url, err, c.log)
		c.stats.SetError(fmt.Errorf("NACK %s nonce %q: %w", typ.short, resp.GetNonce(), err), at)
		c.log.Warn("delta xds NACK", "type", typ.short, "nonce", resp.GetNonce(), "held", ca.len(), "reason", err)
		s.reply(typ, resp.GetNonce(), &statuspb.Status{Code: int32(codes.InvalidArgument), Message: err.Error()})
		return
	}

	wasComplete := s.complete
	u := Update{TypeURL: typ.url, ReceivedAt: at}
	u.Upserted, u.Removed = ca.apply(entries, resp.GetRemovedResources())
	s.accepted[typ.url] = true
	c.known[typ.url] = true
	s.healthy = true
	c.stats.ACKs.Inc()
	c.health.Acked(typ.url)
	s.reply(typ, resp.GetNonce(), nil)
	c.publishSizes()
	newly := c.checkComplete(s, time.Now())
	if len(u.Upserted) == 0 && len(u.Removed) == 0 && !newly {
		return
	}
	c.emit(ctx, s, u, wasComplete)
}

// handleSyncTimeout reports completeness reached because SyncTimeout passed
// since the stream opened.
func (c *Client) handleSyncTimeout(ctx context.Context, s *stream, now time.Time) {
	wasComplete := s.complete
	if c.checkComplete(s, now) {
		c.emit(ctx, s, Update{ReceivedAt: now}, wasComplete)
	}
}

// checkComplete marks the stream complete when it newly is and reports
// whether it did: every type was accepted on this stream, or SyncTimeout
// passed since it opened and every type not accepted on it was accepted on
// an earlier stream (Istiod sends nothing for a type without differences).
// A type never accepted is never forgiven: its state is unknown, not empty.
func (c *Client) checkComplete(s *stream, now time.Time) bool {
	if s.complete {
		return false
	}
	timedOut := now.Sub(s.opened) >= c.opts.SyncTimeout
	missing := 0
	for _, t := range resourceTypes {
		if s.accepted[t.url] {
			continue
		}
		if !c.known[t.url] || !timedOut {
			return false
		}
		missing++
	}
	s.complete = true
	s.syncTimer.Stop()
	c.stats.Complete.Store(true)
	c.log.Info("delta xds state complete", "addresses", c.caches[addressType.url].len(),
		"authorizations", c.caches[authorizationType.url].len(), "unanswered_types", missing)
	return true
}

// emit gives u to the handler, marked complete when the stream is.
func (c *Client) emit(ctx context.Context, s *stream, u Update, wasComplete bool) {
	u.NewlyComplete = !wasComplete && s.complete
	u.Complete = wasComplete || u.NewlyComplete
	c.stats.Updates.Inc()
	c.handler.OnUpdate(ctx, u)
}
