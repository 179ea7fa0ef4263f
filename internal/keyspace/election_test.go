package keyspace

import "testing"

func TestParseShardElection(t *testing.T) {
	sp := New("c")
	for _, tc := range []struct {
		key   string
		ok    bool
		shard int
		cand  string
	}{
		{sp.ShardElection(3) + "694d8b1f", true, 3, "694d8b1f"},
		{sp.ShardElection(0) + "a", true, 0, "a"},
		{sp.ShardElection(3), false, 0, ""},
		{sp.ShardsPrefix() + "03/a", false, 0, ""},
		{sp.ShardsPrefix() + "4096/a", false, 0, ""},
		{sp.ShardsPrefix() + "1/a/b", false, 0, ""},
		{sp.Relay("r") + "/x", false, 0, ""},
	} {
		k, ok := sp.ParseShardElection(tc.key)
		if ok != tc.ok || ok && (k.Shard != tc.shard || k.Candidate != tc.cand) {
			t.Errorf("ParseShardElection(%q) = %+v, %v; want %d %q %v", tc.key, k, ok, tc.shard, tc.cand, tc.ok)
		}
	}
	if id, ok := sp.ParseRelay(sp.Relay("relay-0")); !ok || id != "relay-0" {
		t.Errorf("ParseRelay = %q, %v", id, ok)
	}
	if _, ok := sp.ParseRelay(sp.Relay("a/b")); ok {
		t.Error("ParseRelay accepted a/b")
	}
}
