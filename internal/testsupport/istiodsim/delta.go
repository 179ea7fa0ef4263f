package istiodsim

import (
	"fmt"
	"maps"
	"slices"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"istio.io/istio/pkg/workloadapi"
)

// DeltaAggregatedResources serves one delta ADS stream of Istio's ambient
// workload API: wildcard subscriptions to AddressType (a Service Address per
// service, a Workload Address per endpoint, from the same snapshots SotW
// serves) and AuthorizationType (the policies of Options.Authorizations,
// PutAuthorization and DeleteAuthorization). Like Istiod, it answers a
// subscription with everything the client lacks according to its
// initial_resource_versions (and removes what the client holds that no
// longer exists), then pushes only differences.
func (a *adsServer) DeltaAggregatedResources(ss grpc.BidiStreamingServer[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]) error {
	return a.sim.serveDelta(ss)
}

// DeltaSubscription is the first request of a type on a delta stream.
type DeltaSubscription struct {
	// Stream numbers the Sim's streams from 1; Node is the stream's node id.
	Stream  uint64
	Node    string
	TypeURL string
	// InitialResourceVersions is what the client said it holds.
	InitialResourceVersions map[string]string
}

// DeltaSubscriptions returns every delta subscription received, oldest
// first.
func (s *Sim) DeltaSubscriptions() []DeltaSubscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.deltaSubs)
}

// DeltaStreams is the number of delta streams currently open.
func (s *Sim) DeltaStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.deltas)
}

// deltaStream is one delta ADS stream. Its goroutine (serveDelta) is the
// only one that sends on the stream and reads its fields, except malformed,
// which PushMalformedAddress appends to under mu.
type deltaStream struct {
	id   uint64
	sim  *Sim
	ss   grpc.ServerStream
	node string
	// wake has capacity 1: a send means "state or malformed may have news".
	wake chan struct{}
	// subscribed are the types subscribed; sent and authzSent are what the
	// client holds of AddressType and AuthorizationType according to this
	// stream, by name → version.
	subscribed map[string]bool
	sent       map[string]string
	authzSent  map[string]string
	// at is the snapshot whose Address state the client holds (nil: none
	// sent yet): the next push compares only the services that changed
	// since.
	at *snapshot
	// malformed are responses queued by PushMalformedAddress; guarded by
	// the Sim's mu.
	malformed []*discoveryv3.DeltaDiscoveryResponse
}

func (st *deltaStream) wakeUp() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

func (s *Sim) serveDelta(ss grpc.BidiStreamingServer[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]) error {
	s.mu.Lock()
	s.nextID++
	st := &deltaStream{id: s.nextID, sim: s, ss: ss, wake: make(chan struct{}, 1), subscribed: map[string]bool{}}
	s.deltas[st] = struct{}{}
	s.mu.Unlock()
	s.streamsTotal.Add(1)
	defer func() {
		s.mu.Lock()
		delete(s.deltas, st)
		s.mu.Unlock()
	}()

	err := serveLoop(ss.Context(), ss.Recv, st.wake, st.handle, st.drain)
	if err != nil {
		s.log.Debug("istiodsim delta stream ends", "stream", st.id, "node", st.node, "err", err)
	}
	return err
}

// handle answers one request: a subscription gets the state, a NACK is
// recorded, an ACK needs nothing.
func (st *deltaStream) handle(req *discoveryv3.DeltaDiscoveryRequest) error {
	s := st.sim
	if st.node == "" {
		id := req.GetNode().GetId()
		if err := validateNodeID(id); err != nil {
			s.violate("delta stream %d: %v", st.id, err)
			return status.Error(codes.InvalidArgument, err.Error())
		}
		st.node = id
	}
	url := req.GetTypeUrl()
	if url != AddressType && url != AuthorizationType {
		return nil // Istiod ignores types it has no generator for
	}
	if d := req.GetErrorDetail(); d != nil {
		s.recordNack(Nack{Stream: st.id, Node: st.node, TypeURL: url, Nonce: req.GetResponseNonce(),
			Code: codes.Code(d.GetCode()), Message: d.GetMessage()})
		return nil
	}
	if req.GetResponseNonce() != "" || st.subscribed[url] {
		return nil // an ACK, or a repeated subscription
	}
	st.subscribed[url] = true
	s.mu.Lock()
	s.deltaSubs = append(s.deltaSubs, DeltaSubscription{Stream: st.id, Node: st.node, TypeURL: url,
		InitialResourceVersions: maps.Clone(req.GetInitialResourceVersions())})
	s.mu.Unlock()
	sent := maps.Clone(req.GetInitialResourceVersions())
	if sent == nil {
		sent = map[string]string{}
	}
	if url == AuthorizationType {
		st.authzSent = sent
		return st.pushAuthorizations(true)
	}
	st.sent = sent
	return st.pushAddresses(true)
}

// drain sends the malformed responses queued, then the differences between
// the latest snapshot and what the client holds.
func (st *deltaStream) drain() error {
	s := st.sim
	s.mu.Lock()
	bad := st.malformed
	st.malformed = nil
	s.mu.Unlock()
	for _, r := range bad {
		if err := st.send(r); err != nil {
			return err
		}
	}
	if st.subscribed[AddressType] {
		if err := st.pushAddresses(false); err != nil {
			return err
		}
	}
	if st.subscribed[AuthorizationType] {
		return st.pushAuthorizations(false)
	}
	return nil
}

