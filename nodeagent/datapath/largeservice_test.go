package datapath

import (
	"fmt"
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/meshrelay/meshrelay/internal/testsupport/cgroupclient"
)

// TestProgramsLargeService sends connects through the programs to a service
// of 5,000 weighted backends (500 with -short), each a listener of its own
// on a 127.88.0.0/16 address, and checks that every backend receives
// connects and that the weight classes get their share.
func TestProgramsLargeService(t *testing.T) {
	nBackends, connects := 5000, 120_000
	if testing.Short() {
		nBackends, connects = 500, 12_000
	}
	// Every backend expects connects/nBackends*weight/1.5 connects, the
	// least (weight 1) 16: the chance that one gets none is about
	// exp(-16) a backend, 5e-4 over all.
	requireCgroup2(t)
	vipAddr := netip.MustParseAddrPort("127.77.4.1:80")
	key := NewFrontendKey(vipAddr, TCP)
	have := NewState()
	bs := make([]WeightedBackend, nBackends)
	servers := make([]*cgroupclient.Backend, nBackends)
	for i := range bs {
		addr := netip.AddrFrom4([4]byte{127, 88, byte(i / 200), byte(i%200 + 1)})
		id := uint32(i + 1)
		servers[i] = tcpServer(t, netip.AddrPortFrom(addr, 0), fmt.Sprint(id))
		have.PutBackend(id, servers[i].Addr)
		bs[i] = WeightedBackend{ID: id, Weight: uint32(i%2 + 1)} // odd ids weight 1, even ids 2
	}
	table := AssignSlots(nil, bs, 0)
	// The weights fit exactly: a backend has as many slots as its weight.
	slots := map[uint32]uint32{}
	for _, id := range table {
		slots[id]++
	}
	for _, b := range bs {
		if slots[b.ID] != b.Weight {
			t.Fatalf("backend %d of weight %d has %d slots", b.ID, b.Weight, slots[b.ID])
		}
	}
	have.PutFrontend(key, 1, table)
	e := newProgEnv(t, have)
	h := startHelper(t, e.cgroup)

	// A sample through the whole path: the answer names a backend and
	// getpeername returns the VIP.
	res := h.do(helperCmd{Op: "tcp", Addr: vipAddr.String(), N: 50})
	if res.Errors != 0 || res.Peers[vipAddr.String()] != 50 || len(res.Backends) < 40 {
		t.Fatalf("50 connects with reads: %+v", res)
	}
	// The bulk connects and closes only; the backends count the accepts.
	const chunk = 20_000 // one request stays well inside the client's budget
	for done := 0; done < connects; done += chunk {
		n := min(chunk, connects-done)
		if res := h.do(helperCmd{Op: "bench", Addr: vipAddr.String(), N: n}); res.Errors != 0 {
			t.Fatalf("connects %d..%d: %d errors, first: %s", done, done+n, res.Errors, res.FirstErr)
		}
	}
	total := func() (n int) {
		for _, s := range servers {
			n += int(s.Served())
		}
		return n
	}
	// Accepts may trail the client by a moment (bounded wait).
	for i := 0; i < 200 && total() < connects+50; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if got := total(); got != connects+50 {
		t.Fatalf("backends accepted %d connections, want %d", got, connects+50)
	}

	var missing []uint32
	heavy := 0 // connects to weight-2 backends
	for i, b := range bs {
		c := int(servers[i].Served())
		if c == 0 {
			missing = append(missing, b.ID)
		}
		if b.Weight == 2 {
			heavy += c
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d backends got no connect, e.g. %v", len(missing), nBackends, missing[:min(10, len(missing))])
	}
	connects += 50
	// Weight 2 of 3 in total: expect 2/3 of the connects, within 4.5
	// standard deviations.
	share := float64(heavy) / float64(connects)
	sd := math.Sqrt(2.0 / 3 * (1.0 / 3) / float64(connects))
	if math.Abs(share-2.0/3) > 4.5*sd {
		t.Errorf("weight-2 backends got %.4f of the connects, want %.4f ± %.4f", share, 2.0/3, 4.5*sd)
	}
	t.Logf("%d connects over %d backends (%d slots): weight-2 share %.4f", connects, nBackends, len(table), share)
}
