package reconnect

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

// Health is what the relay's readiness reads of a client: since when no
// stream is open, and per type the NACKs since the type's last ACK. It also
// lets the relay end the current stream (Reconnect). Both xDS clients own
// one.
type Health struct {
	types     []string // the client's type URLs, in the order NackLoop checks them
	mu        sync.Mutex
	connected bool
	downSince time.Time
	nacks     map[string]nackRun // by type URL; absent after an ACK
	// Gauge is meshrelay_relay_xds_consecutive_nacks, by type.
	Gauge *prometheus.GaugeVec
	// cancel ends the current stream (Reconnect); nil between streams.
	cancel context.CancelCauseFunc
}

// ErrReconnect is the cause of a stream ended by Reconnect.
var ErrReconnect = errors.New("reconnect asked for")

// SetStreamCancel registers the cancel function of the current stream (nil
// between streams) for Reconnect.
func (h *Health) SetStreamCancel(cancel context.CancelCauseFunc) {
	h.mu.Lock()
	h.cancel = cancel
	h.mu.Unlock()
}

// Reconnect ends the current stream, if any; the client's Run opens a
// fresh one at once (a stream that worked resets the backoff). The relay
// uses it to have a fresh stream confirm held deletions (docs/contract.md,
// "Held deletions").
func (h *Health) Reconnect() {
	h.mu.Lock()
	cancel := h.cancel
	h.mu.Unlock()
	if cancel != nil {
		cancel(ErrReconnect)
	}
}

// nackRun is the consecutive NACKs of one type.
type nackRun struct {
	count  int
	reason string
}

// NewHealth returns the health of a client of types created at now, with
// no stream open since then.
func NewHealth(now time.Time, types []string) *Health {
	return &Health{
		types:     types,
		downSince: now,
		nacks:     map[string]nackRun{},
		Gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "meshrelay", Subsystem: "relay_xds", Name: "consecutive_nacks",
			Help: "Responses of a type NACKed since its last ACK; 2 or more means every push of the type is rejected.",
		}, []string{"type"}),
	}
}

// SetConnected records that a stream opened (up) or ended at now.
func (h *Health) SetConnected(up bool, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.connected && !up {
		h.downSince = now
	}
	h.connected = up
}

// Acked records an ACK of typeURL: its NACK run ends.
func (h *Health) Acked(typeURL string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.nacks, typeURL)
	h.Gauge.WithLabelValues(MessageName(typeURL)).Set(0)
}

// Nacked records a NACK and logs once when the type enters a NACK loop.
func (h *Health) Nacked(typeURL string, reason error, log *slog.Logger) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.nacks[typeURL]
	r.count++
	r.reason = reason.Error()
	h.nacks[typeURL] = r
	h.Gauge.WithLabelValues(MessageName(typeURL)).Set(float64(r.count))
	if r.count == NackLoopAfter {
		log.Error("xds NACK loop: every push of this type is rejected, its changes are frozen until Istiod sends a valid state",
			"type", MessageName(typeURL), "nacks", r.count, "reason", r.reason)
	}
}

// Upstream reports whether a stream to Istiod is open, and when not, since
// when none has been (since New when none ever was).
func (h *Health) Upstream() (connected bool, downSince time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.connected, h.downSince
}

// NackLoop reports the first type whose last NackLoopAfter or more
// responses were all NACKed, with the count and the latest reason (which
// names the offending resource).
func (h *Health) NackLoop() (typeURL string, nacks int, reason string, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range h.types {
		if r := h.nacks[t]; r.count >= NackLoopAfter {
			return t, r.count, r.reason, true
		}
	}
	return "", 0, "", false
}

// Readings is what an xDS client exposes of its Health to the relay
// (Reconnect, Upstream, NackLoop); both clients embed it.
type Readings struct{ h *Health }

// Readings returns h's readings for a client to embed.
func (h *Health) Readings() Readings { return Readings{h} }

// Reconnect ends the client's current stream (Health.Reconnect).
func (r Readings) Reconnect() { r.h.Reconnect() }

// Upstream reports whether a stream is open, and when not, since when none
// has been (Health.Upstream).
func (r Readings) Upstream() (connected bool, downSince time.Time) { return r.h.Upstream() }

// NackLoop reports a type every push of which is NACKed (Health.NackLoop).
func (r Readings) NackLoop() (typeURL string, nacks int, reason string, ok bool) {
	return r.h.NackLoop()
}
