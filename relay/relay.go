package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/relay/etcdsink"
	"github.com/meshrelay/meshrelay/relay/shard"
	"github.com/meshrelay/meshrelay/relay/translate"
	"github.com/meshrelay/meshrelay/relay/translate/workload"
	"github.com/meshrelay/meshrelay/relay/xds/delta"
	"github.com/meshrelay/meshrelay/relay/xds/sotw"
)

// Options configures a Relay. Zero values take the documented defaults.
type Options struct {
	// Istiod is the upstream xDS address (host:port), e.g.
	// istiod.istio-system.svc:15010.
	Istiod string
	// Mode is the upstream API: ModeSotW (default) or ModeWorkload.
	Mode Mode
	// Node is the xDS node identity; nil means sotw.NodeFromEnv, or
	// delta.NodeFromEnv (a ztunnel identity) in ModeWorkload.
	Node *corev3.Node
	// NodeID, when set, replaces the node's id; NodeMetadata entries are
	// merged into its metadata (e.g. {"CLUSTER_ID": "east"}).
	NodeID       string
	NodeMetadata map[string]any
	// DialOptions add to the upstream dial (TLS credentials, ...).
	DialOptions []grpc.DialOption
	// SyncTimeout bounds how long a stream waits for named EDS/RDS
	// resources (ModeSotW), or for types Istiod has nothing new for after
	// a reconnect (ModeWorkload), before its state counts as complete
	// (default 5 s).
	SyncTimeout time.Duration
	// MaxRecvMsgSize is the upstream gRPC receive limit (default 256 MiB).
	MaxRecvMsgSize int

	// Cluster is the keyspace's cluster id (default keyspace.DefaultCluster).
	Cluster string
	// Shards is the number of shards (default keyspace.DefaultShards).
	Shards int
	// RelayID names this replica in synced/ markers (default
	// etcdsink.DefaultRelayID).
	RelayID string
	// Sink tunes the etcd writer. Its Cluster, Shards, RelayID and Logger
	// must be left zero: the relay sets them from the fields above
	// (Validate refuses them rather than overwrite them).
	Sink etcdsink.Options
	// HA, when set, makes this relay one replica of several that split the
	// shards (see HA). Without it the relay writes every shard.
	HA *HA

	// StallTimeout bounds how long the writer (or the handling of one
	// upstream update) may make no progress while work is pending before
	// Healthy reports the relay unhealthy (default DefaultStallTimeout).
	StallTimeout time.Duration
	// UpstreamLostTimeout is how long Istiod may be unreachable before
	// Ready reports not ready (default DefaultUpstreamLostTimeout). etcd
	// keeps the last state meanwhile; readiness says it is aging.
	// It also bounds how long an RDS route that listeners read may be
	// missing: while one is, service updates are held (deletions still
	// apply), and past the bound Ready reports not ready naming it.
	UpstreamLostTimeout time.Duration

	// Registerer receives the relay's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Mode is the upstream API a relay consumes.
type Mode string

// Upstream API modes.
const (
	// ModeSotW: State-of-the-World ADS, wildcard CDS and LDS, named EDS
	// and RDS (relay/xds/sotw, relay/translate).
	ModeSotW Mode = "sotw"
	// ModeWorkload: Istio's ambient workload API over delta ADS
	// (relay/xds/delta, relay/translate/workload).
	ModeWorkload Mode = "workload"
)

// upstream is the xDS client of a mode.
type upstream interface {
	Run(ctx context.Context) error
	Connected() bool
	// Reconnect, Upstream and NackLoop are the client's health
	// (reconnect.Readings).
	Reconnect()
	Upstream() (connected bool, downSince time.Time)
	NackLoop() (typeURL string, nacks int, reason string, ok bool)
	// Metrics are the client's Prometheus collectors.
	Metrics() []prometheus.Collector
}

// index is the translation of a mode: it applies the client's updates and
// translates the services they touch (translate.Index,
// workload.Index).
type index interface {
	Apply(typeURL string, upserted map[string]proto.Message, removed []string) []keyspace.Service
	Service(k keyspace.Service) (*model.Service, bool)
	Services() []keyspace.Service
	// RoutesPending counts the routes listeners read that have not
	// arrived, PendingRoutes names them; Unknown says whether a service's endpoints are unknown.
	// Unknown is not empty (docs/contract.md).
	RoutesPending() int
	PendingRoutes() []string
	Unknown(k keyspace.Service) bool
}

// DefaultStallTimeout is the default Options.StallTimeout.
const DefaultStallTimeout = 2 * time.Minute

// DefaultUpstreamLostTimeout is the default Options.UpstreamLostTimeout.
const DefaultUpstreamLostTimeout = time.Minute

// Relay mirrors one Istiod's configuration into etcd.
type Relay struct {
	opts   Options
	log    *slog.Logger
	sink   *etcdsink.Sink
	client upstream
	// sotwClient is client in ModeSotW (the EDS split uses it), nil
	// otherwise.
	sotwClient *sotw.Client
	// membership leads shards with Options.HA; nil otherwise.
	membership *shard.Membership
	gate       *edsGate // the writer's Fencer with Options.HA

	ledMu   sync.Mutex        // guards held and lostAt (see wantEDS)
	held    map[int]bool      // shards led at the latest leadership change
	lostAt  map[int]time.Time // when a shard was last lost
	edsKeep time.Duration     // how long EDS stays subscribed after a loss

	mu    sync.Mutex
	index index
	// gated holds services changed before the first complete upstream
	// sync, and those changed while an RDS route is missing. They are
	// written all at once when the state is complete (and every route is
	// in), so a restart against unchanged config never writes a
	// half-synced service.
	gated map[keyspace.Service]time.Time
	// pending are the services set while handling one update, handed to
	// the sink together (handOver).
	pending     []etcdsink.Desired
	completes   int  // complete syncs seen (one per stream at most)
	wasComplete bool // the previous update was complete
	services    int
	// authz are the authorization policies upstream holds, encoded
	// (ModeWorkload; docs/contract.md, section 1).
	authz map[keyspace.Authorization][]byte
	// routes tracks the missing RDS routes for readiness.
	routes *pendingRoutes

	// updating is when the OnUpdate in progress started (unix
	// nanoseconds), 0 when none is: the main loop's liveness.
	updating atomic.Int64

	synced     chan struct{} // Synced; closed by waitSynced
	syncedOnce sync.Once     // Run may be called again
}

// Validate reports the first invalid field. Zero fields are valid: they
// take the defaults.
func (o Options) Validate() error {
	switch {
	case o.Istiod == "":
		return errors.New("relay: no Istiod address")
	case o.Mode != "" && o.Mode != ModeSotW && o.Mode != ModeWorkload:
		return fmt.Errorf("relay: mode %q: want %q or %q", o.Mode, ModeSotW, ModeWorkload)
	case o.SyncTimeout < 0 || o.MaxRecvMsgSize < 0 || o.StallTimeout < 0 || o.UpstreamLostTimeout < 0:
		return fmt.Errorf("relay: SyncTimeout %v, MaxRecvMsgSize %d, StallTimeout %v, UpstreamLostTimeout %v: want >= 0",
			o.SyncTimeout, o.MaxRecvMsgSize, o.StallTimeout, o.UpstreamLostTimeout)
	case o.Sink.Cluster != "" || o.Sink.Shards != 0 || o.Sink.RelayID != "" || o.Sink.Logger != nil:
		return errors.New("relay: set Cluster, Shards, RelayID and Logger on relay.Options, not on Options.Sink")
	}
	if err := o.sinkOptions().Validate(); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	return nil
}

// sinkOptions are the etcd writer's options: Sink with the relay's
// keyspace, identity and logger.
func (o Options) sinkOptions() etcdsink.Options {
	so := o.Sink
	so.Cluster, so.Shards, so.RelayID = o.Cluster, o.Shards, o.RelayID
	if o.Logger != nil {
		so.Logger = o.Logger.With("stage", "etcdsink")
	}
	return so
}

// New returns a relay that writes through etcd.
func New(etcd etcdsink.Client, opts Options) (*Relay, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Cluster == "" {
		opts.Cluster = keyspace.DefaultCluster
	}
	if opts.Shards <= 0 {
		opts.Shards = keyspace.DefaultShards
	}
	if opts.RelayID == "" {
		opts.RelayID = etcdsink.DefaultRelayID
	}
	if opts.StallTimeout == 0 {
		opts.StallTimeout = DefaultStallTimeout
	}
	if opts.UpstreamLostTimeout == 0 {
		opts.UpstreamLostTimeout = DefaultUpstreamLostTimeout
	}
	r := &Relay{
		opts:   opts,
		log:    opts.Logger,
		gated:  map[keyspace.Service]time.Time{},
		authz:  map[keyspace.Authorization][]byte{},
		routes: newPendingRoutes(),
		synced: make(chan struct{}),
	}
	so := opts.sinkOptions()
	if opts.HA != nil {
		m, err := r.newMembership()
		if err != nil {
			return nil, err
		}
		r.membership = m
		r.gate = newEDSGate(m, r.awaited, r.syncTimeout(), func() { r.sink.ShardsChanged() })
		so.Fencer = r.gate
	}
	r.sink = etcdsink.New(etcd, so)
	var err error
	if opts.Mode == ModeWorkload {
		r.index = workload.NewIndex()
		r.client, err = newDeltaClient(opts, r)
	} else {
		r.index = translate.NewIndex()
		var edsFilter func(string, *clusterv3.Cluster) bool
		if r.membership != nil {
			edsFilter = r.wantEDS
		}
		r.sotwClient, err = newSotWClient(opts, edsFilter, r)
		r.client = r.sotwClient
	}
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	if opts.Registerer != nil {
		for _, c := range r.metrics() {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("relay: register metrics: %w", err)
			}
		}
	}
	return r, nil
}