// pushAuthorizations sends the policies whose version differs from what the
// client holds and the names it holds that no longer exist; nothing when
// there is no difference, unless always. Policies are few: every push
// compares them all.
func (st *deltaStream) pushAuthorizations(always bool) error {
	state := st.sim.authorizations()
	resp := &discoveryv3.DeltaDiscoveryResponse{TypeUrl: AuthorizationType}
	for _, name := range slices.Sorted(maps.Keys(state)) {
		r := state[name]
		if v, ok := st.authzSent[name]; !ok || v != r.GetVersion() {
			resp.Resources = append(resp.Resources, r)
			st.authzSent[name] = r.GetVersion()
		}
	}
	for _, name := range slices.Sorted(maps.Keys(st.authzSent)) {
		if _, ok := state[name]; !ok {
			resp.RemovedResources = append(resp.RemovedResources, name)
			delete(st.authzSent, name)
		}
	}
	if len(resp.Resources) == 0 && len(resp.RemovedResources) == 0 && !always {
		return nil
	}
	return st.send(resp)
}

// pushAddresses sends the Address resources whose version differs from
// what the client holds and the names it holds that no longer exist;
// nothing when there is no difference, unless always. On a subscription
// (always) every resource is compared; on a push only those of the services
// whose resources changed since the snapshot the client holds, as Istiod
// pushes only what a config change touched.
func (st *deltaStream) pushAddresses(always bool) error {
	sn := st.sim.snap.Load()
	var candidates map[string]*discoveryv3.Resource // nil value: gone
	if always || st.at == nil || st.at.instance != sn.instance {
		candidates = maps.Clone(sn.wdsState())
		for name := range st.sent {
			if _, ok := candidates[name]; !ok {
				candidates[name] = nil
			}
		}
	} else {
		candidates = changedAddresses(st.at, sn)
	}
	st.at = sn
	resp := &discoveryv3.DeltaDiscoveryResponse{TypeUrl: AddressType}
	for _, name := range slices.Sorted(maps.Keys(candidates)) {
		r := candidates[name]
		switch {
		case r != nil && st.sent[name] != r.GetVersion():
			resp.Resources = append(resp.Resources, r)
			st.sent[name] = r.GetVersion()
		case r == nil:
			if _, held := st.sent[name]; held {
				resp.RemovedResources = append(resp.RemovedResources, name)
				delete(st.sent, name)
			}
		}
	}
	if len(resp.Resources) == 0 && len(resp.RemovedResources) == 0 && !always {
		return nil
	}
	return st.send(resp)
}

// changedAddresses returns the Address resources in snapshot to of every
// service whose resources differ between snapshots from and to, and the
// names those services had in from and no longer have, mapped to nil.
// Resources are shared between snapshots until a change rebuilds them, and
// an Address name belongs to one service (endpoint addresses are unique),
// so the services that did not change need no look.
func changedAddresses(from, to *snapshot) map[string]*discoveryv3.Resource {
	out := map[string]*discoveryv3.Resource{}
	for i := range max(len(from.services), len(to.services)) {
		var a, b *serviceResources
		if i < len(from.services) {
			a = from.services[i]
		}
		if i < len(to.services) {
			b = to.services[i]
		}
		if a == b {
			continue
		}
		if b != nil {
			maps.Copy(out, b.wds.resources())
		}
		if a != nil {
			for name := range a.wds.resources() {
				if _, ok := out[name]; !ok {
					out[name] = nil
				}
			}
		}
	}
	return out
}

func (st *deltaStream) send(resp *discoveryv3.DeltaDiscoveryResponse) error {
	s := st.sim
	resp.Nonce = s.nonce(s.snap.Load())
	resp.SystemVersionInfo = s.snap.Load().version
	if err := st.ss.SendMsg(resp); err != nil {
		return fmt.Errorf("send delta %s: %w", resp.GetTypeUrl(), err)
	}
	s.responses.Add(1)
	s.bytes.Add(uint64(proto.Size(resp)))
	return nil
}

// PushMalformedAddress sends every delta stream subscribed to AddressType
// one response holding a single invalid Address resource named "malformed".
// A correct client NACKs it and keeps its last good state. The Sim's state
// does not change.
func (s *Sim) PushMalformedAddress(m Malformation) error {
	r := malformedDelta(AddressType, "malformed", m, &workloadapi.Workload{Uid: "malformed"}, &workloadapi.Address{})
	if r == nil {
		return fmt.Errorf("push malformed address: unknown malformation %d", int(m))
	}
	s.queueMalformedDelta(AddressType, r, m)
	return nil
}

// malformedDelta returns the invalid delta resource of typeURL for the
// malformations every type has, nil for the others: Undecodable (bytes that
// are no protobuf message) named name, WrongType (wrongType, a message of
// another type) named name, Nameless (empty, a valid message without a
// resource name).
func malformedDelta(typeURL, name string, m Malformation, wrongType, empty proto.Message) *discoveryv3.Resource {
	switch m {
	case Undecodable:
		return &discoveryv3.Resource{Name: name, Version: "bad", Resource: undecodable(typeURL)}
	case WrongType:
		return &discoveryv3.Resource{Name: name, Version: "bad", Resource: mustAny(wrongType)}
	case Nameless:
		return &discoveryv3.Resource{Version: "bad", Resource: mustAny(empty)}
	}
	return nil
}

// queueMalformedDelta queues a response of typeURL holding r alone on every
// delta stream.
func (s *Sim) queueMalformedDelta(typeURL string, r *discoveryv3.Resource, m Malformation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for st := range s.deltas {
		st.malformed = append(st.malformed, &discoveryv3.DeltaDiscoveryResponse{TypeUrl: typeURL, Resources: []*discoveryv3.Resource{r}})
		st.wakeUp()
	}
	s.log.Info("istiodsim malformed delta push", "type", typeURL, "malformation", m, "streams", len(s.deltas))
}
