package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/relay/etcdsink"
	"github.com/meshrelay/meshrelay/relay/shard"
	"github.com/meshrelay/meshrelay/relay/translate"
	"github.com/meshrelay/meshrelay/relay/xds/sotw"
)

// Options configures a Relay. Zero values take the documented defaults.
type Options struct {
	// Istiod is the upstream xDS address (host:port), e.g.
	// istiod.istio-system.svc:15010.
	Istiod string
	// Node is the xDS node identity; nil means sotw.NodeFromEnv.
	Node *corev3.Node
	// NodeID, when set, replaces the node's id; NodeMetadata entries are
	// merged into its metadata (e.g. {"CLUSTER_ID": "east"}).
	NodeID       string
	NodeMetadata map[string]any
	// DialOptions add to the upstream dial (TLS credentials, ...).
	DialOptions []grpc.DialOption
	// SyncTimeout bounds how long a stream waits for named EDS/RDS
	// resources before its state counts as complete (default 5 s).
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

	// Registerer receives the relay's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Relay mirrors one Istiod's configuration into etcd.
type Relay struct {
	opts   Options
	log    *slog.Logger
	sink   *etcdsink.Sink
	client *sotw.Client
	// membership leads shards with Options.HA; nil otherwise.
	membership *shard.Membership
	gate       *edsGate // the writer's Fencer with Options.HA

	ledMu   sync.Mutex        // guards held and lostAt (see wantEDS)
	held    map[int]bool      // shards led at the latest leadership change
	lostAt  map[int]time.Time // when a shard was last lost
	edsKeep time.Duration     // how long EDS stays subscribed after a loss

	mu    sync.Mutex
	index *translate.Index
	// gated holds services changed before the first complete upstream
	// sync. They are written all at once when the state is complete, so a
	// restart against unchanged config never writes a half-synced service.
	gated       map[keyspace.Service]time.Time
	completes   int  // complete syncs seen (one per stream at most)
	wasComplete bool // the previous update was complete
	services    int
}

// Validate reports the first invalid field. Zero fields are valid: they
// take the defaults.
func (o Options) Validate() error {
	switch {
	case o.Istiod == "":
		return errors.New("relay: no Istiod address")
	case o.SyncTimeout < 0 || o.MaxRecvMsgSize < 0:
		return fmt.Errorf("relay: SyncTimeout %v, MaxRecvMsgSize %d: want >= 0", o.SyncTimeout, o.MaxRecvMsgSize)
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
	r := &Relay{
		opts:  opts,
		log:   opts.Logger,
		index: translate.NewIndex(),
		gated: map[keyspace.Service]time.Time{},
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
	node := opts.Node
	if node == nil {
		node = sotw.NodeFromEnv(osGetenv, opts.Cluster)
	}
	var edsFilter func(string, *clusterv3.Cluster) bool
	if r.membership != nil {
		edsFilter = r.wantEDS
	}
	c, err := sotw.New(sotw.Options{
		EDSFilter:      edsFilter,
		Address:        opts.Istiod,
		Node:           node,
		NodeID:         opts.NodeID,
		NodeMetadata:   opts.NodeMetadata,
		DialOptions:    opts.DialOptions,
		MaxRecvMsgSize: opts.MaxRecvMsgSize,
		SyncTimeout:    opts.SyncTimeout,
		Logger:         opts.Logger.With("stage", "xds"),
	}, r)
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	r.client = c
	if opts.Registerer != nil {
		for _, c := range r.metrics() {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("relay: register metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Run runs the upstream client and the etcd writer until ctx is done or
// one of them fails. It returns ctx's error on a normal stop.
func (r *Relay) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return r.sink.Run(ctx) })
	g.Go(func() error { return r.client.Run(ctx) })
	g.Go(func() error { return r.runMembership(ctx) })
	return g.Wait()
}

// Synced is closed once the first complete upstream sync is in etcd,
// synced/* markers included.
func (r *Relay) Synced() <-chan struct{} { return r.sink.Synced() }

// Ready reports readiness for /readyz: ready once the first complete sync
// has been written.
func (r *Relay) Ready() (bool, string) {
	if r.membership != nil {
		return r.haReady()
	}
	select {
	case <-r.sink.Synced():
		return true, ""
	default:
	}
	if !r.client.Connected() {
		return false, "not connected to Istiod " + r.opts.Istiod
	}
	return false, "first complete sync not yet written to etcd"
}

// OnUpdate implements sotw.Handler: it re-translates the services the
// update touches and hands them to the sink.
func (r *Relay) OnUpdate(ctx context.Context, u sotw.Update) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var dirty []keyspace.Service
	if u.TypeURL != "" { // an update with no type only reports completeness
		dirty = r.index.Apply(u.TypeURL, u.Upserted, u.Removed)
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
	}
	// Newly complete: the first sync, or the first complete update of a
	// reconnected stream (whose earlier updates were incomplete).
	newlyComplete := u.Complete && (r.completes == 0 || !r.wasComplete)
	r.wasComplete = u.Complete
	if !newlyComplete {
		return
	}
	for k, t := range r.gated {
		r.set(k, t, true)
	}
	clear(r.gated)
	present := r.index.Services()
	r.services = len(present)
	r.completes++
	r.log.Info("upstream state complete", "services", len(present), "sync", r.completes)
	r.sink.Complete(present)
}

// set hands one service's current translation to the sink. A service that
// no longer translates is deleted only when the upstream state is complete;
// otherwise the sweep after the next complete sync removes it.
func (r *Relay) set(k keyspace.Service, observed time.Time, complete bool) {
	s, ok := r.index.Service(k)
	switch {
	case ok:
		r.sink.Set(k, s, observed)
	case complete:
		r.sink.Set(k, nil, observed)
	}
}

var osGetenv = os.Getenv

// Stats returns the etcd writer's counters.
func (r *Relay) Stats() etcdsink.Stats { return r.sink.Stats() }
