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
	ads  discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
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

// subscribe sends the first request of typ on the stream: the node, the
// wildcard, and the versions of every resource held.
func (s *stream) subscribe(typ *resourceType, versions map[string]string) error {
	req := &discoveryv3.DeltaDiscoveryRequest{
		Node:                    s.node,
		TypeUrl:                 typ.url,
		ResourceNamesSubscribe:  []string{wildcard},
		InitialResourceVersions: versions,
	}
	if err := s.ads.Send(req); err != nil {
		return fmt.Errorf("send %s subscription: %w", typ.short, err)
	}
	return nil
}

// reply ACKs (detail nil) or NACKs the response of typ with nonce.
func (s *stream) reply(typ *resourceType, nonce string, detail *statuspb.Status) error {
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ.url, ResponseNonce: nonce, ErrorDetail: detail}
	if err := s.ads.Send(req); err != nil {
		return fmt.Errorf("send %s reply: %w", typ.short, err)
	}
	return nil
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
	s := &stream{ads: grpcStream, node: c.node, accepted: map[string]bool{}, opened: now,
		syncTimer: time.NewTimer(c.opts.SyncTimeout)}
	defer s.syncTimer.Stop()

	held := 0
	for _, t := range resourceTypes {
		versions := c.caches[t.url].versions()
		held += len(versions)
		if err := s.subscribe(t, versions); err != nil {
			return false, err
		}
	}
	c.stats.complete.Store(false)
	c.stats.connected.Store(true)
	defer func() {
		c.stats.connected.Store(false)
		c.stats.complete.Store(false)
	}()
	c.log.Info("delta xds stream open", "address", c.opts.Address, "node", c.node.GetId(), "initial_resources", held)

	// The deferred wait makes sure the receiver is gone before the next
	// stream.
	responses := make(chan reconnect.Received[*discoveryv3.DeltaDiscoveryResponse])
	recvErr := make(chan error, 1)
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		recvErr <- reconnect.Receive(sctx, grpcStream.Recv, responses)
	}()
	defer func() {
		cancel()
		<-recvDone
	}()

	for {
		select {
		case <-ctx.Done():
			return s.healthy, ctx.Err()
		case err := <-recvErr:
			return s.healthy, err
		case r := <-responses:
			if err := c.handleResponse(ctx, s, r.Msg, r.At); err != nil {
				return s.healthy, err
			}
		case now := <-s.syncTimer.C:
			c.handleSyncTimeout(ctx, s, now)
		}
	}
}
