package workload

import (
	"slices"
	"testing"
)

func TestAssignServicesIsSkewedDistinctAndReproducible(t *testing.T) {
	a := Assign(1, 100, 5000, 20, 1.1)
	b := Assign(1, 100, 5000, 20, 1.1)
	for i := range a {
		if !slices.Equal(a[i].Services, b[i].Services) {
			t.Fatalf("node %d: same seed, different services", i)
		}
		if len(slices.Compact(slices.Clone(a[i].Services))) != 20 {
			t.Fatalf("node %d: %d distinct services, want 20", i, len(slices.Compact(slices.Clone(a[i].Services))))
		}
		for _, s := range a[i].Services {
			if s < 0 || s >= 5000 {
				t.Fatalf("node %d: service %d out of range", i, s)
			}
		}
	}
	u := UsageOf(a)
	if u.Max < 80 || u.Median > 5 {
		t.Errorf("usage %+v: want a head on most nodes and a long tail", u)
	}
	if c := Assign(2, 100, 5000, 20, 1.1); slices.Equal(c[0].Services, a[0].Services) {
		t.Error("another seed gave the same workload")
	}
}
