package istiodsim

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"

	"github.com/cespare/xxhash/v2"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshrelay/meshrelay/internal/mailbox"
)

// StreamAggregatedResources serves one State-of-the-World ADS stream.
func (a *adsServer) StreamAggregatedResources(ss grpc.BidiStreamingServer[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]) error {
	return a.sim.serveSotW(ss)
}

// sotwStream is one SotW ADS stream. Its goroutine (serveSotW) is the only
// one that sends on the stream and changes watches; other goroutines only
// append to queue and signal wake.
type sotwStream struct {
	id   uint64
	sim  *Sim
	ss   grpc.ServerStream
	node string
	// wake has capacity 1: a send means "queue may be non-empty".
	wake chan struct{}

	mu sync.Mutex // guards the fields below
	// queue holds pushes and malformed responses not yet sent, in order;
	// consecutive pushes are merged, so its length stays small.
	queue []queued
	// busy is set while the goroutine handles a request or the queue.
	busy    bool
	watches [numTypes]*watch
}

// queued is one entry of a stream's queue: a push or a malformed response.
type queued struct {
	push      *pushRequest
	malformed *malformedResponse
}

// watch is a stream's state for one type.
type watch struct {
	// names are the subscribed resource names of a named type, also sorted
	// and hashed for the body cache.
	names  map[string]struct{}
	sorted []string
	hash   uint64
	// nonceSent and versionSent are those of the last response sent.
	nonceSent   string
	versionSent string
	// nonceAnswered is the nonce of the last ACK or NACK received.
	nonceAnswered string
}

func (w *watch) subscribe(names []string) {
	w.names = make(map[string]struct{}, len(names))
	for _, n := range names {
		w.names[n] = struct{}{}
	}
	w.sorted = slices.Sorted(func(yield func(string) bool) {
		for n := range w.names {
			if !yield(n) {
				return
			}
		}
	})
	h := xxhash.New()
	for _, n := range w.sorted {
		_, _ = h.WriteString(n)
		_, _ = h.Write([]byte{0})
	}
	w.hash = h.Sum64()
}

// sameNames reports whether names, as a set, are the subscribed names.
func (w *watch) sameNames(names []string) bool {
	set := make(map[string]struct{}, len(names))
	for _, n := range names {
		if _, ok := w.names[n]; !ok {
			return false
		}
		set[n] = struct{}{}
	}
	return len(set) == len(w.names)
}

