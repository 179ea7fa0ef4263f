package shard

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// Candidate is one key of a shard's election: the first (lowest create
// revision) leads, the others wait in line.
type Candidate struct {
	Relay          string `json:"relay"`
	Key            string `json:"key"`
	CreateRevision int64  `json:"create_revision"`
}

// Table is what etcd says about the replicas at one revision: the live
// members and every shard's election line.
type Table struct {
	Revision int64
	Members  map[string]Member
	// Lines holds, per shard below the shard count, its candidates by
	// create revision; the first leads. An empty line is a vacant shard.
	Lines [][]Candidate
}

// Leader returns the relay id leading shard, "" when it is vacant.
func (t *Table) Leader(shard int) string {
	if len(t.Lines[shard]) == 0 {
		return ""
	}
	return t.Lines[shard][0].Relay
}

// ReadTable reads relays/ and shards/ at one revision. Keys that do not
// parse, and shards at or beyond shards, are ignored.
func ReadTable(ctx context.Context, kv clientv3.KV, space keyspace.Space, shards int) (*Table, error) {
	resp, err := kv.Txn(ctx).Then(
		clientv3.OpGet(space.RelaysPrefix(), clientv3.WithPrefix()),
		clientv3.OpGet(space.ShardsPrefix(), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return nil, fmt.Errorf("read %s and %s: %w", space.RelaysPrefix(), space.ShardsPrefix(), err)
	}
	t := &Table{Revision: resp.Header.Revision, Members: map[string]Member{}, Lines: make([][]Candidate, shards)}
	for _, kv := range resp.Responses[0].GetResponseRange().GetKvs() {
		id, ok := space.ParseRelay(string(kv.Key))
		if !ok {
			continue
		}
		m, err := ParseMember(kv.Value)
		if err != nil || m.ID != id {
			m = Member{ID: id} // present, but says nothing: not ready
		}
		t.Members[id] = m
	}
	for _, kv := range resp.Responses[1].GetResponseRange().GetKvs() {
		k, ok := space.ParseShardElection(string(kv.Key))
		if !ok || k.Shard >= shards {
			continue
		}
		t.Lines[k.Shard] = append(t.Lines[k.Shard], Candidate{Relay: string(kv.Value), Key: string(kv.Key), CreateRevision: kv.CreateRevision})
	}
	for _, l := range t.Lines {
		slices.SortFunc(l, func(a, b Candidate) int { return cmp.Compare(a.CreateRevision, b.CreateRevision) })
	}
	return t, nil
}