func newSotWClient(opts Options, edsFilter func(string, *clusterv3.Cluster) bool, h sotw.Handler) (*sotw.Client, error) {
	node := opts.Node
	if node == nil {
		node = sotw.NodeFromEnv(osGetenv, opts.Cluster)
	}
	return sotw.New(sotw.Options{
		EDSFilter:      edsFilter,
		Address:        opts.Istiod,
		Node:           node,
		NodeID:         opts.NodeID,
		NodeMetadata:   opts.NodeMetadata,
		DialOptions:    opts.DialOptions,
		MaxRecvMsgSize: opts.MaxRecvMsgSize,
		SyncTimeout:    opts.SyncTimeout,
		Logger:         opts.Logger.With("stage", "xds"),
	}, h)
}

func newDeltaClient(opts Options, h delta.Handler) (*delta.Client, error) {
	node := opts.Node
	if node == nil {
		node = delta.NodeFromEnv(osGetenv, opts.Cluster)
	}
	node, err := sotw.OverrideNode(node, opts.NodeID, opts.NodeMetadata)
	if err != nil {
		return nil, err
	}
	return delta.New(delta.Options{
		Address:        opts.Istiod,
		Node:           node,
		DialOptions:    opts.DialOptions,
		MaxRecvMsgSize: opts.MaxRecvMsgSize,
		SyncTimeout:    opts.SyncTimeout,
		Logger:         opts.Logger.With("stage", "xds"),
	}, h)
}

