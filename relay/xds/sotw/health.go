package sotw

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// NackLoopAfter is the number of consecutive NACKs of one type after which
// the client counts as NACKing every push of it: nothing of that type
// changes any more until Istiod sends a valid state.
const NackLoopAfter = 2

// health is what the relay's readiness reads: since when no stream is
// open, and per type the NACKs since the type's last ACK.
type health struct {
	mu        sync.Mutex
	connected bool
	downSince time.Time
	nacks     map[string]nackRun // by type URL; absent after an ACK
	gauge     *prometheus.GaugeVec
	// cancel ends the current stream (Reconnect); nil between streams.
	cancel context.CancelCauseFunc
}

// errReconnect ends a stream on Reconnect.
var errReconnect = errors.New("reconnect asked for")

func (h *health) setStreamCancel(cancel context.CancelCauseFunc) {
	h.mu.Lock()
	h.cancel = cancel
	h.mu.Unlock()
}

// Reconnect ends the current stream, if any; Run opens a fresh one at once
// (a stream that worked resets the backoff). The relay uses it to have a
// fresh stream confirm held deletions (docs/contract.md, "Held deletions").
func (c *Client) Reconnect() {
	c.health.mu.Lock()
	cancel := c.health.cancel
	c.health.mu.Unlock()
	if cancel != nil {
		cancel(errReconnect)
	}
}

// nackRun is the consecutive NACKs of one type.
type nackRun struct {
	count  int
	reason string
}

func newHealth(now time.Time) *health {
	return &health{
		downSince: now,
		nacks:     map[string]nackRun{},
		gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "meshrelay", Subsystem: "relay_xds", Name: "consecutive_nacks",
			Help: "Responses of a type NACKed since its last ACK; 2 or more means every push of the type is rejected.",
		}, []string{"type"}),
	}
}

func (h *health) setConnected(up bool, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.connected && !up {
		h.downSince = now
	}
	h.connected = up
}

func (h *health) acked(typeURL string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.nacks, typeURL)
	h.gauge.WithLabelValues(messageName(typeURL)).Set(0)
}

// nacked records a NACK and logs once when the type enters a NACK loop.
func (h *health) nacked(typeURL string, reason error, log *slog.Logger) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.nacks[typeURL]
	r.count++
	r.reason = reason.Error()
	h.nacks[typeURL] = r
	h.gauge.WithLabelValues(messageName(typeURL)).Set(float64(r.count))
	if r.count == NackLoopAfter {
		log.Error("xds NACK loop: every push of this type is rejected, its changes are frozen until Istiod sends a valid state",
			"type", messageName(typeURL), "nacks", r.count, "reason", r.reason)
	}
}

// Upstream reports whether a stream to Istiod is open, and when not, since
// when none has been (since New when none ever was).
func (c *Client) Upstream() (connected bool, downSince time.Time) {
	c.health.mu.Lock()
	defer c.health.mu.Unlock()
	return c.health.connected, c.health.downSince
}

// NackLoop reports a type whose last NackLoopAfter or more responses were
// all NACKed, with the count and the latest reason (which names the
// offending resource).
func (c *Client) NackLoop() (typeURL string, nacks int, reason string, ok bool) {
	c.health.mu.Lock()
	defer c.health.mu.Unlock()
	for _, t := range resourceTypes {
		if r := c.health.nacks[t.url]; r.count >= NackLoopAfter {
			return t.url, r.count, r.reason, true
		}
	}
	return "", 0, "", false
}
