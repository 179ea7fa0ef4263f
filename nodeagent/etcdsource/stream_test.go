package etcdsource

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
)

// startStream runs a watchStream on c's connection until the test ends.
func startStream(t *testing.T, c *clientv3.Client) *watchStream {
	t.Helper()
	m := newWatchStream(c.ActiveConnection(), slog.New(slog.NewTextHandler(t.Output(), nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return m
}

// next returns the next response of wch, failing the test after 10 s.
func next(t *testing.T, wch clientv3.WatchChan) (clientv3.WatchResponse, bool) {
	t.Helper()
	select {
	case resp, ok := <-wch:
		return resp, ok
	case <-time.After(10 * time.Second):
		t.Fatal("no watch response in 10 s")
		return clientv3.WatchResponse{}, false
	}
}

// keysOf returns the keys of resp's events, in order.
func keysOf(resp clientv3.WatchResponse) []string {
	var ks []string
	for _, ev := range resp.Events {
		ks = append(ks, string(ev.Kv.Key))
	}
	return ks
}

// TestStreamResumesAfterCut: the stream's connection is cut while keys are
// written; the stream is opened again and the watch resumes after its last
// event: every write arrives once, in order.
func TestStreamResumesAfterCut(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	writer := testenv.Client(t, srv.Endpoints())
	px := startProxy(t, srv.Endpoints()[0])
	c := testenv.Client(t, []string{px.URL()})
	m := startStream(t, c)
	reopened := make(chan struct{}, 10)
	m.mu.Lock()
	m.reopened = func() { reopened <- struct{}{} }
	m.mu.Unlock()

	r0, err := writer.Put(ctxT(t), "/p/a", "1")
	if err != nil {
		t.Fatal(err)
	}
	wch := m.Watch(ctxT(t), "/p/", clientv3.GetPrefixRangeEnd("/p/"), r0.Header.Revision, false)
	if resp, _ := next(t, wch); strings.Join(keysOf(resp), ",") != "/p/a" {
		t.Fatalf("first response %v, want /p/a", keysOf(resp))
	}

	px.SetDown(true)
	for _, k := range []string{"/p/b", "/p/c", "/other", "/p/d"} {
		if _, err := writer.Put(ctxT(t), k, "1"); err != nil {
			t.Fatal(err)
		}
	}
	px.SetDown(false)

	var got []string
	for len(got) < 3 {
		resp, ok := next(t, wch)
		if !ok || resp.Err() != nil {
			t.Fatalf("watch ended (open %v, err %v) after %v", ok, resp.Err(), got)
		}
		got = append(got, keysOf(resp)...)
	}
	if strings.Join(got, ",") != "/p/b,/p/c,/p/d" {
		t.Fatalf("after the cut: %v, want /p/b,/p/c,/p/d once each", got)
	}
	m.mu.Lock()
	opened := m.opened
	m.mu.Unlock()
	if opened < 2 {
		t.Fatalf("stream opened %d times, want it opened again after the cut", opened)
	}
	if len(reopened) != opened-1 {
		t.Fatalf("reopened called %d times for %d openings, want one per opening after the first", len(reopened), opened)
	}
}

// TestStreamMergesFragments: a response larger than etcd's request limit
// comes in fragments; the watch gets it whole.
func TestStreamMergesFragments(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 3 MiB to etcd")
	}
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	m := startStream(t, c)
	var first int64
	big := strings.Repeat("x", 1<<20)
	for i, k := range []string{"/f/a", "/f/b", "/f/c"} {
		r, err := c.Put(ctxT(t), k, big)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = r.Header.Revision
		}
	}
	// A watch from the past gets the three revisions in one response,
	// over etcd's 1.5 MiB limit: etcd sends it in fragments.
	resp, _ := next(t, m.Watch(ctxT(t), "/f/", clientv3.GetPrefixRangeEnd("/f/"), first, false))
	if got := strings.Join(keysOf(resp), ","); got != "/f/a,/f/b,/f/c" {
		t.Fatalf("first response holds %v, want the three events whole", keysOf(resp))
	}
}

// TestStreamEndsCompactedWatch: a watch from a compacted revision gets a
// response with the compaction, then its channel closes.
func TestStreamEndsCompactedWatch(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	m := startStream(t, c)
	r1, _ := c.Put(ctxT(t), "/c/a", "1")
	r2, err := c.Put(ctxT(t), "/c/a", "2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compact(ctxT(t), r2.Header.Revision); err != nil {
		t.Fatal(err)
	}
	wch := m.Watch(ctxT(t), "/c/", clientv3.GetPrefixRangeEnd("/c/"), r1.Header.Revision, false)
	resp, ok := next(t, wch)
	if !ok || resp.CompactRevision != r2.Header.Revision || resp.Err() == nil {
		t.Fatalf("response %+v (open %v), want compaction at %d", resp, ok, r2.Header.Revision)
	}
	if _, ok := next(t, wch); ok {
		t.Fatal("channel still open after the compaction")
	}
}

// TestStreamCancelsOnContext: a watch whose context ends is cancelled on
// etcd (its watcher goes), and deliveries to other watches go on.
func TestStreamCancelsOnContext(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	m := startStream(t, c)
	watchers0 := gauge(t, "etcd_debugging_mvcc_watcher_total")
	r, err := c.Put(ctxT(t), "/x/a", "1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	gone := m.Watch(ctx, "/x/", clientv3.GetPrefixRangeEnd("/x/"), r.Header.Revision+1, false)
	kept := m.Watch(ctxT(t), "/x/", clientv3.GetPrefixRangeEnd("/x/"), r.Header.Revision+1, false)
	testenv.EventuallyTrue(t, "two watchers", func() bool {
		return gauge(t, "etcd_debugging_mvcc_watcher_total")-watchers0 == 2
	})
	cancel()
	testenv.EventuallyTrue(t, "the cancelled watcher gone from etcd", func() bool {
		return gauge(t, "etcd_debugging_mvcc_watcher_total")-watchers0 == 1
	})
	// The cancelled watch's full channel must not block the others.
	for i := range streamWatchBuffer + 4 {
		if _, err := c.Put(ctxT(t), "/x/a", string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
		if resp, _ := next(t, kept); len(resp.Events) != 1 {
			t.Fatalf("write %d: %d events, want 1", i, len(resp.Events))
		}
	}
	select {
	case resp, ok := <-gone:
		if ok {
			t.Fatalf("cancelled watch got %v", keysOf(resp))
		}
	default:
	}
}

// TestStreamWatchFunc: a watch made by WatchFunc gets the responses a
// channel would carry, in order, from the stream's goroutine, alongside a
// channel watch of the same keys; none after its context ends; and
// ok == false once when the stream's run ends.
func TestStreamWatchFunc(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	m := newWatchStream(c.ActiveConnection(), slog.New(slog.NewTextHandler(t.Output(), nil)))
	runCtx, stopRun := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); m.run(runCtx) }()
	defer func() { stopRun(); <-ran }()

	r, err := c.Put(ctxT(t), "/f/a", "0")
	if err != nil {
		t.Fatal(err)
	}
	type call struct {
		keys []string
		ok   bool
	}
	calls := make(chan call, 64)
	record := func(resp clientv3.WatchResponse, ok bool) { calls <- call{keysOf(resp), ok} }
	fctx, cancelF := context.WithCancel(ctxT(t))
	m.WatchFunc(fctx, "/f/", clientv3.GetPrefixRangeEnd("/f/"), r.Header.Revision+1, false, record)
	ended := make(chan call, 4)
	m.WatchFunc(ctxT(t), "/g", "", r.Header.Revision+1, false, func(resp clientv3.WatchResponse, ok bool) {
		ended <- call{keysOf(resp), ok}
	})
	wch := m.Watch(ctxT(t), "/f/", clientv3.GetPrefixRangeEnd("/f/"), r.Header.Revision+1, false)

	for _, k := range []string{"/f/a", "/f/b", "/f/c"} {
		if _, err := c.Put(ctxT(t), k, "1"); err != nil {
			t.Fatal(err)
		}
		resp, _ := next(t, wch) // the channel watch got it: so did the function, first or soon
		select {
		case got := <-calls:
			if !got.ok || len(got.keys) != 1 || got.keys[0] != k || keysOf(resp)[0] != k {
				t.Fatalf("put %s: function got %+v, channel %v", k, got, keysOf(resp))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("put %s: the function was not called", k)
		}
	}
	cancelF()
	testenv.EventuallyTrue(t, "the cancelled watch gone from the stream", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.watches) == 2
	})
	if _, err := c.Put(ctxT(t), "/f/d", "1"); err != nil {
		t.Fatal(err)
	}
	next(t, wch)
	select {
	case got := <-calls:
		t.Fatalf("called after its context ended: %+v", got)
	default:
	}

	stopRun()
	<-ran
	select {
	case got := <-ended:
		if got.ok || len(got.keys) != 0 {
			t.Fatalf("at the stream's end: %+v, want ok == false and no response", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the function was not told that the stream ended")
	}
	if len(ended) != 0 {
		t.Fatalf("told %d more times", len(ended))
	}
}

// TestProbeJitter: periodic probes fall in [d/2, d] and do spread.
func TestProbeJitter(t *testing.T) {
	const d = 5 * time.Minute
	lo, hi := d, time.Duration(0)
	for range 1000 {
		j := probeJitter(d)
		if j < d/2 || j > d {
			t.Fatalf("probeJitter(%v) = %v, outside [%v, %v]", d, j, d/2, d)
		}
		lo, hi = min(lo, j), max(hi, j)
	}
	if hi-lo < d/4 {
		t.Fatalf("1,000 draws within %v of each other: not spread", hi-lo)
	}
}

// TestFollowStreamEndIsNotAFailure: when the watch stream's run ends (the
// Source's context is done, the watch's own may not look done yet), follow
// returns errWatchClosed, which runWatch does not report as a failed
// watch to re-list.
func TestFollowStreamEndIsNotAFailure(t *testing.T) {
	s := New(nil, Options{})
	s.stream = newWatchStream(nil, slog.New(slog.DiscardHandler)) // never run: nothing is sent
	svc := keyspace.Service{Namespace: "ns", Name: "a"}
	w := newWatch(svc, 0, limits{})
	s.watches[svc] = w
	done := make(chan error, 1)
	go func() { done <- s.follow(ctxT(t), w, 1) }()
	testenv.EventuallyTrue(t, "the watch registered on the stream", func() bool {
		s.stream.mu.Lock()
		defer s.stream.mu.Unlock()
		return len(s.stream.watches) == 1
	})
	s.stream.closeAll()
	select {
	case err := <-done:
		if !errors.Is(err, errWatchClosed) {
			t.Fatalf("follow returned %v, want errWatchClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not return when the stream ended")
	}
}
