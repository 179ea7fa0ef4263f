package istiodsim

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Sim is a simulated Istiod. Create it with New, serve it with Start, change
// its mesh with the mutation methods and read what its clients did with
// Nacks, Violations and Stats. All methods are safe for concurrent use.
type Sim struct {
	opts  Options
	log   *slog.Logger
	codec codec

	// snap is the latest snapshot; streams load it without taking mu.
	snap atomic.Pointer[snapshot]
	// nonces numbers the responses of the current instance.
	nonces atomic.Uint64

	responses, bytes, streamsTotal, stale atomic.Uint64
	// withheld types are never answered (Withhold).
	withheld [numTypes]atomic.Bool

	mu        sync.Mutex // guards the fields below
	gen       *generator
	services  []*service
	removed   []removedEndpoint
	staticCDS []resource
	httpLDS   resource
	instance  string
	seq       uint64 // versions of the current instance
	layout    *layout
	pending   change
	timer     *time.Timer // debounce timer; nil when no push is pending
	first     time.Time   // first change of the pending push
	last      time.Time   // last change of the pending push
	pushes    uint64
	streams   map[*sotwStream]struct{}
	deltas    map[*deltaStream]struct{}
	deltaSubs []DeltaSubscription
	// authz are the authorization policies served over delta, by
	// resource name; replaced on change, never modified.
	authz    map[string]*discoveryv3.Resource
	nextID   uint64
	nacks    []Nack
	violated []string

	server   *grpc.Server
	addr     string
	starts   int
	serveErr chan error
}

// removedEndpoint is an endpoint taken away by RemoveEndpoints.
type removedEndpoint struct {
	service  int
	endpoint endpoint
}

// New generates the mesh described by opts. It does not listen: call Start.
func New(opts Options) (*Sim, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("istiodsim options: %w", err)
	}
	c, err := newCodec()
	if err != nil {
		return nil, err
	}
	s := &Sim{
		opts:     opts,
		log:      opts.Logger,
		codec:    c,
		gen:      newGenerator(opts),
		streams:  map[*sotwStream]struct{}{},
		deltas:   map[*deltaStream]struct{}{},
		services: make([]*service, 0, opts.Services),
	}
	for _, c := range staticClusters() {
		s.staticCDS = append(s.staticCDS, resource{name: c.GetName(), any: mustAny(c)})
	}
	l := httpListener()
	s.httpLDS = resource{name: l.GetName(), any: mustAny(l)}
	for i := range opts.Services {
		svc := s.gen.service(i)
		s.services = append(s.services, svc)
	}
	buildAll(s.services, opts.SubsetClusters)
	s.authz = map[string]*discoveryv3.Resource{}
	for i := range opts.Authorizations {
		a := GeneratedAuthorization(i, opts.Namespaces)
		s.authz[AuthorizationName(a)] = newDeltaResource(AuthorizationName(a), a)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.newInstanceLocked()
	return s, nil
}

// newInstanceLocked gives the Sim a new instance id, as a restarted Istiod
// has, and publishes the current state under it.
func (s *Sim) newInstanceLocked() {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	s.instance = hex.EncodeToString(b[:])
	s.seq = 0
	s.nonces.Store(0)
	s.layout = nil
	s.publishLocked()
}

// publishLocked stores a new snapshot of the current state with the next
// version.
func (s *Sim) publishLocked() *snapshot {
	s.seq++
	sn := &snapshot{
		instance: s.instance,
		version:  fmt.Sprintf("%s/%d", s.instance, s.seq),
		services: make([]*serviceResources, len(s.services)),
	}
	for i, svc := range s.services {
		if !svc.deleted {
			sn.services[i] = svc.res
		}
	}
	if s.layout == nil {
		s.layout = newLayout(sn.services, s.staticCDS, s.httpLDS)
	}
	sn.layout = s.layout
	s.snap.Store(sn)
	return sn
}

// Start serves ADS on addr, which must be a loopback address
// ("127.0.0.1:0" picks a free port). Starting again after Stop simulates a
// new Istiod process: versions and nonces get a new prefix.
func (s *Sim) Start(addr string) error {
	if err := checkLoopback(addr); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.server != nil {
		return fmt.Errorf("istiodsim already serving on %s", s.addr)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	if s.starts > 0 {
		s.newInstanceLocked()
	}
	s.starts++
	kp := keepalive.ServerParameters{}
	if s.opts.MaxConnectionAge > 0 {
		kp.MaxConnectionAge = s.opts.MaxConnectionAge
		kp.MaxConnectionAgeGrace = 10 * time.Second
	}
	sopts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(s.codec),
		grpc.MaxRecvMsgSize(s.opts.MaxMessageSize),
		grpc.MaxSendMsgSize(s.opts.MaxMessageSize),
		grpc.KeepaliveParams(kp),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.WaitForHandlers(true),
	}
	if w := s.opts.InitialWindowSize; w > 0 {
		sopts = append(sopts, grpc.InitialWindowSize(w), grpc.InitialConnWindowSize(w))
	}
	srv := grpc.NewServer(append(sopts, s.opts.ServerOptions...)...)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, &adsServer{sim: s})
	s.server = srv
	s.addr = lis.Addr().String()
	done := make(chan error, 1)
	s.serveErr = done
	go func() { done <- srv.Serve(lis) }()
	s.log.Info("istiodsim serving", "addr", s.addr, "instance", s.instance)
	return nil
}

// checkLoopback refuses addresses that would listen beyond this machine.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("listen address %q: not a loopback IP address", addr)
	}
	return nil
}

// Addr is the address the Sim listens on, empty before Start.
func (s *Sim) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Stop closes the listener and every stream, and waits for the stream
// handlers to return. The mesh is kept: Start serves it again. Stop on a
// stopped Sim does nothing.
func (s *Sim) Stop() {
	s.mu.Lock()
	srv, done := s.server, s.serveErr
	s.server = nil
	s.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Stop()
	if err := <-done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		s.log.Warn("istiodsim serve", "err", err)
	}
	// A debounced push still pending goes into the snapshot now, so that
	// nothing runs after Stop and a later Start serves every change.
	s.mu.Lock()
	info := s.flushLocked()
	s.mu.Unlock()
	s.notify(info)
}

// Restart stops the Sim and starts it again on the same address, as a new
// instance: same mesh, new version and nonce prefix. Clients must reconnect.
func (s *Sim) Restart() error {
	addr := s.Addr()
	if addr == "" {
		return fmt.Errorf("restart: istiodsim was never started")
	}
	s.Stop()
	// The port was ours a moment ago; another process may take it in
	// between, in which case Start reports the conflict.
	if err := s.Start(addr); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	return nil
}

// Version is the version_info of the latest snapshot ("<instance>/<n>").
func (s *Sim) Version() string { return s.snap.Load().version }

// adsServer is the gRPC face of a Sim. It is a separate type so the Sim's
// own API does not carry the gRPC methods.
type adsServer struct{ sim *Sim }

var _ discoveryv3.AggregatedDiscoveryServiceServer = (*adsServer)(nil)