// Run runs the upstream client and the etcd writer until ctx is done or
// one of them fails. It returns ctx's error on a normal stop.
func (r *Relay) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return r.sink.Run(ctx) })
	g.Go(func() error { return r.client.Run(ctx) })
	g.Go(func() error { r.confirmHolds(ctx); return nil })
	g.Go(func() error { r.routes.watch(ctx, r.opts.UpstreamLostTimeout, r.log); return nil })
	g.Go(func() error { return r.runMembership(ctx) })
	g.Go(func() error { r.waitSynced(ctx); return nil })
	return g.Wait()
}

// syncedPoll is how often waitSynced checks a replica's shards.
const syncedPoll = 20 * time.Millisecond

// waitSynced closes r.synced once the sink's first markers are written
// and, with Options.HA, once the replica's shard readiness first holds
// (haReady: every shard has a leader, and every shard this replica leads is
// written); it returns when ctx is done. The sink alone closes its Synced
// as soon as the shards taken over so far are written, which with shard
// leadership can be the first of several rounds of takeovers.
func (r *Relay) waitSynced(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-r.sink.Synced():
	}
	if r.membership != nil {
		t := time.NewTicker(syncedPoll)
		defer t.Stop()
		for {
			if ok, _ := r.haReady(); ok {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}
	r.syncedOnce.Do(func() { close(r.synced) })
}

// holdCheckInterval is how often the relay checks whether held deletions
// wait for a fresh stream.
const holdCheckInterval = 200 * time.Millisecond

// confirmHolds opens a fresh upstream stream when held deletions have
// waited the hold time (docs/contract.md, "Held deletions"): its complete
// state confirms or clears them. It asks at most once per hold time.
func (r *Relay) confirmHolds(ctx context.Context) {
	t := time.NewTicker(holdCheckInterval)
	defer t.Stop()
	var asked time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if r.sink.HoldDue(now) && now.Sub(asked) >= r.sinkHoldTime() {
				asked = now
				r.log.Info("held deletions waited the hold time: opening a fresh upstream stream to confirm them")
				r.client.Reconnect()
			}
		}
	}
}

