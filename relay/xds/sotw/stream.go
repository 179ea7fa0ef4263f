package sotw

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

// stream is one ADS stream and what only holds on it: Istiod's versions and
// nonces, the names received, and completeness. A new stream starts from
// nothing of this (versions are never compared across streams), while the
// Client's caches and subscriptions carry over.
type stream struct {
	ads  discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
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

func newStream(ads discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, node *corev3.Node, now time.Time, syncTimeout time.Duration) *stream {
	s := &stream{
		ads:           ads,
		node:          node,
		version:       map[string]string{},
		nonce:         map[string]string{},
		accepted:      map[string]bool{},
		received:      map[string]nameSet{},
		lastSubChange: now,
		syncTimer:     time.NewTimer(syncTimeout),
	}
	for _, t := range resourceTypes {
		s.received[t.url] = nameSet{}
	}
	return s
}

// send sends a request of type typ for names, carrying the stream's last
// accepted version and latest nonce of that type, and detail when it is a
// NACK. A request of a named type with no names is never sent: Istiod would
// read it as unsubscribing; send then does nothing.
func (s *stream) send(typ *resourceType, names []string, detail *statuspb.Status) error {
	if !typ.fullState && len(names) == 0 {
		return nil
	}
	req := &discoveryv3.DiscoveryRequest{
		VersionInfo:   s.version[typ.url],
		Node:          s.node,
		ResourceNames: names,
		TypeUrl:       typ.url,
		ResponseNonce: s.nonce[typ.url],
		ErrorDetail:   detail,
	}
	if err := s.ads.Send(req); err != nil {
		return fmt.Errorf("send %s request: %w", typ.short, err)
	}
	return nil
}

// subscriptionChanged restarts the sync timeout.
func (s *stream) subscriptionChanged(now time.Time, syncTimeout time.Duration) {
	s.lastSubChange = now
	if !s.complete {
		s.syncTimer.Reset(syncTimeout)
	}
}

// response is one response and when it arrived.
type response struct {
	resp *discoveryv3.DiscoveryResponse
	at   time.Time
}

// runStream opens one stream, subscribes and handles responses until the
// stream fails or ctx is done. It reports whether the stream was healthy
// (accepted a response) and the error that ended it.
func (c *Client) runStream(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient) (healthy bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	grpcStream, err := ads.StreamAggregatedResources(sctx)
	if err != nil {
		return false, fmt.Errorf("open stream: %w", err)
	}
	c.stats.streamsOpened.Add(1)
	s := newStream(grpcStream, c.node, time.Now(), c.opts.SyncTimeout)
	c.eds.reset(c.subs[endpointType.url], s.lastSubChange)
	defer s.syncTimer.Stop()

	// Wildcard CDS and LDS, then the current EDS and RDS names at once, so
	// that after a reconnect the new stream gets everything. On the first
	// stream these are empty and go out after the first CDS/LDS response.
	for _, t := range resourceTypes {
		if err := s.send(t, c.names(t), nil); err != nil {
			return false, err
		}
	}
	c.stats.complete.Store(false)
	c.stats.connected.Store(true)
	defer func() {
		c.stats.connected.Store(false)
		c.stats.complete.Store(false)
	}()
	c.log.Info("xds stream open", "address", c.opts.Address, "node", c.node.GetId(),
		"eds_names", c.subs[endpointType.url].len(), "rds_names", c.subs[routeType.url].len())

	// The receiving goroutine hands responses over an unbuffered channel:
	// order is kept and memory stays bounded by gRPC flow control. It ends
	// when the stream fails (reported on recvErr) or sctx is cancelled; the
	// deferred wait makes sure it is gone before the next stream.
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
		case <-c.resub:
			if err := c.resubscribe(ctx, s, time.Now()); err != nil {
				return s.healthy, err
			}
		}
	}
}

// receive reads responses from st into out until the stream fails, and
// returns why it ended.
func receive(ctx context.Context, st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, out chan<- response) error {
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
