package etcdsource

import (
	"context"
	"log/slog"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/meshrelay/meshrelay/internal/backoff"
)

// watchStream carries the Source's watches over one etcd Watch RPC
// and hands each response to its watch's channel, or function (WatchFunc),
// from the goroutine that receives it.
//
// clientv3's Watcher passes every response through three goroutines of its
// own (its receiver, its dispatcher and one per watch) before the watch's
// channel. An agent holds about 50 watches and a change of a service most
// nodes use reaches every agent at once, so those hand-offs were a large
// share of an agent's CPU per change (ARCHITECTURE.md). Every watch of
// the Source uses it, so an agent has one watch stream on etcd.
//
// It keeps the parts of clientv3's contract the Source relies on:
//   - when the stream fails, it is opened again (with backoff) and every
//     watch is created again from the revision after its last complete
//     response, so a connection lost and found again loses no event;
//   - a response split into fragments is delivered whole;
//   - a watch etcd ends (its start revision compacted, or cancelled) gets
//     a last response saying so (CompactRevision, or Canceled), then its
//     channel is closed;
//   - a watch whose context ends is cancelled on etcd, and its channel is
//     left alone (its reader has gone).
//
// A watch's channel is buffered; when it is full the receiving goroutine
// waits for its reader (or its context), as etcd's stream would wait for a
// slow client.
type watchStream struct {
	wc  pb.WatchClient
	log *slog.Logger

	mu      sync.Mutex
	stream  pb.Watch_WatchClient // nil while (re)connecting
	nextID  int64
	watches map[int64]*streamWatch
	opened  int // streams opened so far

	// reopened, when set, is called each time a stream is opened after
	// the first (guarded by mu; set it before run).
	reopened func()
}

// streamWatch is one watch of a watchStream.
type streamWatch struct {
	id       int64
	key, end string
	noDelete bool // filter out deletions
	// next is the revision to create the watch from: its start, then the
	// one after the last event of its last complete response.
	next int64
	// Each response goes to ch, or, for a watch made by WatchFunc, to fn
	// on the stream's receiving goroutine.
	ch   chan clientv3.WatchResponse
	fn   func(resp clientv3.WatchResponse, ok bool)
	done <-chan struct{} // the watch's context
	// frag holds the events of a fragmented response until its last part.
	frag []*mvccpb.Event
}

// streamWatchBuffer is the responses a watch's channel holds.
const streamWatchBuffer = 16

func newWatchStream(conn grpc.ClientConnInterface, log *slog.Logger) *watchStream {
	return &watchStream{wc: pb.NewWatchClient(conn), log: log, nextID: 1, watches: map[int64]*streamWatch{}}
}

// Watch watches the keys in [key, end) (the key alone when end is empty)
// from revision rev until ctx is done or etcd ends the watch; noDelete
// filters deletions out. The responses have the fields the Source reads:
// Header, Events, CompactRevision, Canceled and CancelReason. It may be
// called before run: the watch is created when the stream opens.
func (m *watchStream) Watch(ctx context.Context, key, end string, rev int64, noDelete bool) clientv3.WatchChan {
	w := &streamWatch{key: key, end: end, noDelete: noDelete, next: rev,
		ch: make(chan clientv3.WatchResponse, streamWatchBuffer), done: ctx.Done()}
	m.add(ctx, w)
	return w.ch
}

// WatchFunc is Watch with a function instead of a channel: the stream's
// receiving goroutine calls fn(resp, true) with each response the channel
// would carry, in order, and fn(zero, false) where the channel would be
// closed without a last response (the stream's run ended). It is never
// called after ctx is done and a call in progress returned; fn must not
// block for long, as it holds up every watch of the stream (the stream
// waits for fn as it waits for a full channel).
//
// It saves the hand-off to the watch's goroutine: a change of a service
// reaches the agent's queue from the goroutine that received it.
func (m *watchStream) WatchFunc(ctx context.Context, key, end string, rev int64, noDelete bool, fn func(resp clientv3.WatchResponse, ok bool)) {
	m.add(ctx, &streamWatch{key: key, end: end, noDelete: noDelete, next: rev, fn: fn, done: ctx.Done()})
}

// add registers w, creates it on the stream when one is open, and cancels
// it when ctx is done.
func (m *watchStream) add(ctx context.Context, w *streamWatch) {
	m.mu.Lock()
	w.id = m.nextID
	m.nextID++
	m.watches[w.id] = w
	if m.stream != nil {
		m.sendLocked(createRequest(w))
	}
	m.mu.Unlock()
	context.AfterFunc(ctx, func() { m.cancel(w) })
}