// sinkHoldTime is the sink's hold time, defaults applied.
func (r *Relay) sinkHoldTime() time.Duration {
	if d := r.opts.Sink.DeleteHoldTime; d > 0 {
		return d
	}
	return etcdsink.DefaultDeleteHoldTime
}

// Synced is closed once the first complete upstream sync is in etcd,
// synced/* markers included; with Options.HA, once every shard has a
// leader and every shard this replica leads is written (the shard part of
// Ready). Run must be running for it to close. It stays closed.
func (r *Relay) Synced() <-chan struct{} { return r.synced }

// Ready reports readiness for /readyz: ready once the first complete sync
// has been written, and not while Istiod has been unreachable for longer
// than Options.UpstreamLostTimeout, every push of one type is NACKed
// (its changes are frozen), or an RDS route listeners read has been missing
// for longer than Options.UpstreamLostTimeout (service updates are held).
func (r *Relay) Ready() (bool, string) {
	if typ, n, reason, ok := r.client.NackLoop(); ok {
		return false, fmt.Sprintf("NACKing every push of %s (%d in a row): %s", typ, n, reason)
	}
	if name, since, ok := r.routes.oldest(); ok {
		if d := time.Since(since); d > r.opts.UpstreamLostTimeout {
			return false, fmt.Sprintf("RDS route %q read by listeners missing for %v: service updates held (meshrelay_relay_rds_routes_pending)",
				name, d.Round(time.Second))
		}
	}
	if n := r.sink.Unwritable(); n > 0 {
		return false, fmt.Sprintf("%d services too large for etcd are not written (meshrelay_relay_etcd_oversized_services_total)", n)
	}
	if r.membership != nil {
		return r.haReady()
	}
	select {
	case <-r.sink.Synced():
		if up, since := r.client.Upstream(); !up {
			if d := time.Since(since); d > r.opts.UpstreamLostTimeout {
				return false, fmt.Sprintf("Istiod %s lost for %v", r.opts.Istiod, d.Round(time.Second))
			}
		}
		return true, ""
	default:
	}
	if !r.client.Connected() {
		return false, "not connected to Istiod " + r.opts.Istiod
	}
	return false, "first complete sync not yet written to etcd"
}

// Healthy reports liveness for /healthz: unhealthy when the etcd writer
// has had work pending without progress, or one upstream update has been
// in handling, for longer than Options.StallTimeout.
func (r *Relay) Healthy() (bool, string) {
	if t := r.updating.Load(); t != 0 {
		if d := time.Since(time.Unix(0, t)); d > r.opts.StallTimeout {
			return false, fmt.Sprintf("handling one upstream update for %v", d.Round(time.Second))
		}
	}
	if stalled, why := r.sink.Stalled(r.opts.StallTimeout); stalled {
		return false, why
	}
	return true, ""
}

