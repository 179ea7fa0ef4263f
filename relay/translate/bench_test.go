package translate

import (
	"testing"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// BenchmarkTranslate10k translates 10,000 services of 5 endpoints each,
// half with a listener VIP and half with a virtual host in route "80".
func BenchmarkTranslate10k(b *testing.B) {
	in := simpleInputs(10_000)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		out, rep := Translate(in)
		if len(out) != 10_000 || rep.Endpoints != 50_000 {
			b.Fatalf("%d services, %d endpoints", len(out), rep.Endpoints)
		}
	}
}

// BenchmarkIndexPartialEDS applies one changed assignment out of 10,000 to
// an Index and re-translates the dirty service: the cost of a partial EDS
// push.
func BenchmarkIndexPartialEDS(b *testing.B) {
	in := simpleInputs(10_000)
	x := indexOf(b, in)
	name := outbound(80, "", k8sHost("s4242", "ns"))
	versions := []map[string]proto.Message{
		{name: cla(name, ep{addr: "127.0.250.1", port: 8080}, ep{addr: "127.0.250.2", port: 8080})},
		{name: in.Endpoints[name]},
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		dirty := x.Apply(resourcev3.EndpointType, versions[i%2], nil)
		if len(dirty) != 1 {
			b.Fatalf("dirty %v", dirty)
		}
		if _, ok := x.Service(dirty[0]); !ok {
			b.Fatal("service vanished")
		}
		i++
	}
}
