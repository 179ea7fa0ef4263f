package istiodsim

import (
	"fmt"
	"testing"
)

// BenchmarkNew generates 10,000 services of 5 endpoints and marshals every
// resource.
func BenchmarkNew(b *testing.B) {
	for b.Loop() {
		if _, err := New(Options{Services: 10000, EndpointsPerService: 5, Namespaces: 100}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRepushFanout measures a full push of 1,000 services (CDS and
// EDS of every cluster) to a number of streams, until each has received
// both responses.
func BenchmarkRepushFanout(b *testing.B) {
	for _, streams := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			sim := startSim(b, Options{Services: 1000, EndpointsPerService: 5})
			var clients []*client
			var names []string
			for range streams {
				c := dial(b, sim.Addr())
				names = edsClusters(b, c.subscribe(ClusterType, nil))
				c.subscribe(EndpointType, names)
				clients = append(clients, c)
			}
			b.ResetTimer()
			for b.Loop() {
				sim.Repush()
				for _, c := range clients {
					c.recv(ClusterType)
					c.recv(EndpointType)
				}
			}
			b.StopTimer()
			st := sim.Stats()
			b.ReportMetric(float64(st.Bytes)/float64(st.Responses), "B/response")
		})
	}
}

// BenchmarkChurnPush measures one endpoint churn of a 10,000-service mesh
// until the partial EDS push reaches a stream subscribed to every cluster.
func BenchmarkChurnPush(b *testing.B) {
	sim := startSim(b, Options{Services: 10000, EndpointsPerService: 5})
	c := dial(b, sim.Addr())
	c.subscribe(EndpointType, edsClusters(b, c.subscribe(ClusterType, nil)))
	i := 0
	for b.Loop() {
		if err := sim.ChurnEndpoints(i%10000, 1); err != nil {
			b.Fatal(err)
		}
		c.recv(EndpointType)
		i++
	}
}
