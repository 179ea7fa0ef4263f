package datapath

import (
	"cmp"
	"slices"
)

// MaxSlots is the slot table size of a frontend of up to 1,024 backends:
// their weights are represented exactly when their reduced sum fits, and
// otherwise to within 1/MaxSlots.
const MaxSlots = 1024

// MaxTableSlots is the most slots any frontend has (MR_MAX_SLOTS in
// meshrelay.h).
const MaxTableSlots = 1 << 20

// tableSlots returns the slot table size for n backends: MaxSlots, or four
// slots a backend for larger frontends so that every backend has a slot
// and weights keep a precision of a quarter of an average share; at most
// MaxTableSlots.
func tableSlots(n int) int {
	return min(max(MaxSlots, 4*n), MaxTableSlots)
}

// WeightedBackend is a backend id and its load-balancing weight.
type WeightedBackend struct {
	ID     uint32
	Weight uint32
}

// AssignSlots returns the slot table of a frontend (slot i points at
// backend table[i]) for the given backends, changing as few slots of the
// previous table prev as it can.
//
// Weighted selection: the programs pick one of the frontend's slots
// uniformly at random, so a backend is chosen in proportion to the number
// of slots it occupies. The counts are:
//
//   - a weight of 0 counts as 1 (unset); equal weights give one slot each;
//   - otherwise the weights divided by their greatest common divisor, when
//     the sum of those fits in maxSlots (exact ratios);
//   - otherwise each backend gets floor(weight*maxSlots/total) slots, at
//     least 1, and the slots left over go to the largest remainders (ties
//     to the lower id). A backend's share is then off by less than
//     1/maxSlots, except that a backend whose share is below 1/maxSlots
//     still gets one slot;
//   - with more backends than maxSlots, only the maxSlots lowest ids get a
//     slot (one each); with the default size this happens only beyond
//     MaxTableSlots/4 backends.
//
// maxSlots <= 0 means the default size for the number of backends:
// MaxSlots up to 1,024 backends (small services keep their precision),
// four slots a backend above, so a service of 65,536 backends has 262,144
// slots and every backend gets traffic in proportion to its weight.
// maxSlots above MaxTableSlots means MaxTableSlots.
//
// Stability: a backend keeps the slots it held in prev, up to its new
// count; freed slots and slots beyond the new length are refilled with the
// backends that need more, so removing one of n equal backends rewrites one
// slot and drops the last.
func AssignSlots(prev []uint32, backends []WeightedBackend, maxSlots int) []uint32 {
	if maxSlots <= 0 {
		maxSlots = tableSlots(len(backends))
	}
	maxSlots = min(maxSlots, MaxTableSlots)
	bs := slices.Clone(backends)
	slices.SortFunc(bs, func(a, b WeightedBackend) int { return cmp.Compare(a.ID, b.ID) })
	bs = slices.CompactFunc(bs, func(a, b WeightedBackend) bool { return a.ID == b.ID })
	if len(bs) > maxSlots {
		bs = bs[:maxSlots]
	}
	counts := slotCounts(bs, maxSlots)

	total := 0
	want := make(map[uint32]int, len(bs))
	for i, b := range bs {
		want[b.ID] = counts[i]
		total += counts[i]
	}

	// Keep what prev already has, up to each backend's count.
	table := make([]uint32, total)
	filled := make([]bool, total)
	for i := 0; i < total && i < len(prev); i++ {
		if want[prev[i]] > 0 {
			table[i] = prev[i]
			filled[i] = true
			want[prev[i]]--
		}
	}
	// Fill the holes with what is missing, in id order.
	hole := 0
	for _, b := range bs {
		for ; want[b.ID] > 0; want[b.ID]-- {
			for filled[hole] {
				hole++
			}
			table[hole] = b.ID
			filled[hole] = true
		}
	}
	return table
}

// slotCounts returns the number of slots of each backend (sorted by id,
// at most maxSlots of them); see AssignSlots.
func slotCounts(bs []WeightedBackend, maxSlots int) []int {
	counts := make([]int, len(bs))
	if len(bs) == 0 {
		return counts
	}
	weights := make([]uint64, len(bs))
	var g, sum uint64
	for i, b := range bs {
		weights[i] = max(uint64(b.Weight), 1)
		g = gcd(g, weights[i])
		sum += weights[i]
	}
	if sum/g <= uint64(maxSlots) {
		for i, w := range weights {
			counts[i] = int(w / g)
		}
		return counts
	}

	// Largest remainder, with at least one slot each.
	used := 0
	rem := make([]uint64, len(bs)) // remainder numerators, over sum
	for i, w := range weights {
		q := w * uint64(maxSlots)
		counts[i] = max(int(q/sum), 1)
		rem[i] = q % sum
		if int(q/sum) == 0 {
			rem[i] = 0
		}
		used += counts[i]
	}
	// The minimum of one slot can overshoot: take back from the largest.
	for used > maxSlots {
		i := 0
		for j := range counts {
			if counts[j] > counts[i] {
				i = j
			}
		}
		counts[i]--
		used--
	}
	order := make([]int, len(bs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(rem[b], rem[a]) })
	for _, i := range order {
		if used == maxSlots {
			break
		}
		counts[i]++
		used++
	}
	return counts
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
