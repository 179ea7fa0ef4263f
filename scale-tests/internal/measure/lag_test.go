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
