package sotw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/meshrelay/meshrelay/relay/xds/reconnect"
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

	up                 *reconnect.Upstream
	stats              *reconnect.Metrics
	health             *reconnect.Health
	reconnect.Readings               // Reconnect, Upstream, NackLoop
	resub              chan struct{} // Resubscribe's request to the stream loop
	eds                edsView       // read by EDSState
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
		resub:   make(chan struct{}, 1),
	}
	urls := make([]string, 0, len(resourceTypes))
	for _, t := range resourceTypes {
		c.caches[t.url] = newCache(t)
		if !t.fullState {
			c.subs[t.url] = newSubscription()
		}
		urls = append(urls, t.url)
	}
	c.stats = reconnect.NewMetrics(urls)
	c.health = reconnect.NewHealth(time.Now(), urls)
	c.Readings = c.health.Readings()
	c.up = &reconnect.Upstream{Name: "sotw", Address: opts.Address, MaxRecvMsgSize: opts.MaxRecvMsgSize,
		Backoff: opts.Backoff, DialOptions: opts.DialOptions}
	c.eds.reset(c.subs[endpointType.url], time.Now())
	return c, nil
}

// Run connects to Istiod and keeps a stream open until ctx is done,
// reopening it with jittered exponential backoff whenever it ends. It returns
// ctx.Err(), or an error at once if the gRPC client cannot be built from
// Options or Run is already running. Run may be called again after it
// returned; the state of the previous run is kept.
func (c *Client) Run(ctx context.Context) error {
	return c.up.Run(ctx, c.log, c.stats, c.runStream)
}

// Connected reports whether a stream to Istiod is open: it was created and
// the first requests were queued. For /readyz and metrics.
func (c *Client) Connected() bool { return c.stats.Connected.Load() }

// Stats returns a snapshot of the client's counters.
func (c *Client) Stats() Stats { return c.stats.Snapshot() }

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
	c.stats.SetSizes(resources, subscribed)
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