// enqueue adds an item to the stream's queue and wakes its goroutine. It
// never blocks.
func (st *sotwStream) enqueue(q queued) {
	st.mu.Lock()
	if n := len(st.queue); n > 0 && q.push != nil && st.queue[n-1].push != nil {
		st.queue[n-1].push = st.queue[n-1].push.merge(q.push)
	} else {
		st.queue = append(st.queue, q)
	}
	st.mu.Unlock()
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

func (s *Sim) serveSotW(ss grpc.BidiStreamingServer[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]) error {
	s.mu.Lock()
	s.nextID++
	st := &sotwStream{id: s.nextID, sim: s, ss: ss, wake: make(chan struct{}, 1)}
	s.streams[st] = struct{}{}
	s.mu.Unlock()
	s.streamsTotal.Add(1)
	defer func() {
		s.mu.Lock()
		delete(s.streams, st)
		s.mu.Unlock()
	}()

	handle := func(req *discoveryv3.DiscoveryRequest) error {
		st.setBusy(true)
		defer st.setBusy(false)
		return st.handle(req)
	}
	err := serveLoop(ss.Context(), ss.Recv, st.wake, handle, st.drain)
	if err != nil {
		s.log.Debug("istiodsim stream ends", "stream", st.id, "node", st.node, "err", err)
	}
	return err
}

func (st *sotwStream) setBusy(b bool) {
	st.mu.Lock()
	st.busy = b
	st.mu.Unlock()
}

// handle answers one request the way Istiod does.
func (st *sotwStream) handle(req *discoveryv3.DiscoveryRequest) error {
	s := st.sim
	if st.node == "" {
		id := req.GetNode().GetId()
		if err := validateNodeID(id); err != nil {
			s.violate("stream %d: first request has no valid node id: %v", st.id, err)
			return status.Errorf(codes.InvalidArgument, "node id: %v", err)
		}
		st.node = id
		s.log.Debug("istiodsim stream", "stream", st.id, "node", id)
	}
	t, ok := typeOf(req.GetTypeUrl())
	if !ok {
		// Istiod has no generator for such a type and does not answer.
		s.log.Warn("istiodsim: request for a type not served", "stream", st.id, "type", req.GetTypeUrl())
		return nil
	}
	w := st.watches[t]
	if detail := req.GetErrorDetail(); detail != nil {
		s.recordNack(Nack{
			Stream:  st.id,
			Node:    st.node,
			TypeURL: t.url(),
			Version: req.GetVersionInfo(),
			Nonce:   req.GetResponseNonce(),
			Code:    codes.Code(detail.GetCode()),
			Message: detail.GetMessage(),
		})
		if w != nil && req.GetResponseNonce() == w.nonceSent {
			st.answered(w, req.GetResponseNonce())
		}
		return nil
	}
	if w == nil {
		// A new watch, on a new stream or after a reconnect: always answered,
		// whatever version or nonce the client remembers.
		w = &watch{}
		if !t.wildcard() {
			if len(req.GetResourceNames()) == 0 {
				s.violate("stream %d (%s): first %s request has no resource names: it subscribes to nothing", st.id, st.node, t)
			}
			w.subscribe(req.GetResourceNames())
		}
		st.mu.Lock()
		st.watches[t] = w
		st.mu.Unlock()
		return st.respond(t, nil, true)
	}
	if req.GetResponseNonce() != w.nonceSent {
		// A newer response is on its way: Istiod ignores the request (the
		// client will answer the newer one, names included).
		s.stale.Add(1)
		return nil
	}
	st.answered(w, req.GetResponseNonce())
	if t.wildcard() || w.sameNames(req.GetResourceNames()) {
		return nil // a plain ACK
	}
	if len(req.GetResourceNames()) == 0 {
		s.violate("stream %d (%s): %s request with no resource names unsubscribes everything", st.id, st.node, t)
	}
	w.subscribe(req.GetResourceNames())
	// Istiod answers a subscription change with every subscribed resource.
	return st.respond(t, nil, true)
}

func (st *sotwStream) answered(w *watch, nonce string) {
	st.mu.Lock()
	w.nonceAnswered = nonce
	st.mu.Unlock()
}

// drain sends everything queued.
func (st *sotwStream) drain() error {
	st.mu.Lock()
	items := st.queue
	st.queue = nil
	st.busy = true
	st.mu.Unlock()
	defer st.setBusy(false)
	for _, it := range items {
		var err error
		if it.push != nil {
			err = st.push(it.push)
		} else {
			err = st.sendMalformed(it.malformed)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// push sends what p asks for of every type the stream watches, in Istiod's
// order (CDS, EDS, LDS, RDS).
func (st *sotwStream) push(p *pushRequest) error {
	for t := range numTypes {
		if st.watches[t] == nil {
			continue
		}
		var err error
		switch {
		case p.full.has(t):
			err = st.respond(t, nil, false)
		case t == edsType && len(p.clusters) > 0:
			err = st.respond(t, p.clusters, false)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// respond sends the latest snapshot's resources of type t: all of them for
// a wildcard type; for a named type, the subscribed ones, or the subscribed
// ones among changed when changed is not nil. A named response with no
// resources is sent only if always is set (answers to requests).
func (st *sotwStream) respond(t xdsType, changed []string, always bool) error {
	if st.sim.withheld[t].Load() {
		return nil
	}
	sn := st.sim.snap.Load()
	w := st.watches[t]
	var (
		key       bodyKey
		resources func() []*anypb.Any
	)
	if t.wildcard() {
		key = bodyKey{t: t, wildcard: true}
		resources = func() []*anypb.Any { return sn.all(t) }
	} else {
		names := w.sorted
		if changed != nil {
			names = intersect(changed, w.names)
		}
		list := make([]*anypb.Any, 0, len(names))
		h := xxhash.New()
		for _, n := range names {
			if a := sn.lookup(t, n); a != nil {
				list = append(list, a)
				_, _ = h.WriteString(n)
				_, _ = h.Write([]byte{0})
			}
		}
		if len(list) == 0 && !always {
			return nil
		}
		key = bodyKey{t: t, names: h.Sum64(), count: len(list)}
		resources = func() []*anypb.Any { return list }
	}
	body, err := sn.body(key, resources)
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	return st.send(w, &encodedResponse{body: body, nonce: st.sim.nonce(sn)}, sn.version)
}

func (st *sotwStream) send(w *watch, r *encodedResponse, version string) error {
	if err := st.ss.SendMsg(r); err != nil {
		return err
	}
	st.mu.Lock()
	w.nonceSent, w.versionSent = r.nonce, version
	st.mu.Unlock()
	st.sim.responses.Add(1)
	st.sim.bytes.Add(uint64(r.size()))
	return nil
}

// intersect returns the names of sorted that are in set, in order.
func intersect(sorted []string, set map[string]struct{}) []string {
	var out []string
	for _, n := range sorted {
		if _, ok := set[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

// request is what serveLoop needs of a SotW or delta request.
type request interface {
	GetTypeUrl() string
	GetErrorDetail() *statuspb.Status
	GetResponseNonce() string
}

// serveLoop is the goroutine of one stream: it handles the requests recv
// reads and the wake-ups of pushes until the client ends the stream (nil),
// ctx ends, or handling fails (its error).
func serveLoop[T request](ctx context.Context, recv func() (T, error), wake <-chan struct{}, handle func(T) error, drain func() error) error {
	reqs, recvErr := receiveRequests(ctx, recv)
	for {
		var err error
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case err = <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-reqs.Ready():
			for req, ok := reqs.Pop(); ok && err == nil; req, ok = reqs.Pop() {
				err = handle(req)
			}
		case <-wake:
			err = drain()
		}
		if err != nil {
			return err
		}
	}
}

// receiveRequests reads a stream's requests with recv on a goroutine of its
// own until recv fails (the error goes to the channel) or ctx ends. Like
// Istiod, it keeps reading while the stream's goroutine is blocked sending:
// a client that waits for its request to be read before it receives again
// must not deadlock the stream. Requests not handled yet wait in the
// mailbox: the latest request per type URL, which is all Istiod acts on,
// and every NACK (one per nonce: as many as responses were sent, so they
// are recorded). The first request (it carries the node) is never
// replaced.
func receiveRequests[T request](ctx context.Context, recv func() (T, error)) (*mailbox.Mailbox[string, T], <-chan error) {
	reqs := mailbox.New[string, T]()
	recvErr := make(chan error, 1)
	go func() {
		for first := true; ; first = false {
			req, err := recv()
			if err != nil {
				recvErr <- err
				return
			}
			key := req.GetTypeUrl()
			switch {
			case first:
				key = "\x00first"
			case req.GetErrorDetail() != nil:
				key += " nack " + req.GetResponseNonce()
			}
			reqs.Put(key, req)
			if ctx.Err() != nil {
				return
			}
		}
	}()
	return reqs, recvErr
}
