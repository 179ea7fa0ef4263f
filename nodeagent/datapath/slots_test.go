package datapath

import (
	"math"
	"slices"
	"testing"
)

func countSlots(table []uint32) map[uint32]int {
	c := map[uint32]int{}
	for _, b := range table {
		c[b]++
	}
	return c
}

func TestAssignSlotsWeights(t *testing.T) {
	for _, tc := range []struct {
		name     string
		backends []WeightedBackend
		want     map[uint32]int
	}{
		{"equal", []WeightedBackend{{3, 5}, {1, 5}, {2, 5}}, map[uint32]int{1: 1, 2: 1, 3: 1}},
		{"unset weight is 1", []WeightedBackend{{1, 0}, {2, 1}}, map[uint32]int{1: 1, 2: 1}},
		{"ratio", []WeightedBackend{{1, 1}, {2, 3}}, map[uint32]int{1: 1, 2: 3}},
		{"gcd", []WeightedBackend{{1, 20}, {2, 30}, {3, 50}}, map[uint32]int{1: 2, 2: 3, 3: 5}},
		{"duplicate id", []WeightedBackend{{1, 1}, {1, 1}, {2, 1}}, map[uint32]int{1: 1, 2: 1}},
		{"none", nil, map[uint32]int{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := countSlots(AssignSlots(nil, tc.backends, 0))
			if len(got) != len(tc.want) {
				t.Fatalf("slots %v, want %v", got, tc.want)
			}
			for id, n := range tc.want {
				if got[id] != n {
					t.Fatalf("slots %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestAssignSlotsRounding(t *testing.T) {
	bs := []WeightedBackend{{1, 1000}, {2, 999}, {3, 7}, {4, 1}}
	table := AssignSlots(nil, bs, 100)
	if len(table) != 100 {
		t.Fatalf("%d slots, want the cap of 100", len(table))
	}
	c := countSlots(table)
	total := 1000.0 + 999 + 7 + 1
	for _, b := range bs[:3] {
		share := float64(c[b.ID]) / 100
		if math.Abs(share-float64(b.Weight)/total) > 1.0/100 {
			t.Errorf("backend %d: share %.3f, weight share %.3f", b.ID, share, float64(b.Weight)/total)
		}
	}
	if c[4] != 1 {
		t.Errorf("a tiny weight still gets one slot, got %d", c[4])
	}

	many := make([]WeightedBackend, MaxSlots+10)
	for i := range many {
		many[i] = WeightedBackend{ID: uint32(i), Weight: 1}
	}
	// An explicit table size still caps the table.
	if n := len(AssignSlots(nil, many, MaxSlots)); n != MaxSlots {
		t.Errorf("%d backends: %d slots, want %d", len(many), n, MaxSlots)
	}
	// The default size has no per-service cap: every backend gets a slot.
	if c := countSlots(AssignSlots(nil, many, 0)); len(c) != len(many) {
		t.Errorf("%d backends: %d have a slot, want all", len(many), len(c))
	}
}

// TestAssignSlotsLarge: a service of 65,536 backends of weights 1..4 gets
// every backend a share within a quarter of an average share of its weight.
func TestAssignSlotsLarge(t *testing.T) {
	const n = 65536
	bs := make([]WeightedBackend, n)
	var total float64
	for i := range bs {
		bs[i] = WeightedBackend{ID: uint32(i + 1), Weight: uint32(i%4 + 1)}
		total += float64(bs[i].Weight)
	}
	table := AssignSlots(nil, bs, 0)
	if len(table) > 4*n || len(table) > MaxTableSlots {
		t.Fatalf("%d slots for %d backends", len(table), n)
	}
	c := countSlots(table)
	if len(c) != n {
		t.Fatalf("%d of %d backends have a slot", len(c), n)
	}
	for _, b := range bs {
		share := float64(c[b.ID]) / float64(len(table))
		want := float64(b.Weight) / total
		if math.Abs(share-want) > 0.25/float64(n) {
			t.Fatalf("backend %d (weight %d): share %.3g, want %.3g", b.ID, b.Weight, share, want)
		}
	}
	s := NewState()
	for _, b := range bs {
		s.PutBackend(b.ID, backendAddr(b.ID))
	}
	s.PutFrontend(NewFrontendKey(vip(1, 80), TCP), 1, table)
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestAssignSlotsStable(t *testing.T) {
	bs := []WeightedBackend{{1, 1}, {2, 1}, {3, 1}, {4, 1}, {5, 1}}
	prev := AssignSlots(nil, bs, 0)

	// Removing a middle backend rewrites its slot and drops the last.
	next := AssignSlots(prev, append(slices.Clone(bs[:2]), bs[3:]...), 0)
	if len(next) != 4 {
		t.Fatalf("%d slots, want 4", len(next))
	}
	changed := 0
	for i := range next {
		if next[i] != prev[i] {
			changed++
		}
	}
	if changed != 1 {
		t.Errorf("removing one backend changed %d slots: %v -> %v", changed, prev, next)
	}

	// Adding one keeps every slot and appends.
	grown := AssignSlots(prev, append(slices.Clone(bs), WeightedBackend{ID: 9, Weight: 1}), 0)
	if !slices.Equal(grown[:len(prev)], prev) || grown[len(prev)] != 9 {
		t.Errorf("adding a backend: %v -> %v", prev, grown)
	}

	// Same input, same table.
	if again := AssignSlots(prev, bs, 0); !slices.Equal(again, prev) {
		t.Errorf("unchanged backends: %v -> %v", prev, again)
	}
}
