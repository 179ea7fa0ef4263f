package nodeagent

import (
	"log/slog"
	"testing"
	"time"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/nodeagent/etcdsource"
)

// TestCountsAgreeWithStats: Counts reads the same figures as Stats.
func TestCountsAgreeWithStats(t *testing.T) {
	a := benchAgent(t)
	a.m.events.Add(3)
	a.m.coalesced.Add(1)
	a.m.flushes.Add(2)
	a.m.missesUnknown.Add(4)
	a.m.throttled.Add(int64(500 * time.Millisecond))
	st, c := a.Stats(), a.Counts()
	if c.Events != st.Events || c.Coalesced != st.Coalesced || c.Flushes != st.Flushes ||
		c.MissesUnknown != st.MissesUnknown || c.Throttled != st.Throttled || c.Events != 3 || c.Throttled != 500*time.Millisecond {
		t.Fatalf("counts %+v disagree with stats %+v", c, st)
	}
	if c.Services != st.Source.Services || c.Source.Lists != st.Source.Lists || c.Ready != st.Ready {
		t.Fatalf("counts %+v disagree with stats %+v", c, st)
	}
}

// benchAgent is an agent of 50 declared services, not running.
func benchAgent(tb testing.TB) *Agent {
	svcs := make([]keyspace.Service, 50)
	for i := range svcs {
		svcs[i] = keyspace.Service{Namespace: "ns", Name: string(rune('a' + i))}
	}
	a, err := New(struct{ etcdsource.Client }{}, newMemory(), Options{Cluster: testCluster, Services: svcs, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// BenchmarkCounts is the cost of one Agent.Counts call, which the scale
// harness makes for every agent of a pool every second instead of Stats.
func BenchmarkCounts(b *testing.B) {
	a := benchAgent(b)
	a.m.events.Add(3)
	b.ReportAllocs()
	for b.Loop() {
		if c := a.Counts(); c.Events != 3 {
			b.Fatalf("counts %+v: want 3 events", c)
		}
	}
}

// BenchmarkStats is the cost of one Agent.Stats call.
func BenchmarkStats(b *testing.B) {
	a := benchAgent(b)
	a.m.events.Add(3)
	a.m.lag.Observe(0.05)
	b.ReportAllocs()
	for b.Loop() {
		if st := a.Stats(); st.Events != 3 || st.Lag.Count != 1 {
			b.Fatalf("stats %+v: want 3 events, 1 lag sample", st)
		}
	}
}
