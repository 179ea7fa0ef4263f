package measure

import (
	"testing"
	"time"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

func sliceBytes(t *testing.T, observed int64, addrs ...string) []byte {
	t.Helper()
	sl := &v1.EndpointSlice{ObservedUnixNano: observed}
	for _, a := range addrs {
		sl.Endpoints = append(sl.Endpoints, &v1.Endpoint{Address: a, Port: 8080, Weight: 1})
	}
	b, err := model.Marshal(sl)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStagesSplitTheLag: a change pushed at 1000 ms, received by the relay
// at 1010, sent to etcd at 1022, committed at 1030, delivered at 1040 and 1070 to two nodes,
// applied at 1045 and 1100, splits into those stages; the commit log diffs
// a slice with its previous value to find the addresses that changed.
func TestStagesSplitTheLag(t *testing.T) {
	ms := int64(time.Millisecond)
	space := keyspace.New("c")
	svc := keyspace.Service{Namespace: "ns", Name: "a"}
	key := space.Slice(svc, 0)
	log := NewCommitLog("c")
	log.Add(5, time.Unix(0, 490*ms), time.Unix(0, 500*ms), []string{key, space.Spec(svc)}, [][]byte{sliceBytes(t, 400*ms, "127.1.0.1"), []byte("spec")})
	log.Add(9, time.Unix(0, 1022*ms), time.Unix(0, 1030*ms), []string{key}, [][]byte{sliceBytes(t, 1010*ms, "127.1.0.2")})

	commits := log.Since(1000 * ms)
	if len(commits) != 2 {
		t.Fatalf("commits since 1000 ms: %+v, want the add of .2 and the removal of .1", commits)
	}
	for _, c := range commits {
		if c.Rev != 9 || c.Observed != 1010*ms || c.Sent != 1022*ms || c.At != 1030*ms || c.Service != "ns/a" || c.Added != (c.Addr == "127.1.0.2") {
			t.Fatalf("commit %+v", c)
		}
	}

	events := []UpstreamEvent{{Service: 1, Addr: "127.1.0.2", Added: true, Push: 1000 * ms}}
	deliveries := []Delivery{
		{Node: 0, Service: "ns/a", Rev: 5, At: 600 * ms}, // an older revision
		{Node: 0, Service: "ns/a", Rev: 9, At: 1040 * ms},
		{Node: 1, Service: "ns/a", Rev: 9, At: 1070 * ms},
	}
	samples := []ApplySample{
		{Node: 0, Addr: "127.1.0.2", Added: true, At: 1045 * ms},
		{Node: 1, Addr: "127.1.0.2", Added: true, At: 1100 * ms},
		{Node: 2, Addr: "127.1.0.2", Added: true, At: 1100 * ms}, // no delivery recorded
	}
	stages, byHolders, n := ComputeStages(events, commits, deliveries, samples, func(int) int { return 3 })
	if n != 2 || len(stages) != 5 {
		t.Fatalf("%d pairs, %d stages, want 2 and 5", n, len(stages))
	}
	if len(byHolders) != 1 || byHolders[0].Min != 1 || byHolders[0].Samples != 2 || byHolders[0].Stages[4].MaxMs != 30 {
		t.Fatalf("by holders %+v, want the 1–9 bucket with both pairs", byHolders)
	}
	want := []struct{ p50, max float64 }{{10, 10}, {12, 12}, {8, 8}, {10, 40}, {5, 30}}
	for i, st := range stages {
		if st.P50Ms != want[i].p50 || st.MaxMs != want[i].max {
			t.Errorf("%s: p50 %v max %v, want %v and %v", st.Name, st.P50Ms, st.MaxMs, want[i].p50, want[i].max)
		}
	}
}
