package keyspace

import (
	"fmt"
	"strconv"
	"strings"
)

// DefaultCluster is Istio's default CLUSTER_ID.
const DefaultCluster = "Kubernetes"

// Root is the prefix of every meshrelay key.
const Root = "/meshrelay/v1/"

// Service identifies one service by namespace and name.
type Service struct {
	Namespace string
	Name      string
}

// String returns "namespace/name", the form used in vips/ values and on
// command lines.
func (s Service) String() string { return s.Namespace + "/" + s.Name }

// ParseService parses "namespace/name".
func ParseService(s string) (Service, error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return Service{}, fmt.Errorf("service %q: want namespace/name", s)
	}
	return Service{Namespace: ns, Name: name}, nil
}

// Space is the keyspace of one cluster: every key lives under
// /meshrelay/v1/<cluster>/.
type Space struct {
	cluster string
	prefix  string
}

// New returns the keyspace of cluster. An empty cluster means DefaultCluster.
func New(cluster string) Space {
	if cluster == "" {
		cluster = DefaultCluster
	}
	return Space{cluster: cluster, prefix: Root + cluster + "/"}
}

// Cluster is the cluster id of the keyspace.
func (s Space) Cluster() string { return s.cluster }

// Prefix is /meshrelay/v1/<cluster>/.
func (s Space) Prefix() string { return s.prefix }

// ServicesPrefix is the prefix of every service's keys.
func (s Space) ServicesPrefix() string { return s.prefix + "services/" }

// ServicePrefix is services/<ns>/<name>/ (with the trailing slash): one watch
// on it sees everything about one service and nothing about another.
func (s Space) ServicePrefix(svc Service) string {
	return s.prefix + "services/" + svc.Namespace + "/" + svc.Name + "/"
}

// Spec is services/<ns>/<name>/spec.
func (s Space) Spec(svc Service) string { return s.ServicePrefix(svc) + "spec" }

// Slice is services/<ns>/<name>/endpoints/<i>: slice i of slice
// generation 0.
func (s Space) Slice(svc Service, i int) string {
	return s.ServicePrefix(svc) + "endpoints/" + strconv.Itoa(i)
}

// SliceOf is slice i of slice generation gen: Slice for generation 0,
// services/<ns>/<name>/endpoints/<gen>/<i> otherwise.
func (s Space) SliceOf(svc Service, gen uint32, i int) string {
	if gen == 0 {
		return s.Slice(svc, i)
	}
	return s.ServicePrefix(svc) + "endpoints/" + strconv.FormatUint(uint64(gen), 10) + "/" + strconv.Itoa(i)
}

// VIPsPrefix is the prefix of the on-demand VIP index.
func (s Space) VIPsPrefix() string { return s.prefix + "vips/" }

// VIP is vips/<ip>; its value is "<namespace>/<name>".
func (s Space) VIP(ip string) string { return s.prefix + "vips/" + ip }

// SyncedPrefix is the prefix of the per-shard sync markers.
func (s Space) SyncedPrefix() string { return s.prefix + "synced/" }

// Synced is synced/<shard>.
func (s Space) Synced(shard int) string { return s.prefix + "synced/" + strconv.Itoa(shard) }

// Generation is the key holding the id of this etcd's incarnation.
func (s Space) Generation() string { return s.prefix + "generation" }

// RelaysPrefix is the prefix of the leased relay membership keys.
func (s Space) RelaysPrefix() string { return s.prefix + "relays/" }

// Relay is relays/<member>.
func (s Space) Relay(member string) string { return s.prefix + "relays/" + member }

// ShardElection is the concurrency.Election prefix of one shard.
func (s Space) ShardElection(shard int) string {
	return s.prefix + "shards/" + strconv.Itoa(shard) + "/"
}

// Kind says what a key under services/ holds.
type Kind int

const (
	KindUnknown Kind = iota
	KindSpec
	KindSlice
)

// MaxSlices bounds the slice index of an endpoints/<i> key: a key with a
// larger index is not meshrelay's and is rejected by ParseServiceKey, so
// that no reader sizes anything by a number found in a key. At most 1,000
// endpoints per slice, it allows tens of millions of endpoints per service.
const MaxSlices = 1 << 16

// MaxShards bounds the shard count (--shards) and the <shard> of
// synced/<shard> and shards/<shard>/ keys.
const MaxShards = 4096

// MaxSliceGeneration bounds the <gen> of endpoints/<gen>/<i> keys.
const MaxSliceGeneration = 1 << 31

// ServiceKey is a parsed key under services/.
type ServiceKey struct {
	Service Service
	Kind    Kind
	Slice   int // valid when Kind == KindSlice; 0 <= Slice < MaxSlices
	// Gen is the slice generation of a KindSlice key: 0 for
	// endpoints/<i>, 1 <= Gen < MaxSliceGeneration for endpoints/<gen>/<i>.
	Gen uint32
}

// ParseServiceKey parses a key under ServicesPrefix strictly: exactly
// services/<ns>/<name>/spec, services/<ns>/<name>/endpoints/<i> or
// services/<ns>/<name>/endpoints/<gen>/<i> with non-empty segments, i in
// canonical decimal form (no sign, no leading zero) below MaxSlices and gen
// canonical in [1, MaxSliceGeneration). ok is false for any other key. A parsed key
// round-trips: Spec or SliceOf of the result returns key.
func (s Space) ParseServiceKey(key string) (k ServiceKey, ok bool) {
	rest, found := strings.CutPrefix(key, s.ServicesPrefix())
	if !found {
		return ServiceKey{}, false
	}
	ns, rest, _ := strings.Cut(rest, "/")
	name, rest, _ := strings.Cut(rest, "/")
	if ns == "" || name == "" {
		return ServiceKey{}, false
	}
	svc := Service{Namespace: ns, Name: name}
	if rest == "spec" {
		return ServiceKey{Service: svc, Kind: KindSpec}, true
	}
	idx, found := strings.CutPrefix(rest, "endpoints/")
	if !found {
		return ServiceKey{}, false
	}
	var gen int
	if g, i, staged := strings.Cut(idx, "/"); staged {
		if gen, ok = parseIndex(g, MaxSliceGeneration); !ok || gen == 0 {
			return ServiceKey{}, false // generation 0 has only the endpoints/<i> form
		}
		idx = i
	}
	i, ok := parseIndex(idx, MaxSlices)
	if !ok {
		return ServiceKey{}, false
	}
	return ServiceKey{Service: svc, Kind: KindSlice, Slice: i, Gen: uint32(gen)}, true
}

// ParseSynced parses a synced/<shard> key strictly (canonical decimal,
// below MaxShards). ok is false for any other key.
func (s Space) ParseSynced(key string) (shard int, ok bool) {
	rest, found := strings.CutPrefix(key, s.SyncedPrefix())
	if !found {
		return 0, false
	}
	return parseIndex(rest, MaxShards)
}

// parseIndex parses a canonical decimal index in [0, bound): digits only,
// no leading zero except "0" itself. It never allocates.
func parseIndex(s string, bound int) (int, bool) {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
		if n >= bound {
			return 0, false
		}
	}
	return n, true
}