// cancel forgets w and cancels it on etcd.
func (m *watchStream) cancel(w *streamWatch) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.watches[w.id] != w {
		return // etcd ended it first
	}
	delete(m.watches, w.id)
	if m.stream != nil {
		m.sendLocked(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{
			CancelRequest: &pb.WatchCancelRequest{WatchId: w.id}}})
	}
}

func createRequest(w *streamWatch) *pb.WatchRequest {
	cr := &pb.WatchCreateRequest{Key: []byte(w.key), StartRevision: w.next, WatchId: w.id, Fragment: true}
	if w.end != "" {
		cr.RangeEnd = []byte(w.end)
	}
	if w.noDelete {
		cr.Filters = []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NODELETE}
	}
	return &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: cr}}
}

// sendLocked sends req on the current stream. A failed send needs nothing
// more: the stream's receive fails too, and the stream is opened again
// with every watch.
func (m *watchStream) sendLocked(req *pb.WatchRequest) {
	if err := m.stream.Send(req); err != nil {
		m.log.Debug("etcd watch stream send failed", "err", err)
	}
}

// run keeps a stream open until ctx is done, then closes the channels of
// the watches left.
func (m *watchStream) run(ctx context.Context) {
	defer m.closeAll()
	b := backoff.New(backoff.Options{Initial: 100 * time.Millisecond, Max: 5 * time.Second})
	for ctx.Err() == nil {
		start := time.Now()
		err := m.serve(ctx)
		if ctx.Err() != nil {
			return
		}
		m.log.Warn("etcd watch stream failed, opening it again", "err", err)
		if time.Since(start) > retryResetAfter {
			b.Reset()
		}
		if !b.Wait(ctx) {
			return
		}
	}
}

// serve opens a stream, creates every watch on it and delivers its
// responses until it fails.
func (m *watchStream) serve(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := m.wc.Watch(sctx, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.stream = st
	m.opened++
	reopened := m.reopened
	if m.opened == 1 {
		reopened = nil
	}
	for _, w := range m.watches {
		w.frag = nil
		m.sendLocked(createRequest(w))
	}
	m.mu.Unlock()
	if reopened != nil {
		reopened()
	}
	defer func() {
		m.mu.Lock()
		m.stream = nil
		m.mu.Unlock()
	}()
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		m.handle(resp)
	}
}

// handle delivers one response to its watch.
func (m *watchStream) handle(resp *pb.WatchResponse) {
	m.mu.Lock()
	w := m.watches[resp.WatchId]
	if w == nil {
		m.mu.Unlock()
		return // cancelled by its reader meanwhile
	}
	out := clientv3.WatchResponse{Header: resp.Header}
	if out.Header == nil {
		out.Header = new(pb.ResponseHeader)
	}
	last := false
	switch {
	case resp.Canceled || resp.CompactRevision != 0:
		// etcd ended the watch: a compacted start revision, or a refusal
		// (a create that failed has Created too).
		delete(m.watches, w.id)
		out.CompactRevision, out.Canceled, out.CancelReason = resp.CompactRevision, true, resp.CancelReason
		last = true
	case resp.Created:
		m.mu.Unlock()
		return
	case resp.Fragment:
		w.frag = append(w.frag, resp.Events...)
		m.mu.Unlock()
		return
	default:
		out.Events = resp.Events
		if len(w.frag) > 0 {
			out.Events = append(w.frag, resp.Events...)
			w.frag = nil
		}
		if n := len(out.Events); n > 0 {
			w.next = out.Events[n-1].Kv.ModRevision + 1
		}
	}
	m.mu.Unlock()
	if w.fn != nil {
		select {
		case <-w.done:
		default:
			w.fn(out, true)
		}
		return
	}
	select {
	case w.ch <- out:
	case <-w.done:
	}
	if last {
		close(w.ch)
	}
}

// closeAll closes the channels of the watches left when run ends (and
// tells the functions of those made by WatchFunc, after unlocking).
func (m *watchStream) closeAll() {
	var fns []func(clientv3.WatchResponse, bool)
	m.mu.Lock()
	for id, w := range m.watches {
		delete(m.watches, id)
		if w.fn != nil {
			fns = append(fns, w.fn)
			continue
		}
		close(w.ch)
	}
	m.mu.Unlock()
	for _, fn := range fns {
		fn(clientv3.WatchResponse{}, false)
	}
}
