package nodemodel

import (
	"fmt"
	"testing"

	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// FuzzTable translates and sets arbitrary sequences of service states
// (and removals) into a table, committing now and then to a model
// datapath: it never panics, and every frontend's slots point at
// existing backends, in Want and in the datapath after each commit.
func FuzzTable(f *testing.F) {
	f.Add([]byte{0, 1, 1, 3, 80, 0, 1, 2, 3, 4})
	f.Add([]byte{1, 0, 2, 2, 0, 0, 9, 9, 9, 9, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 1, 1, 1, 80, 1, 1, 1, 1, 1})
	f.Add([]byte{0, 3, 5, 8, 7, 200, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24})
	f.Fuzz(func(t *testing.T, ops []byte) {
		tb := NewTable(datapath.NewState())
		kernel := datapath.NewState()
		for len(ops) >= 5 {
			op, svc, vips, ports, eps := ops[0], int(ops[1]%4), int(ops[2]%4), int(ops[3]%4), int(ops[4]%16)
			ops = ops[5:]
			switch op % 4 {
			case 0, 1:
				m, rest := fuzzService(svc, vips, ports, eps, ops)
				ops = rest
				fes, _ := Translate(m)
				tb.Set(svcKey(svc), fes)
			case 2:
				tb.Remove(svcKey(svc))
			case 3:
				commit(t, tb, kernel)
			}
			checkSlots(t, tb.Want())
		}
		commit(t, tb, kernel)
		checkSlots(t, kernel)
	})
}

// fuzzService builds a service from fuzz bytes: VIPs, ports and endpoints
// (addresses, ports, weights, health and target ports) taken from b.
func fuzzService(i, vips, ports, eps int, b []byte) (*model.Service, []byte) {
	next := func() byte {
		if len(b) == 0 {
			return 0
		}
		c := b[0]
		b = b[1:]
		return c
	}
	spec := &v1.ServiceSpec{Namespace: "ns", Name: fmt.Sprintf("svc-%d", i)}
	for range vips {
		c := next()
		if c%8 == 7 {
			spec.Vips = append(spec.Vips, fmt.Sprintf("fd00::%x", c))
		} else {
			spec.Vips = append(spec.Vips, fmt.Sprintf("127.77.%d.%d", i, c%8))
		}
	}
	for range ports {
		spec.Ports = append(spec.Ports, &v1.ServicePort{Port: uint32(next()%4) * 80, TargetPort: uint32(next()), Protocol: v1.Protocol(next() % 4)})
	}
	var endpoints []*v1.Endpoint
	for range eps {
		c := next()
		ep := &v1.Endpoint{Address: fmt.Sprintf("127.0.%d.%d", c%4, c/4), Port: uint32(next() % 3), Weight: uint32(next() % 5),
			Health: v1.Health(next() % 6)}
		if c%3 == 0 {
			ep.TargetPorts = map[uint32]uint32{80: uint32(next()), uint32(next()): 8080}
		}
		if c%11 == 10 {
			ep.Address = fmt.Sprintf("fd00::1:%x", c)
		}
		endpoints = append(endpoints, ep)
	}
	return model.NewService(spec, endpoints), b
}

// checkSlots fails unless every slot of every frontend of st exists and
// points at an existing backend.
func checkSlots(t *testing.T, st datapath.State) {
	t.Helper()
	for k, v := range st.Frontends {
		for i := uint32(0); i < v.SlotCount; i++ {
			sv, ok := st.Slots[datapath.SlotKey{FrontendId: v.FrontendId, Slot: i}]
			if !ok {
				t.Fatalf("frontend %s: slot %d of %d missing", k, i, v.SlotCount)
			}
			if _, ok := st.Backends[datapath.BackendKey{BackendId: sv.BackendId}]; !ok {
				t.Fatalf("frontend %s: slot %d points at missing backend %d", k, i, sv.BackendId)
			}
		}
	}
}
