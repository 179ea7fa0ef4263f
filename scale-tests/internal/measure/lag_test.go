package measure

import (
	"testing"
	"time"
)

func TestComputeLagMatchesWritesWithPushes(t *testing.T) {
	ms := int64(time.Millisecond)
	events := []UpstreamEvent{
		{Service: 1, Addr: "127.1.0.1", Added: true, Push: 1000 * ms},
		{Service: 1, Addr: "127.1.0.2", Push: 1000 * ms},
		{Service: 2, Addr: "127.1.0.3", Added: true, Push: 2000 * ms},
		{Service: 2, Addr: "127.1.0.4", Added: true}, // never pushed
	}
	samples := []ApplySample{
		{Node: 0, Addr: "127.1.0.1", Added: true, At: 1100 * ms},
		{Node: 0, Addr: "127.1.0.1", Added: true, At: 1100 * ms}, // second port: same write
		{Node: 1, Addr: "127.1.0.1", Added: true, At: 1300 * ms},
		{Node: 0, Addr: "127.1.0.2", At: 1050 * ms},
		{Node: 0, Addr: "127.1.0.3", Added: true, At: 2010 * ms},
		{Node: 0, Addr: "127.1.0.9", Added: true, At: 2010 * ms}, // initial sync
	}
	res := ComputeLag(events, samples, func(int) int { return 2 })
	if res.Samples != 4 || res.Unmatched != 1 || res.Expected != 6 {
		t.Fatalf("samples %d unmatched %d expected %d, want 4, 1, 6", res.Samples, res.Unmatched, res.Expected)
	}
	if res.MaxMs != 300 || res.P50Ms != 50 || res.CDF[0] != 10 {
		t.Errorf("max %v p50 %v min %v, want 300, 50, 10", res.MaxMs, res.P50Ms, res.CDF[0])
	}
}

func TestPushedBetweenKeepsTheWindowsChanges(t *testing.T) {
	ms := int64(time.Millisecond)
	events := []UpstreamEvent{
		{Service: 1, Addr: "127.1.0.1", Added: true, Push: 900 * ms},  // before
		{Service: 1, Addr: "127.1.0.2", Added: true, Push: 1000 * ms}, // first instant
		{Service: 2, Addr: "127.1.0.3", Push: 1500 * ms},
		{Service: 2, Addr: "127.1.0.4", Added: true, Push: 2000 * ms}, // last instant
		{Service: 3, Addr: "127.1.0.5", Added: true, Push: 2001 * ms}, // after
		{Service: 3, Addr: "127.1.0.6", Added: true},                  // never pushed
	}
	got := PushedBetween(events, 1000*ms, 2000*ms)
	if len(got) != 3 || got[0].Addr != "127.1.0.2" || got[1].Addr != "127.1.0.3" || got[2].Addr != "127.1.0.4" {
		t.Fatalf("PushedBetween = %+v, want 127.1.0.2, .3, .4", got)
	}
	// The window's lag: a write of an earlier change is not its sample.
	samples := []ApplySample{
		{Node: 0, Addr: "127.1.0.1", Added: true, At: 950 * ms},
		{Node: 0, Addr: "127.1.0.2", Added: true, At: 1400 * ms},
		{Node: 0, Addr: "127.1.0.3", At: 1600 * ms},
		{Node: 0, Addr: "127.1.0.4", Added: true, At: 2010 * ms},
	}
	lag := ComputeLag(got, samples, func(int) int { return 1 })
	if lag.Samples != 3 || lag.MaxMs != 400 || lag.P50Ms != 100 {
		t.Errorf("window lag: %d samples, max %v, p50 %v; want 3, 400, 100", lag.Samples, lag.MaxMs, lag.P50Ms)
	}
}
