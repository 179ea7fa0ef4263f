package delta

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/meshrelay/meshrelay/relay/xds/reconnect"
)

// Client keeps one delta ADS stream to Istiod open and reports changes to its
// Handler. The resource state (caches, and which types were ever accepted)
// belongs to the goroutine running Run and survives reconnects; Connected
// and Stats may be called from any goroutine.
type Client struct {
	opts    Options
	node    *corev3.Node
	handler Handler
	log     *slog.Logger

	caches map[string]*cache // by type URL
	// known holds the types accepted on some stream: their cache is a state
	// Istiod confirmed, which a later stream only amends.
	known map[string]bool

	up                 *reconnect.Upstream
	stats              *reconnect.Metrics
	health             *reconnect.Health
	reconnect.Readings // Reconnect, Upstream, NackLoop
}

// New checks opts and returns a Client that reports to h. It does not
// connect; Run does.
func New(opts Options, h Handler) (*Client, error) {
	if h == nil {
		return nil, errors.New("delta: nil Handler")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("delta: %w", err)
	}
	c := &Client{
		opts:    opts,
		node:    opts.Node,
		handler: h,
		log:     opts.Logger,
		caches:  map[string]*cache{},
		known:   map[string]bool{},
	}
	urls := make([]string, 0, len(resourceTypes))
	for _, t := range resourceTypes {
		c.caches[t.url] = newCache(t)
		urls = append(urls, t.url)
	}
	c.stats = reconnect.NewMetrics(urls)
	c.health = reconnect.NewHealth(time.Now(), urls)
	c.Readings = c.health.Readings()
	c.up = &reconnect.Upstream{Name: "delta", Address: opts.Address, MaxRecvMsgSize: opts.MaxRecvMsgSize,
		Backoff: opts.Backoff, DialOptions: opts.DialOptions}
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
// the subscriptions were sent. For /readyz and metrics.
func (c *Client) Connected() bool { return c.stats.Connected.Load() }

// Stats returns a snapshot of the client's metrics.
func (c *Client) Stats() Stats { return c.stats.Snapshot() }

// publishSizes copies the per-type sizes into the metrics.
func (c *Client) publishSizes() {
	resources := make(map[string]int, len(c.caches))
	for url, ca := range c.caches {
		resources[url] = ca.len()
	}
	c.stats.SetSizes(resources, nil)
}
