package scenario

import (
	"cmp"
	"slices"
	"time"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/relay/shard"
	"github.com/meshrelay/meshrelay/scale-tests/internal/results"
)

// shardLeader is a replica that leads shards, as the shards/ election
// keys say: the relay-kill scenario's victim.
type shardLeader struct {
	// ID is the relay id, the value of its election keys.
	ID string
	// Candidate is the <candidate> part (its lease, hex) of the election
	// keys it leads with.
	Candidate string
	// Shards are the shards it leads, ascending.
	Shards []int
}

// pickLeader returns the replica leading the most shards (the lowest id
// among equals), read from the first key of every shard's election line.
// ok is false when no shard is led.
func pickLeader(t *shard.Table, space keyspace.Space) (l shardLeader, ok bool) {
	byID := map[string]*shardLeader{}
	for s, line := range t.Lines {
		if len(line) == 0 {
			continue
		}
		k, ok := space.ParseShardElection(line[0].Key)
		if !ok {
			continue
		}
		c := byID[line[0].Relay]
		if c == nil {
			c = &shardLeader{ID: line[0].Relay, Candidate: k.Candidate}
			byID[c.ID] = c
		}
		c.Shards = append(c.Shards, s)
	}
	if len(byID) == 0 {
		return shardLeader{}, false
	}
	all := make([]*shardLeader, 0, len(byID))
	for _, c := range byID {
		all = append(all, c)
	}
	slices.SortFunc(all, func(a, b *shardLeader) int {
		return cmp.Or(cmp.Compare(len(b.Shards), len(a.Shards)), cmp.Compare(a.ID, b.ID))
	})
	return *all[0], true
}

// takeover follows the shards of a killed leader until each is led by
// another election key, and then until each new leader has written the
// shard's synced marker (its keys read, differences written).
type takeover struct {
	victim shardLeader
	space  keyspace.Space
	start  time.Time
	// killRev is an etcd revision read after the kill: the victim wrote
	// nothing above it.
	killRev int64
	// done holds the shards taken over, by shard.
	done   map[int]results.ShardTakeover
	synced int
}

func newTakeover(victim shardLeader, space keyspace.Space, start time.Time, killRev int64) *takeover {
	return &takeover{victim: victim, space: space, start: start, killRev: killRev, done: map[int]results.ShardTakeover{}}
}

// markerWrite is a synced/<shard> marker as read: who wrote it, at which
// revision.
type markerWrite struct {
	Relay       string
	ModRevision int64
}

// observeSynced records, at now, the shards taken over whose synced
// marker (markers, by shard) their new leader wrote after the kill, and
// reports whether all the victim's shards have one.
func (tk *takeover) observeSynced(markers map[int]markerWrite, now time.Time) bool {
	for s, st := range tk.done {
		m, ok := markers[s]
		if st.SyncedSeconds > 0 || !ok || m.Relay != st.Leader || m.ModRevision <= tk.killRev {
			continue
		}
		st.SyncedSeconds = max(now.Sub(tk.start).Seconds(), st.Seconds)
		tk.done[s] = st
		tk.synced++
	}
	return tk.synced == len(tk.victim.Shards)
}

// observe records, at now, the victim's shards that t shows led by a key
// other than the victim's, and reports whether all of them are.
func (tk *takeover) observe(t *shard.Table, now time.Time) bool {
	for _, s := range tk.victim.Shards {
		if _, ok := tk.done[s]; ok || s >= len(t.Lines) || len(t.Lines[s]) == 0 {
			continue
		}
		lead := t.Lines[s][0]
		if k, ok := tk.space.ParseShardElection(lead.Key); ok && k.Candidate == tk.victim.Candidate {
			continue
		}
		tk.done[s] = results.ShardTakeover{Shard: s, Leader: lead.Relay, Seconds: now.Sub(tk.start).Seconds()}
	}
	return len(tk.done) == len(tk.victim.Shards)
}

// shards returns the takeovers recorded, by shard.
func (tk *takeover) shards() []results.ShardTakeover {
	out := make([]results.ShardTakeover, 0, len(tk.done))
	for _, s := range tk.victim.Shards {
		if st, ok := tk.done[s]; ok {
			out = append(out, st)
		}
	}
	return out
}
