package delta

import (
	"context"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/meshrelay/meshrelay/relay/xds/reconnect"
)

// wildcard is the explicit wildcard subscription of delta xDS.
const wildcard = "*"

// stream is one delta ADS stream and what only holds on it: which types were
// accepted and completeness. The Client's caches carry over to the next
// stream.
type stream struct {
	// out holds the requests not sent yet, latest per type URL; the
	// stream's sender goroutine sends them (reconnect.Send). A
	// subscription is never replaced: Istiod answers it before the client
	// has anything to ACK.
	out  *reconnect.Requests[*discoveryv3.DeltaDiscoveryRequest]
	node *corev3.Node

	accepted map[string]bool // a response of the type was accepted
	healthy  bool            // a response was accepted

	// Completeness: see Update.Complete. syncTimer fires SyncTimeout after
	// the stream opened, for types known from an earlier stream that
	// Istiod has nothing new for.
	opened    time.Time
	complete  bool
	syncTimer *time.Timer
}

// subscribe queues the first request of typ on the stream: the node, the
// wildcard, and the versions of every resource held.
func (s *stream) subscribe(typ *resourceType, versions map[string]string) {
	s.out.Put(typ.url, &discoveryv3.DeltaDiscoveryRequest{
		Node:                    s.node,
		TypeUrl:                 typ.url,
		ResourceNamesSubscribe:  []string{wildcard},
		InitialResourceVersions: versions,
	})
}

// reply queues the ACK (detail nil) or NACK of the response of typ with
// nonce. It replaces a reply to an older nonce not sent yet: Istiod ignores
// replies to nonces older than the last it sent (see reconnect.Requests).
func (s *stream) reply(typ *resourceType, nonce string, detail *statuspb.Status) {
	s.out.Put(typ.url, &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ.url, ResponseNonce: nonce, ErrorDetail: detail})
}

// runStream opens one stream, subscribes and handles responses until the
// stream fails or ctx is done. It reports whether the stream was healthy
// (accepted a response) and the error that ended it.
func (c *Client) runStream(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient) (healthy bool, err error) {
	var s *stream
	err = reconnect.Serve(ctx, c.stats, c.health, c.opts.SyncTimeout, ads.DeltaAggregatedResources,
		func(out *reconnect.Requests[*discoveryv3.DeltaDiscoveryRequest], sync *time.Timer) {
			s = &stream{out: out, node: c.node, accepted: map[string]bool{}, opened: time.Now(), syncTimer: sync}
			held := 0
			for _, t := range resourceTypes {
				versions := c.caches[t.url].versions()
				held += len(versions)
				s.subscribe(t, versions)
			}
			c.log.Info("delta xds stream open", "address", c.opts.Address, "node", c.node.GetId(), "initial_resources", held)
		},
		func(ctx context.Context, resp *discoveryv3.DeltaDiscoveryResponse, at time.Time) {
			c.handleResponse(ctx, s, resp, at)
		},
		func(ctx context.Context, now time.Time) { c.handleSyncTimeout(ctx, s, now) },
		nil, nil)
	return s != nil && s.healthy, err
}
