package delta

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
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

// response is one response and when it arrived.
type response struct {
	resp *discoveryv3.DeltaDiscoveryResponse
	at   time.Time
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

	// As in sotw: an unbuffered hand-over keeps order and bounds memory by
	// gRPC flow control; the deferred wait ends the receiver first.
	responses := make(chan response)
	recvErr := make(chan error, 1)
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		recvErr <- receive(sctx, grpcStream, responses)
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
			if err := c.handleResponse(ctx, s, r.resp, r.at); err != nil {
				return s.healthy, err
			}
		case now := <-s.syncTimer.C:
			c.handleSyncTimeout(ctx, s, now)
		}
	}
}

// receive reads responses from st into out until the stream fails, and
// returns why it ended.
func receive(ctx context.Context, st discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, out chan<- response) error {
	for {
		resp, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return errors.New("stream closed by server")
		}
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		select {
		case out <- response{resp: resp, at: time.Now()}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
