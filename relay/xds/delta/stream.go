package delta

import (
	"context"
	"fmt"
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
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	grpcStream, err := ads.DeltaAggregatedResources(sctx)
	if err != nil {
		return false, fmt.Errorf("open stream: %w", err)
	}
	c.stats.streamsOpened.Add(1)
	now := time.Now()
	s := &stream{node: c.node,
		accepted: map[string]bool{}, opened: now, syncTimer: time.NewTimer(c.opts.SyncTimeout)}
	defer s.syncTimer.Stop()

	// One goroutine receives, one sends, and this one handles: receiving
	// never waits on a send (reconnect.Send). Stopping the pump before the
	// next stream makes sure both are gone.
	pump := reconnect.StartPump[*discoveryv3.DeltaDiscoveryRequest](sctx, grpcStream.Recv, grpcStream.Send)
	defer func() {
		cancel()
		pump.Stop()
	}()
	s.out = pump.Requests

	held := 0
	for _, t := range resourceTypes {
		versions := c.caches[t.url].versions()
		held += len(versions)
		s.subscribe(t, versions)
	}
	c.stats.complete.Store(false)
	c.stats.connected.Store(true)
	defer func() {
		c.stats.connected.Store(false)
		c.stats.complete.Store(false)
	}()
	c.log.Info("delta xds stream open", "address", c.opts.Address, "node", c.node.GetId(), "initial_resources", held)

	for {
		select {
		case <-ctx.Done():
			return s.healthy, ctx.Err()
		case err := <-pump.Ended:
			return s.healthy, err
		case r := <-pump.Responses:
			c.handleResponse(ctx, s, r.Msg, r.At)
		case now := <-s.syncTimer.C:
			c.handleSyncTimeout(ctx, s, now)
		}
	}
}