// ReleaseDeletions releases the removals the mass-deletion guard holds
// (docs/contract.md, "Held deletions") and returns how many there were.
func (r *Relay) ReleaseDeletions() int { return r.sink.ReleaseDeletions() }

// OnUpdate implements sotw.Handler (and delta.Handler, the same): it
// re-translates the services the
// update touches and hands them to the sink.
func (r *Relay) OnUpdate(ctx context.Context, u sotw.Update) {
	r.updating.Store(time.Now().UnixNano())
	defer r.updating.Store(0)
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.handOver()
	var dirty []keyspace.Service
	if u.TypeURL != "" { // an update with no type only reports completeness
		dirty = r.index.Apply(u.TypeURL, u.Upserted, u.Removed)
		r.routes.update(r.index.PendingRoutes(), time.Now())
	}
	if u.TypeURL == delta.AuthorizationType {
		r.applyAuthorizations(u)
	}
	if r.gate != nil && u.TypeURL == resourcev3.EndpointType && r.gate.pending() {
		r.sink.ShardsChanged() // a shard waiting for its assignments may be complete
	}
	if r.completes == 0 {
		for _, k := range dirty {
			r.gated[k] = u.ReceivedAt
		}
	} else {
		for _, k := range dirty {
			r.set(k, u.ReceivedAt, u.Complete)
		}
		if len(r.gated) > 0 {
			r.flushGated(u.Complete)
		}
	}
	// Newly complete: the first sync, or the first complete update of a
	// reconnected stream (whose earlier updates were incomplete).
	newlyComplete := u.Complete && (r.completes == 0 || !r.wasComplete || u.NewlyComplete)
	r.wasComplete = u.Complete
	if !newlyComplete {
		return
	}
	r.flushGated(true)
	r.handOver()
	present := r.index.Services()
	r.services = len(present)
	if r.opts.Mode == ModeWorkload {
		r.completeAuthorizations()
	}
	r.completes++
	r.log.Info("upstream state complete", "services", len(present), "sync", r.completes)
	r.sink.Complete(present)
	if r.membership != nil {
		r.membership.Poke() // eligible now: campaign without waiting for the next round
	}
}

// flushGated hands the gated services to the sink, unless an RDS route
// listeners read is still missing.
func (r *Relay) flushGated(complete bool) {
	if r.index.RoutesPending() > 0 {
		return
	}
	for k, t := range r.gated {
		delete(r.gated, k)
		r.set(k, t, complete)
	}
}

// set hands one service's current translation to the sink. A service that
// no longer translates is deleted only when the upstream state is complete;
// otherwise the sweep after the next complete sync removes it. A service
// whose EDS assignment was never received keeps what etcd holds (unknown is
// not empty, docs/contract.md): it is handed over once the assignment
// arrives, which marks it dirty again.
func (r *Relay) set(k keyspace.Service, observed time.Time, complete bool) {
	s, ok := r.index.Service(k)
	switch {
	case ok && r.index.RoutesPending() > 0:
		// A route listeners read has not arrived: the VIPs it may claim
		// are unknown. Written once every route is in.
		r.gated[k] = observed
	case ok && r.index.Unknown(k):
		r.log.Debug("endpoints of service unknown: keeping what etcd holds", "service", k)
	case ok:
		r.pending = append(r.pending, etcdsink.Desired{Service: k, State: s, Observed: observed})
	case complete:
		r.pending = append(r.pending, etcdsink.Desired{Service: k, Observed: observed})
	}
}

// handOver gives the sink every service set while handling one upstream
// update, in one SetAll (the guard judges the whole update).
func (r *Relay) handOver() {
	if len(r.pending) > 0 {
		r.sink.SetAll(r.pending)
		r.pending = r.pending[:0]
	}
}

var osGetenv = os.Getenv

// Stats returns the etcd writer's counters.
func (r *Relay) Stats() etcdsink.Stats { return r.sink.Stats() }
