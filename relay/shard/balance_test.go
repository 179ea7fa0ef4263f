package shard

import (
	"fmt"
	"slices"
	"testing"
)

// table builds a Table from leaders (one relay id per shard, "" vacant),
// with waiting lists, and ready members.
func table(leaders []string, waiting map[int][]string, ready ...string) *Table {
	t := &Table{Members: map[string]Member{}, Lines: make([][]Candidate, len(leaders))}
	for _, id := range ready {
		t.Members[id] = Member{ID: id, Ready: true}
	}
	for s, l := range leaders {
		if l == "" {
			continue
		}
		t.Lines[s] = append(t.Lines[s], Candidate{Relay: l, Key: fmt.Sprintf("k/%d/%s", s, l)})
		for _, w := range waiting[s] {
			t.Lines[s] = append(t.Lines[s], Candidate{Relay: w, Key: fmt.Sprintf("k/%d/%s", s, w)})
		}
	}
	return t
}

func shardsOf(leaders []string, id string) map[int]bool {
	m := map[int]bool{}
	for s, l := range leaders {
		if l == id {
			m[s] = true
		}
	}
	return m
}

func TestBalance(t *testing.T) {
	all := func(id string, n int) []string {
		l := make([]string, n)
		for i := range l {
			l[i] = id
		}
		return l
	}
	t.Run("alone takes every vacant shard", func(t *testing.T) {
		mv := balance(view{self: "a", eligible: true, table: table(make([]string, 8), nil, "a"), held: map[int]bool{}, queued: map[int]bool{}})
		if len(mv.campaign) != 8 || len(mv.resign)+len(mv.cancel) != 0 {
			t.Errorf("%+v", mv)
		}
	})
	t.Run("joiner lines up for the leader's excess only", func(t *testing.T) {
		leaders := all("a", 8)
		mv := balance(view{self: "b", eligible: true, table: table(leaders, nil, "a", "b"), held: map[int]bool{}, queued: map[int]bool{}})
		if len(mv.campaign) != 4 {
			t.Errorf("campaigns %v, want 4 (a's excess over ⌈8/2⌉)", mv.campaign)
		}
	})
	t.Run("leader resigns only shards someone waits for", func(t *testing.T) {
		leaders := all("a", 8)
		waiting := map[int][]string{1: {"b"}, 2: {"b"}}
		mv := balance(view{self: "a", eligible: true, table: table(leaders, waiting, "a", "b"), held: shardsOf(leaders, "a"), queued: map[int]bool{}})
		if !slices.Equal(mv.resign, []int{1, 2}) || len(mv.campaign) != 0 {
			t.Errorf("%+v, want shards 1 and 2 resigned", mv)
		}
	})
	t.Run("at target nothing moves", func(t *testing.T) {
		leaders := []string{"a", "b", "a", "b"}
		for _, self := range []string{"a", "b"} {
			mv := balance(view{self: self, eligible: true, table: table(leaders, map[int][]string{0: {"b"}}, "a", "b"), held: shardsOf(leaders, self), queued: map[int]bool{}})
			if len(mv.campaign)+len(mv.resign) != 0 {
				t.Errorf("%s: %+v", self, mv)
			}
		}
	})
	t.Run("not eligible campaigns for nothing and hands off", func(t *testing.T) {
		leaders := []string{"a", "a", "", ""}
		mv := balance(view{self: "a", eligible: false, table: table(leaders, map[int][]string{1: {"b"}}, "b"), held: shardsOf(leaders, "a"), queued: map[int]bool{3: true}})
		if len(mv.campaign) != 0 || !slices.Equal(mv.resign, []int{1}) || !slices.Equal(mv.cancel, []int{3}) {
			t.Errorf("%+v", mv)
		}
	})
	t.Run("after a wipe the first back takes only its fair share, at once", func(t *testing.T) {
		// etcd restarted empty: every shard vacant, only a registered
		// again; b and c were ready in a's previous session.
		v := view{self: "a", eligible: true, table: table(make([]string, 16), nil, "a"), held: map[int]bool{}, queued: map[int]bool{},
			rejoining: map[string]bool{"a": true, "b": true, "c": true}}
		if mv := balance(v); len(mv.campaign) != 6 || len(mv.resign)+len(mv.cancel) != 0 {
			t.Errorf("%+v, want 6 campaigns (⌈16/3⌉) in one round", mv)
		}
		// The shards a led before come first.
		v.previous = map[int]bool{3: true, 9: true}
		if mv := balance(v); len(mv.campaign) != 6 || !slices.Contains(mv.campaign, 3) || !slices.Contains(mv.campaign, 9) {
			t.Errorf("campaigns %v, want 6 with 3 and 9", mv.campaign)
		}
		// The shards b and c led are left to them: a takes its own (9
		// too: it led 9 after the table that said b did) and the
		// unreserved 0..2, five of its six.
		v.reserved = map[int]bool{}
		for s := 4; s < 16; s++ {
			v.reserved[s] = true
		}
		mv := balance(v)
		slices.Sort(mv.campaign)
		if !slices.Equal(mv.campaign, []int{0, 1, 2, 3, 9}) {
			t.Errorf("campaigns %v, want 0, 1, 2, 3, 9", mv.campaign)
		}
		v.previous, v.reserved = nil, nil
		// b is back but not ready: it is not counted, c still is.
		v.table.Members["b"] = Member{ID: "b"}
		if mv := balance(v); len(mv.campaign) != 8 {
			t.Errorf("campaigns %v, want 8 (⌈16/2⌉)", mv.campaign)
		}
		// Nobody expected any more (the wait ended): every vacant shard.
		v.rejoining = nil
		if mv := balance(v); len(mv.campaign) != 16 {
			t.Errorf("campaigns %v, want 16", mv.campaign)
		}
	})
	t.Run("lines up behind a leader that is not ready", func(t *testing.T) {
		leaders := []string{"a", "a", "b", "b"}
		mv := balance(view{self: "b", eligible: true, table: table(leaders, nil, "b"), held: shardsOf(leaders, "b"), queued: map[int]bool{}})
		if !slices.Equal(mv.campaign, []int{0, 1}) && !slices.Equal(mv.campaign, []int{1, 0}) {
			t.Errorf("campaigns %v, want a's shards 0 and 1", mv.campaign)
		}
	})
}
