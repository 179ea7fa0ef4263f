package sotw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"

	"github.com/meshrelay/meshrelay/internal/backoff"
)

// Client keeps one ADS stream to Istiod open and reports changes to its
// Handler. The resource state (caches and subscriptions) belongs to the
// goroutine running Run and survives reconnects; Connected and Stats may be
// called from any goroutine.
type Client struct {
	opts    Options
	node    *corev3.Node
	handler Handler
	log     *slog.Logger

	caches map[string]*cache        // by type URL, all four types
	subs   map[string]*subscription // by type URL, EDS and RDS only

	running chan struct{} // holds a token while Run runs
	resub   chan struct{} // Resubscribe's request to the stream loop
	eds     edsView       // read by EDSState
	stats   *metrics
}

// New checks opts and returns a Client that reports to h. It does not
// connect; Run does.
func New(opts Options, h Handler) (*Client, error) {
	if h == nil {
		return nil, errors.New("sotw: nil Handler")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("sotw: %w", err)
	}
	c := &Client{
		opts:    opts,
		node:    opts.Node,
		handler: h,
		log:     opts.Logger,
		caches:  map[string]*cache{},
		subs:    map[string]*subscription{},
		running: make(chan struct{}, 1),
		resub:   make(chan struct{}, 1),
		stats:   newMetrics(),
	}
	for _, t := range resourceTypes {
		c.caches[t.url] = newCache(t)
		if !t.fullState {
			c.subs[t.url] = newSubscription()
		}
	}
	c.eds.reset(c.subs[endpointType.url], time.Now())
	return c, nil
}

// Run connects to Istiod and keeps a stream open until ctx is done,
// reopening it with jittered exponential backoff whenever it ends. It returns
// ctx.Err(), or an error at once if the gRPC client cannot be built from
// Options or Run is already running. Run may be called again after it
// returned; the state of the previous run is kept.
func (c *Client) Run(ctx context.Context) error {
	select {
	case c.running <- struct{}{}:
		defer func() { <-c.running }()
	default:
		return errors.New("sotw: Run is already running")
	}
	conn, err := grpc.NewClient(c.opts.Address, c.opts.dialOptions()...)
	if err != nil {
		return fmt.Errorf("sotw: grpc client for %s: %w", c.opts.Address, err)
	}
	defer conn.Close()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)

	bo := backoff.New(c.opts.Backoff)
	for {
		opened := time.Now()
		healthy, err := c.runStream(ctx, ads)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// A stream that worked (or lived long) ended normally, e.g.
		// Istiod's 30-minute GOAWAY: come back fast.
		if healthy || time.Since(opened) >= c.opts.Backoff.Max {
			bo.Reset()
		}
		delay := bo.Next()
		c.stats.setError(err, time.Now())
		level := slog.LevelWarn
		if healthy {
			level = slog.LevelInfo // e.g. Istiod's periodic GOAWAY
		}
		c.log.Log(ctx, level, "xds stream ended", "address", c.opts.Address, "error", err,
			"lived", time.Since(opened).Round(time.Millisecond), "retry_in", delay.Round(time.Millisecond))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Connected reports whether a stream to Istiod is open: it was created and
// the first requests were sent. For /readyz and metrics.
func (c *Client) Connected() bool { return c.stats.connected.Load() }

// Stats returns a snapshot of the client's counters.
func (c *Client) Stats() Stats { return c.stats.snapshot() }

// names returns the names to send in a request of type t: nil (wildcard) for
// full-state types, the subscribed set otherwise.
func (c *Client) names(t *resourceType) []string {
	if t.fullState {
		return nil
	}
	return c.subs[t.url].sorted()
}

// publishSizes copies the per-type sizes into the counters.
func (c *Client) publishSizes() {
	resources := make(map[string]int, len(c.caches))
	for url, ca := range c.caches {
		resources[url] = ca.len()
	}
	subscribed := make(map[string]int, len(c.subs))
	for url, s := range c.subs {
		subscribed[url] = s.len()
	}
	c.stats.setSizes(resources, subscribed)
}

// Resubscribe asks the stream to ask Options.EDSFilter again which EDS
// names to subscribe to. It does not block; the change is sent from the
// goroutine running Run.
func (c *Client) Resubscribe() {
	select {
	case c.resub <- struct{}{}:
	default:
	}
}
