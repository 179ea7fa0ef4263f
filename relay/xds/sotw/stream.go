package sotw

import (
	"context"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/meshrelay/meshrelay/relay/xds/reconnect"
)

// stream is one ADS stream and what only holds on it: Istiod's versions and
// nonces, the names received, and completeness. A new stream starts from
// nothing of this (versions are never compared across streams), while the
// Client's caches and subscriptions carry over.
type stream struct {
	// out holds the requests not sent yet, latest per type URL; the
	// stream's sender goroutine sends them (reconnect.Send).
	out  *reconnect.Requests[*discoveryv3.DiscoveryRequest]
	node *corev3.Node

	version  map[string]string  // last accepted version_info, by type URL
	nonce    map[string]string  // nonce of the latest response, by type URL
	accepted map[string]bool    // a response of the type was accepted
	received map[string]nameSet // EDS/RDS names received on this stream

	healthy bool // a response was accepted

	// Completeness: see Options.SyncTimeout. syncTimer fires SyncTimeout
	// after lastSubChange so that a name Istiod never answers cannot hold
	// completeness back.
	complete      bool
	lastSubChange time.Time
	syncTimer     *time.Timer
}

func newStream(node *corev3.Node, now time.Time, syncTimer *time.Timer) *stream {
	s := &stream{
		node:          node,
		version:       map[string]string{},
		nonce:         map[string]string{},
		accepted:      map[string]bool{},
		received:      map[string]nameSet{},
		lastSubChange: now,
		syncTimer:     syncTimer,
	}
	for _, t := range resourceTypes {
		s.received[t.url] = nameSet{}
	}
	return s
}

// send queues a request of type typ for names, carrying the stream's last
// accepted version and latest nonce of that type, and detail when it is a
// NACK. It never blocks: the request replaces one of the same type not sent
// yet, which it supersedes (see reconnect.Requests). A request of a named
// type with no names is never sent: Istiod would read it as unsubscribing;
// send then does nothing.
func (s *stream) send(typ *resourceType, names []string, detail *statuspb.Status) {
	if !typ.fullState && len(names) == 0 {
		return
	}
	s.out.Put(typ.url, &discoveryv3.DiscoveryRequest{
		VersionInfo:   s.version[typ.url],
		Node:          s.node,
		ResourceNames: names,
		TypeUrl:       typ.url,
		ResponseNonce: s.nonce[typ.url],
		ErrorDetail:   detail,
	})
}

// subscriptionChanged restarts the sync timeout.
func (s *stream) subscriptionChanged(now time.Time, syncTimeout time.Duration) {
	s.lastSubChange = now
	if !s.complete {
		s.syncTimer.Reset(syncTimeout)
	}
}

// runStream opens one stream, subscribes and handles responses until the
// stream fails or ctx is done. It reports whether the stream was healthy
// (accepted a response) and the error that ended it.
func (c *Client) runStream(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient) (healthy bool, err error) {
	var s *stream
	err = reconnect.Serve(ctx, c.stats, c.health, c.opts.SyncTimeout, ads.StreamAggregatedResources,
		func(out *reconnect.Requests[*discoveryv3.DiscoveryRequest], sync *time.Timer) {
			s = newStream(c.node, time.Now(), sync)
			s.out = out
			c.eds.reset(c.subs[endpointType.url], s.lastSubChange)
			// Wildcard CDS and LDS, then the current EDS and RDS names, so
			// that after a reconnect the new stream gets everything. On the
			// first stream these are empty and go out after the first
			// CDS/LDS response.
			for _, t := range resourceTypes {
				s.send(t, c.names(t), nil)
			}
			c.log.Info("xds stream open", "address", c.opts.Address, "node", c.node.GetId(),
				"eds_names", c.subs[endpointType.url].len(), "rds_names", c.subs[routeType.url].len())
		},
		func(ctx context.Context, resp *discoveryv3.DiscoveryResponse, at time.Time) {
			c.handleResponse(ctx, s, resp, at)
		},
		func(ctx context.Context, now time.Time) { c.handleSyncTimeout(ctx, s, now) },
		c.resub, func(ctx context.Context, now time.Time) { c.resubscribe(ctx, s, now) })
	return s != nil && s.healthy, err
}
