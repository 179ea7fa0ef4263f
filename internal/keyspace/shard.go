package keyspace

import "hash/fnv"

// DefaultShards is the default number of shards (--shards).
const DefaultShards = 16

// Shard returns the shard of svc among n: FNV-1a 32 of "<namespace>/<name>"
// modulo n. The function is part of the keyspace contract: relays and tools
// must agree on it, so it never changes.
func Shard(svc Service, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(svc.Namespace))
	h.Write([]byte{'/'})
	h.Write([]byte(svc.Name))
	return int(h.Sum32() % uint32(n))
}
