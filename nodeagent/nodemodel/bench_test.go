package nodemodel

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// benchService is service i with n endpoints on two ports.
func benchService(i, n int) *model.Service {
	spec := &v1.ServiceSpec{
		Namespace: "ns", Name: fmt.Sprintf("svc-%d", i),
		Vips:  []string{netip.AddrFrom4([4]byte{127, 77, byte(i >> 8), byte(i)}).String()},
		Ports: []*v1.ServicePort{{Port: 80, TargetPort: 8080}, {Port: 443, TargetPort: 8443}},
	}
	eps := make([]*v1.Endpoint, n)
	for j := range eps {
		eps[j] = &v1.Endpoint{
			Address: netip.AddrFrom4([4]byte{127, 1 + byte(j), byte(i >> 8), byte(i)}).String(),
			Port:    uint32(10000 + j), Weight: 1,
			TargetPorts: map[uint32]uint32{80: uint32(10000 + j), 443: uint32(20000 + j)},
		}
	}
	return model.NewService(spec, eps)
}

func BenchmarkTranslate(b *testing.B) {
	m := benchService(1, 100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Translate(m); err != nil {
			b.Fatal(err)
		}
	}
}

// table10k returns a committed table of 10,000 services of 5 endpoints
// and the frontends of each.
func table10k(b *testing.B) (*Table, [][]Frontend) {
	tb := NewTable(datapath.NewState())
	fes := make([][]Frontend, 10000)
	for i := range fes {
		f, err := Translate(benchService(i, 5))
		if err != nil {
			b.Fatal(err)
		}
		fes[i] = f
		tb.Set(benchService(i, 0).Key, f)
	}
	tb.Commit(tb.Pending())
	return tb, fes
}

// BenchmarkTableOneEndpointChange: in a table of 10,000 services (20,000
// frontends, 100,000 slots), one service's endpoint changes; the cost is
// that of the change, not of the table.
func BenchmarkTableOneEndpointChange(b *testing.B) {
	tb, fes := table10k(b)
	entries := 0
	i := 0
	for b.Loop() {
		svc := i % len(fes)
		m := benchService(svc, 5)
		eps := m.Endpoints()
		p := uint32(30000 + i%9973) // a new target port: a new backend on each port
		eps[i%5].Port, eps[i%5].TargetPorts = p, map[uint32]uint32{80: p, 443: p + 1000}
		f, _ := Translate(model.NewService(m.Spec, eps))
		tb.Set(m.Key, f)
		cs := tb.Pending()
		entries += cs.Len()
		tb.Commit(cs)
		i++
	}
	b.ReportMetric(float64(entries)/float64(i), "entries/op")
}

// BenchmarkTableRestart10k: a restarted agent rebuilds its table from a
// dump of 10,000 services and claims them all again: zero entries written.
func BenchmarkTableRestart10k(b *testing.B) {
	tb, fes := table10k(b)
	dump := tb.Applied().Clone()
	for b.Loop() {
		t2 := NewTable(dump.Clone())
		for i, f := range fes {
			t2.Set(benchService(i, 0).Key, f)
		}
		if cs := t2.Pending(); !cs.Empty() {
			b.Fatalf("restart writes %d entries", cs.Len())
		}
	}
}

// BenchmarkTableRollingRestart is a node's share of a rolling restart:
// a table of 50 services of 5 weighted endpoints (weights 1-10, so about
// 27 slots a service) in which each op replaces every endpoint of one
// service, written as the agent's writer does: the upserts, then the
// deletes of the old backends in a change set of their own.
//
// With tables=1 the table stays in the CPU's caches. With tables=1000,
// as in a node pool of the scale test (1,000 agents in one process),
// each op changes the next of 1,000 such tables, which the other 999 ops
// have pushed out of the caches since: what a change costs an agent that
// was idle.
//
//	go test ./nodeagent/nodemodel -run '^$' -bench RollingRestart
func BenchmarkTableRollingRestart(b *testing.B) {
	for _, n := range []int{1, 1000} {
		b.Run(fmt.Sprintf("tables=%d", n), func(b *testing.B) { benchRollingRestart(b, n) })
	}
}

func benchRollingRestart(b *testing.B, tables int) {
	if testing.Short() && tables > 1 {
		b.Skip("-short: 1,000 tables")
	}
	const services = 50
	weighted := func(i, gen int) *model.Service {
		spec := &v1.ServiceSpec{
			Namespace: "ns", Name: fmt.Sprintf("svc-%d", i),
			Vips:  []string{netip.AddrFrom4([4]byte{127, 77, 0, byte(i)}).String()},
			Ports: []*v1.ServicePort{{Port: 80, TargetPort: 8080}},
		}
		eps := make([]*v1.Endpoint, 5)
		for j := range eps {
			eps[j] = &v1.Endpoint{
				Address: netip.AddrFrom4([4]byte{127, 1 + byte(gen%200), byte(i), byte(j)}).String(),
				Port:    8080, Weight: uint32(1 + (i+j*3)%10),
			}
		}
		return model.NewService(spec, eps)
	}
	keys := make([]keyspace.Service, services)
	first := make([][]Frontend, services)
	for i := range services {
		m := weighted(i, 0)
		f, err := Translate(m)
		if err != nil {
			b.Fatal(err)
		}
		keys[i], first[i] = m.Key, f
	}
	tbs := make([]*Table, tables)
	for t := range tbs {
		tbs[t] = NewTable(datapath.NewState())
		for i := range services {
			tbs[t].Set(keys[i], first[i])
		}
		tbs[t].Commit(tbs[t].Pending())
	}
	versions := make([][]Frontend, 2*services) // built outside the loop: the table's cost only
	for i := range versions {
		f, err := Translate(weighted(i%services, 1+i/services))
		if err != nil {
			b.Fatal(err)
		}
		versions[i] = f
	}
	entries, i := 0, 0
	b.ReportAllocs()
	for b.Loop() {
		// Every table goes through the versions in order, one op at a time.
		tb, v := tbs[i%tables], (i/tables)%len(versions)
		tb.Set(keys[v%services], versions[v])
		now, garbage := datapath.SplitGarbage(tb.Pending())
		tb.Commit(now)
		tb.Retain(garbage)
		rest := tb.Pending()
		tb.Commit(rest)
		entries += now.Len() + rest.Len()
		i++
	}
	b.ReportMetric(float64(entries)/float64(i), "entries/op")
}
