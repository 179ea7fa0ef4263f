package istiodsim

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"
)

// service is one simulated Kubernetes service. Its fields are the truth the
// Sim serves; res holds the xDS resources built from them. res is replaced,
// never modified, so snapshots can share it with no copy.
type service struct {
	index     int
	namespace string
	name      string
	hostname  string
	vip       string
	ports     []Port // shared with Options.Ports: read-only
	endpoints []endpoint
	deleted   bool

	// pushedAt is when the last push carrying a change of this service was
	// handed to the streams.
	pushedAt time.Time
	res      *serviceResources
}

// endpoint is one backend of a service; it listens on every target port of
// the service.
type endpoint struct {
	address string
	weight  uint32
	region  string
	zone    string
}

// regions and zones of generated endpoints: two regions of three zones.
var (
	regions = []string{"region-a", "region-b"}
	zones   = [][]string{
		{"region-a-1", "region-a-2", "region-a-3"},
		{"region-b-1", "region-b-2", "region-b-3"},
	}
)

// generator creates services and endpoints. It is not safe for concurrent
// use: the Sim calls it with its mutex held.
type generator struct {
	opts Options
	rng  *rand.Rand
	// next is the number of endpoint addresses handed out so far.
	next uint64
}

func newGenerator(opts Options) *generator {
	return &generator{opts: opts, rng: rand.New(rand.NewPCG(uint64(opts.Seed), 0x6973746f))}
}

// service returns service i with the configured number of endpoints.
func (g *generator) service(i int) *service {
	ns := fmt.Sprintf("ns-%d", i%g.opts.Namespaces)
	name := fmt.Sprintf("svc-%d", i)
	svc := &service{
		index:     i,
		namespace: ns,
		name:      name,
		hostname:  name + "." + ns + ".svc.cluster.local",
		vip:       serviceVIP(i),
		ports:     g.opts.Ports,
		endpoints: make([]endpoint, 0, g.opts.EndpointsPerService),
	}
	for range g.opts.EndpointsPerService {
		svc.endpoints = append(svc.endpoints, g.endpoint())
	}
	return svc
}

// endpoint returns a new endpoint with an address never handed out before
// (until 16 million addresses have been used), a weight and a locality.
func (g *generator) endpoint() endpoint {
	addr := endpointAddress(g.next)
	g.next++
	w := uint32(1)
	if g.opts.Weights {
		w = 1 + g.rng.Uint32N(10)
	}
	r := g.rng.IntN(len(regions))
	return endpoint{address: addr, weight: w, region: regions[r], zone: zones[r][g.rng.IntN(len(zones[r]))]}
}

// serviceVIP is the VIP of service i: 127.77.0.0/16 offset by i+1, so the
// first service is 127.77.0.1 and MaxServices fit.
func serviceVIP(i int) string {
	n := i + 1
	return netip.AddrFrom4([4]byte{127, 77, byte(n >> 8), byte(n)}).String()
}

// endpointAddress is the k-th endpoint address: 127.a.b.c with c in
// [1, 254], b in [0, 255] and a in [1, 254] except 77, so endpoints never
// collide with service VIPs (127.77.0.0/16) nor with 127.0.0.0/16.
func endpointAddress(k uint64) string {
	const perA = 254 * 256
	c := 1 + k%254
	b := (k / 254) % 256
	a := 1 + (k/perA)%253
	if a >= 77 {
		a++
	}
	return netip.AddrFrom4([4]byte{127, byte(a), byte(b), byte(c)}).String()
}
