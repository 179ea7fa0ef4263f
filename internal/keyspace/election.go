package keyspace

import "strings"

// ShardsPrefix is the prefix of every shard's election keys.
func (s Space) ShardsPrefix() string { return s.prefix + "shards/" }

// ElectionKey is a parsed key under ShardsPrefix: shards/<shard>/<candidate>,
// where <candidate> is the lease id (hex) etcd's concurrency.Election names
// its keys by.
type ElectionKey struct {
	Shard     int
	Candidate string
}

// ParseShardElection parses a shards/<shard>/<candidate> key strictly:
// <shard> canonical decimal below MaxShards, <candidate> non-empty without
// '/'. ok is false for any other key.
func (s Space) ParseShardElection(key string) (k ElectionKey, ok bool) {
	rest, found := strings.CutPrefix(key, s.ShardsPrefix())
	if !found {
		return ElectionKey{}, false
	}
	idx, cand, found := strings.Cut(rest, "/")
	if !found || cand == "" || strings.Contains(cand, "/") {
		return ElectionKey{}, false
	}
	shard, ok := parseIndex(idx, MaxShards)
	if !ok {
		return ElectionKey{}, false
	}
	return ElectionKey{Shard: shard, Candidate: cand}, true
}

// ParseRelay parses a relays/<relay-id> key and returns the relay id. ok is
// false for any other key.
func (s Space) ParseRelay(key string) (id string, ok bool) {
	id, found := strings.CutPrefix(key, s.RelaysPrefix())
	if !found || id == "" || strings.Contains(id, "/") {
		return "", false
	}
	return id, true
}
