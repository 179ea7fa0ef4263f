package roles

import "testing"

func TestSeparateHeapsGOGC(t *testing.T) {
	for _, tc := range []struct {
		live  uint64
		nodes int
		want  int
	}{
		{1 << 30, 1000, 275},          // ~1 MiB per relay node: goal 1000 × 4 MiB, GOGC 290 rounded down
		{54 * 127 << 20, 54, 100},     // direct nodes, 127 MiB each: plain GOGC 100
		{10 << 20, 1000, maxPoolGOGC}, // almost nothing live yet: capped
		{0, 1000, 100},
		{4 << 30, 1000, 100}, // 4 MiB per node: above the floor
	} {
		if got := separateHeapsGOGC(tc.live, tc.nodes); got != tc.want {
			t.Errorf("separateHeapsGOGC(%d MiB, %d) = %d, want %d", tc.live>>20, tc.nodes, got, tc.want)
		}
	}
}
