package shard

import (
	"context"
	"fmt"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// Status is what `relay status` prints: the members and every shard's
// leader, line of candidates and synced marker.
type Status struct {
	Cluster  string        `json:"cluster"`
	Revision int64         `json:"revision"`
	Members  []Member      `json:"members"`
	Shards   []ShardStatus `json:"shards"`
	// Vacant lists the shards without a leader.
	Vacant []int `json:"vacant"`
}

// ShardStatus is one shard in a Status.
type ShardStatus struct {
	Shard int `json:"shard"`
	// Leader is the leading relay's id, empty when vacant.
	Leader string `json:"leader"`
	// Waiting are the relays lined up behind the leader.
	Waiting []string `json:"waiting,omitempty"`
	// Marker is synced/<shard>, nil when absent or unreadable.
	Marker *keyspace.Marker `json:"marker,omitempty"`
}

// ReadStatus reads the membership, the elections and the synced markers
// of a cluster's shards.
func ReadStatus(ctx context.Context, kv clientv3.KV, space keyspace.Space, shards int) (*Status, error) {
	t, err := ReadTable(ctx, kv, space, shards)
	if err != nil {
		return nil, err
	}
	resp, err := kv.Get(ctx, space.SyncedPrefix(), clientv3.WithPrefix(), clientv3.WithRev(t.Revision))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", space.SyncedPrefix(), err)
	}
	markers := map[int]*keyspace.Marker{}
	for _, kv := range resp.Kvs {
		s, ok := space.ParseSynced(string(kv.Key))
		if !ok {
			continue
		}
		if m, err := keyspace.ParseMarker(kv.Value); err == nil {
			markers[s] = &m
		}
	}
	st := &Status{Cluster: space.Cluster(), Revision: t.Revision, Members: []Member{}, Vacant: []int{}}
	for _, m := range t.Members {
		st.Members = append(st.Members, m)
	}
	slices.SortFunc(st.Members, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	for s, line := range t.Lines {
		ss := ShardStatus{Shard: s, Leader: t.Leader(s), Marker: markers[s]}
		for _, c := range line[min(1, len(line)):] {
			ss.Waiting = append(ss.Waiting, c.Relay)
		}
		if ss.Leader == "" {
			st.Vacant = append(st.Vacant, s)
		}
		st.Shards = append(st.Shards, ss)
	}
	return st, nil
}
