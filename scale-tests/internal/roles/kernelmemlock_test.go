package roles

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	"github.com/meshrelay/meshrelay/scale-tests/internal/workload"
)

// TestKernelMemlock replays two memory nodes, one holding 10 services of
// 10 backends and one 1,000, into BPF maps: the kernel memlock follows
// the entries, every node's entries are reported, and no pin is left
// behind. Without root the pool reports why instead.
func TestKernelMemlock(t *testing.T) {
	ctx := context.Background()
	p := newPool(PoolConfig{})
	sizes := []int{10, 1000}
	for i, services := range sizes {
		n := p.addNode(i, workload.Node{Name: "node-" + string(rune('a'+i))}, datapath.MemoryOptions{})
		want := datapath.NewState()
		for s := range services {
			bs := make([]datapath.WeightedBackend, 10)
			for j := range bs {
				id := uint32(s*10 + j + 1)
				want.PutBackend(id, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 90, byte(id >> 8), byte(id)}), 8080))
				bs[j] = datapath.WeightedBackend{ID: id, Weight: 1}
			}
			vip := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 77, byte(s >> 8), byte(s)}), 80)
			want.PutFrontend(datapath.NewFrontendKey(vip, datapath.TCP), uint32(s+1), datapath.AssignSlots(nil, bs, 0))
		}
		if _, err := n.mem.Apply(ctx, datapath.DiffStates(datapath.NewState(), want)); err != nil {
			t.Fatal(err)
		}
	}
	// A directory of this test's own: other packages' tests replay into
	// bpffs at the same time.
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp(datapath.BPFFSMount, "meshrelay-test-memlock-")
		if err != nil {
			t.Skipf("no bpffs at %s: %v", datapath.BPFFSMount, err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		p.memlockPins = dir
	}
	res, err := p.kernelMemlock(ctx, MemlockRequest{Nodes: 5})
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		if len(res.Nodes) != 0 || res.Reason == "" {
			t.Fatalf("not root: %+v, want no nodes and a reason", res)
		}
		t.Skipf("skipping the kernel figures: %s", res.Reason)
	}
	if len(res.Nodes) != len(sizes) {
		t.Fatalf("%d nodes replayed (%s), want %d", len(res.Nodes), res.Reason, len(sizes))
	}
	for i, nm := range res.Nodes {
		model := p.nodes[i].mem.Stats()
		var modelled uint64
		for _, m := range model.Maps {
			modelled += m.MemlockBytes
		}
		if want := sizes[i] * 21; nm.Entries != want || nm.MemlockBytes == 0 {
			t.Errorf("node %s: %d entries, memlock %d, want %d entries and a memlock", nm.Node, nm.Entries, nm.MemlockBytes, want)
		}
		t.Logf("%s: %d entries, kernel memlock %d KiB (model of the three maps %d KiB)", nm.Node, nm.Entries, nm.MemlockBytes>>10, modelled>>10)
	}
	if r := float64(res.Nodes[1].MemlockBytes) / float64(res.Nodes[0].MemlockBytes); r < 4 {
		t.Errorf("kernel memlock of 1,000 services / 10 = %.2f, want >= 4", r)
	}
	if left, _ := filepath.Glob(filepath.Join(p.memlockPins, "*")); len(left) > 0 {
		t.Errorf("pins left behind: %v", left)
	}
}
