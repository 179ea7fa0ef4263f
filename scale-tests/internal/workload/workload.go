package workload

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"

	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// The workload: which services each simulated node uses. Real clusters
// are skewed (a few services - DNS, auth, a database proxy - are used by
// almost every node, most by a few), so each node draws its services from
// a Zipf distribution over all services, with a fixed seed: the same
// configuration gives the same nodes in both modes and in every run.

// Node is one simulated node and the services it uses, by simulator
// index.
type Node struct {
	Name     string `json:"name"`
	Services []int  `json:"services"`
}

// Assign returns nodes nodes, each using k distinct services out of
// services, drawn with Zipf exponent s. Popularity ranks are mapped to
// services through a seeded permutation, so the popular services are not
// simply the first ones.
func Assign(seed int64, nodes, services, k int, s float64) []Node {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x776f726b6c6f6164))
	rank := rng.Perm(services)
	zipf := rand.NewZipf(rng, s, 1, uint64(services-1))
	out := make([]Node, nodes)
	for n := range out {
		seen := make(map[int]struct{}, k)
		picked := make([]int, 0, k)
		// Heavy heads make distinct draws slow to find for large k:
		// bound the draws and fill the rest uniformly.
		for draws := 0; len(picked) < k && draws < 100*k; draws++ {
			svc := rank[zipf.Uint64()]
			if _, dup := seen[svc]; !dup {
				seen[svc] = struct{}{}
				picked = append(picked, svc)
			}
		}
		for len(picked) < k {
			svc := rng.IntN(services)
			if _, dup := seen[svc]; !dup {
				seen[svc] = struct{}{}
				picked = append(picked, svc)
			}
		}
		slices.Sort(picked)
		out[n] = Node{Name: fmt.Sprintf("node-%04d", n), Services: picked}
	}
	return out
}

// ServiceKey is the name the simulator gives service i (istiodsim: service
// i is svc-<i> in namespace ns-<i % namespaces>).
func ServiceKey(i, namespaces int) keyspace.Service {
	return keyspace.Service{Namespace: fmt.Sprintf("ns-%d", i%namespaces), Name: fmt.Sprintf("svc-%d", i)}
}

// ServiceVIP is the VIP the simulator gives service i: 127.77.0.0/16
// offset by i+1. The harness checks it against the simulator's truth.
func ServiceVIP(i int) netip.Addr {
	n := i + 1
	return netip.AddrFrom4([4]byte{127, 77, byte(n >> 8), byte(n)})
}

// ServicePorts are the ports the simulator gives every service: 80, 81, ...
func ServicePorts(perService int) []uint16 {
	out := make([]uint16, perService)
	for i := range out {
		out[i] = uint16(80 + i)
	}
	return out
}

// Usage summarises how many nodes use each service.
type Usage struct {
	// Max and Median are the number of nodes using the most used and the
	// median used service (among those used at all); Used is how many
	// services at least one node uses.
	Max, Median, Used int
}

func UsageOf(nodes []Node) Usage {
	count := map[int]int{}
	for _, n := range nodes {
		for _, s := range n.Services {
			count[s]++
		}
	}
	var c []int
	for _, v := range count {
		c = append(c, v)
	}
	if len(c) == 0 {
		return Usage{}
	}
	slices.Sort(c)
	return Usage{Max: c[len(c)-1], Median: c[len(c)/2], Used: len(c)}
}
