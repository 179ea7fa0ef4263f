package scenario

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/relay/shard"
	"github.com/meshrelay/meshrelay/scale-tests/internal/config"
)

// table builds a shard.Table whose shard s has the candidates lines[s],
// each "relay/lease", the first leading.
func table(space keyspace.Space, lines ...[]string) *shard.Table {
	t := &shard.Table{Lines: make([][]shard.Candidate, len(lines))}
	for s, line := range lines {
		for i, c := range line {
			id, lease, _ := strings.Cut(c, "/")
			t.Lines[s] = append(t.Lines[s], shard.Candidate{Relay: id, Key: space.ShardElection(s) + lease, CreateRevision: int64(10*s + i)})
		}
	}
	return t
}

func TestPickLeaderTakesTheReplicaLeadingMostShards(t *testing.T) {
	space := keyspace.New("c1")
	tb := table(space,
		[]string{"relay-1/b1", "relay-0/a0"},
		[]string{"relay-2/c2"},
		[]string{"relay-1/b1"},
		nil, // vacant
		[]string{"relay-0/a0", "relay-1/b1"},
		[]string{"relay-2/c2"},
		[]string{"relay-1/b1"},
	)
	l, ok := pickLeader(tb, space)
	if !ok || l.ID != "relay-1" || l.Candidate != "b1" || !slices.Equal(l.Shards, []int{0, 2, 6}) {
		t.Fatalf("pickLeader = %+v, %v; want relay-1 (lease b1) leading 0, 2, 6", l, ok)
	}
	// Equals: the lowest id.
	l, _ = pickLeader(table(space, []string{"relay-2/c2"}, []string{"relay-0/a0"}), space)
	if l.ID != "relay-0" || !slices.Equal(l.Shards, []int{1}) {
		t.Errorf("tie: pickLeader = %+v, want relay-0 leading 1", l)
	}
	// A waiting candidate leads nothing.
	if _, ok := pickLeader(table(space, nil, nil), space); ok {
		t.Error("pickLeader found a leader in a table of vacant shards")
	}
}

func TestTakeoverWaitsForEveryShardLedByAnotherKey(t *testing.T) {
	space := keyspace.New("c1")
	victim := shardLeader{ID: "relay-0", Candidate: "a0", Shards: []int{0, 2}}
	start := time.Unix(100, 0)
	tk := newTakeover(victim, space, start, 500)

	// Still the victim's keys, then vacant: nothing taken over.
	if tk.observe(table(space, []string{"relay-0/a0", "relay-1/b1"}, []string{"relay-1/b1"}, []string{"relay-0/a0"}), start.Add(time.Second)) {
		t.Fatal("taken over while the victim's keys lead")
	}
	if tk.observe(table(space, []string{"relay-1/b1"}, []string{"relay-1/b1"}, nil), start.Add(10*time.Second)) {
		t.Fatal("taken over while shard 2 is vacant")
	}
	// The victim restarted under a new lease counts as another key.
	if !tk.observe(table(space, []string{"relay-2/c2"}, []string{"relay-1/b1"}, []string{"relay-0/a9"}), start.Add(11*time.Second)) {
		t.Fatal("not taken over with both shards led by other keys")
	}
	got := tk.shards()
	if len(got) != 2 || got[0].Shard != 0 || got[0].Leader != "relay-1" || got[0].Seconds != 10 ||
		got[1].Shard != 2 || got[1].Leader != "relay-0" || got[1].Seconds != 11 {
		t.Errorf("shards = %+v; want 0 by relay-1 at 10 s (first seen), 2 by relay-0 at 11 s", got)
	}

	// Synced: a marker of the new leader written after the kill; not one
	// from before the kill, nor another relay's.
	if tk.observeSynced(map[int]markerWrite{0: {"relay-1", 400}, 2: {"relay-0", 600}}, start.Add(12*time.Second)) {
		t.Fatal("synced with shard 0's marker from before the kill")
	}
	if tk.observeSynced(map[int]markerWrite{0: {"relay-2", 700}, 2: {"relay-0", 600}}, start.Add(13*time.Second)) {
		t.Fatal("synced with shard 0's marker written by another relay than its leader")
	}
	if !tk.observeSynced(map[int]markerWrite{0: {"relay-1", 800}, 2: {"relay-0", 600}}, start.Add(14*time.Second)) {
		t.Fatal("not synced with both markers rewritten by their new leaders")
	}
	got = tk.shards()
	if got[0].SyncedSeconds != 14 || got[1].SyncedSeconds != 12 {
		t.Errorf("synced after %v and %v s, want 14 and 12", got[0].SyncedSeconds, got[1].SyncedSeconds)
	}
}

func TestRelayKillChurnCoversTheFailover(t *testing.T) {
	ttl := 10 * time.Second
	for _, d := range []time.Duration{time.Second, 3 * time.Second, time.Minute, 10 * time.Minute} {
		kill, churn := relayKillTiming(d, ttl)
		if kill < 2*time.Second || kill > 10*time.Second {
			t.Errorf("duration %v: kill after %v, want 2..10 s", d, kill)
		}
		if churn < d || churn < kill+ttl+2*time.Second+failoverTail+config.LivenessChurn {
			t.Errorf("duration %v: churn %v ends before the failover window does", d, churn)
		}
	}
}
