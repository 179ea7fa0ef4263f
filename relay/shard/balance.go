package shard

import (
	"hash/fnv"
	"slices"
)

// view is what one replica knows when it balances: the table read from
// etcd, and its own campaigns.
type view struct {
	self     string
	eligible bool // this replica's upstream is healthy and synced
	table    *Table
	held     map[int]bool // shards this replica leads
	queued   map[int]bool // shards this replica waits in line for
	// rejoining are the ready peers of this replica's previous session,
	// counted as ready while they have not registered again: after an
	// etcd wipe every replica joins anew at about the same time, and the
	// first one back takes only its fair share instead of every vacant
	// shard (which it would hand off again, one takeover read each;
	// docs/contract.md, "Failure").
	rejoining map[string]bool
	// previous are the shards this replica led in its previous session,
	// taken first when vacant: its upstream subscriptions for them are
	// still there, and the peers take theirs back likewise.
	previous map[int]bool
	// reserved are the shards the rejoining peers led: left vacant for
	// them, for the same reason.
	reserved map[int]bool
}

// moves is what balance decides.
type moves struct {
	campaign []int // join the shard's election
	cancel   []int // leave a line this replica waits in
	resign   []int // hand a led shard to the candidate behind
}

// target is the most shards a ready replica holds: ⌈shards/ready⌉, the
// ready replicas counting this one when it is eligible, and the rejoining
// peers not yet registered again.
func (v *view) target() int {
	ready := 0
	for id, m := range v.table.Members {
		if m.Ready && id != v.self {
			ready++
		}
	}
	for id := range v.rejoining {
		if _, ok := v.table.Members[id]; !ok && id != v.self {
			ready++
		}
	}
	if v.eligible {
		ready++
	}
	shards := len(v.table.Lines)
	if ready == 0 {
		return shards
	}
	return (shards + ready - 1) / ready
}

// balance decides the moves of one replica. It is pure.
//
// A replica takes vacant shards up to the target. It also lines up behind a
// leader that is not ready or holds more than the target; such a leader
// resigns a shard only once someone waits behind it, so a shard always has
// a leader ready to take over and no shard is given up for nothing. A
// replica that is not eligible campaigns for nothing and hands every shard
// it leads to whoever lines up.
func balance(v view) moves {
	var mv moves
	t := v.target()
	counts := map[string]int{}
	for _, l := range v.table.Lines {
		if len(l) > 0 {
			counts[l[0].Relay]++
		}
	}
	overloaded := func(leader string) bool {
		m, ok := v.table.Members[leader]
		return !ok || !m.Ready || counts[leader] > t
	}
	waiting := func(shard int) bool { // someone else waits behind the leader
		l := v.table.Lines[shard]
		for _, c := range l[min(1, len(l)):] {
			if c.Relay != v.self {
				return true
			}
		}
		return false
	}

	held := len(v.held)
	for _, s := range sortedSet(v.held) {
		if len(v.table.Lines[s]) == 0 || v.table.Lines[s][0].Relay != v.self {
			continue // lost: the caller notices it from the table
		}
		if (!v.eligible || held > t) && waiting(s) {
			mv.resign = append(mv.resign, s)
			held--
		}
	}

	queued := 0
	for _, s := range sortedSet(v.queued) {
		l := v.table.Lines[s]
		keep := v.eligible && held+queued < t && (len(l) == 0 || l[0].Relay == v.self || overloaded(l[0].Relay))
		if keep {
			queued++
		} else {
			mv.cancel = append(mv.cancel, s)
		}
	}
	if !v.eligible {
		return mv
	}

	budget := t - held - queued
	shards := len(v.table.Lines)
	start := offset(v.self, shards)
	vacant := func(s int) bool {
		return len(v.table.Lines[s]) == 0 && !v.held[s] && !v.queued[s] && !slices.Contains(mv.campaign, s)
	}
	// Vacant shards first: those led before a re-join (even when a peer
	// led them in an older table: this replica's own record is the
	// later), then from an offset of the replica's own, so that replicas
	// starting together mostly pick different ones.
	for _, s := range sortedSet(v.previous) {
		if budget > 0 && s < shards && vacant(s) {
			mv.campaign = append(mv.campaign, s)
			budget--
		}
	}
	for i := 0; i < shards && budget > 0; i++ {
		s := (start + i) % shards
		if vacant(s) && !v.reserved[s] {
			mv.campaign = append(mv.campaign, s)
			budget--
		}
	}
	// Then line up behind leaders that are not ready or hold too many,
	// each giving away at most its excess.
	excess := map[string]int{}
	for id, n := range counts {
		excess[id] = n - t
		if m, ok := v.table.Members[id]; !ok || !m.Ready {
			excess[id] = n
		}
	}
	for _, l := range v.table.Lines {
		if len(l) > 1 && l[0].Relay != v.self {
			excess[l[0].Relay]-- // already being handed to someone
		}
	}
	for i := 0; i < shards && budget > 0; i++ {
		s := (start + i) % shards
		l := v.table.Lines[s]
		if len(l) == 0 || v.held[s] || v.queued[s] || l[0].Relay == v.self || waiting(s) {
			continue
		}
		if excess[l[0].Relay] > 0 {
			excess[l[0].Relay]--
			mv.campaign = append(mv.campaign, s)
			budget--
		}
	}
	return mv
}

// offset spreads the starting shard of replicas' searches.
func offset(self string, shards int) int {
	h := fnv.New32a()
	h.Write([]byte(self))
	return int(h.Sum32() % uint32(shards))
}

func sortedSet(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for k, ok := range m {
		if ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
