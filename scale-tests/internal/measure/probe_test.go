package measure

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// TestProbeSettleLater: samples computed after the scenario (Settle) equal
// those computed at each apply, including applies recorded just before
// recording was switched off, and the change sets' slices may be reused by
// the caller meanwhile.
func TestProbeSettleLater(t *testing.T) {
	ctx := context.Background()
	var atOnce, later SampleLog
	atOnce.Enabled.Store(true)
	later.Enabled.Store(true)
	now := NewProbe(1, &atOnce)
	now.Inner = datapath.NewMemory(datapath.MemoryOptions{})
	deferred := NewProbe(1, &later)
	deferred.Inner = datapath.NewMemory(datapath.MemoryOptions{})

	r := rand.New(rand.NewPCG(3, 4))
	have := datapath.NewState()
	var times []int64
	for step := range 40 {
		want := randomState(r)
		cs := datapath.DiffStates(have, want)
		if _, err := now.Apply(ctx, cs); err != nil {
			t.Fatal(err)
		}
		now.Settle()
		if _, err := deferred.Apply(ctx, cs); err != nil {
			t.Fatal(err)
		}
		// The agent reuses its buffers: scribble over what was applied.
		for i := range cs.UpsertBackends {
			cs.UpsertBackends[i] = datapath.Backend{}
		}
		if step == 29 {
			if got, _ := later.From(0); len(got) != 0 {
				t.Fatalf("%d samples before Settle, want them computed by Settle", len(got))
			}
		}
		if step == 30 {
			later.Enabled.Store(false) // recorded applies keep their samples
			atOnce.Enabled.Store(false)
		}
		have = want
		times = append(times, deferred.LastApply.Load())
	}
	deferred.Settle()
	want, _ := atOnce.From(0)
	got, _ := later.From(0)
	if len(want) == 0 {
		t.Fatal("no samples at all: the test applies nothing reachable")
	}
	// The times differ (two probes); compare what was gained and lost, and
	// that every sample carries its own apply's time.
	strip := func(s []ApplySample) []ApplySample {
		out := make([]ApplySample, len(s))
		for i, x := range s {
			out[i] = ApplySample{Node: x.Node, Addr: x.Addr, Added: x.Added}
		}
		// Within one apply the order is a map's.
		slices.SortFunc(out, func(a, b ApplySample) int {
			if c := strings.Compare(a.Addr, b.Addr); c != 0 {
				return c
			}
			return strings.Compare(fmt.Sprint(a.Added), fmt.Sprint(b.Added))
		})
		return out
	}
	if !slices.Equal(strip(got), strip(want)) {
		t.Fatalf("deferred samples differ:\n got %v\nwant %v", strip(got), strip(want))
	}
	for _, s := range got {
		if !slices.Contains(times[:31], s.At) {
			t.Fatalf("sample at %d is not the time of a recorded apply", s.At)
		}
	}
}
