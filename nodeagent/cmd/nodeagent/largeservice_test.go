package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/internal/testsupport/dpfake"
	"github.com/meshrelay/meshrelay/nodeagent/cmd/nodeagent/dumpview"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	"github.com/meshrelay/meshrelay/nodeagent/nodemodel"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// TestDumpLargeService writes a service of 65,536 endpoints (4,096 with
// -short) of weights 1 and 2 into pinned BPF maps the way the agent does
// (nodemodel.Translate, Table.Set, Pending, Apply), then runs `nodeagent
// dump` on the pin path and checks from its JSON that the frontend reaches
// every endpoint as a distinct backend with as many slots as its weight,
// and that each map's entries and capacity in the dump fit what was
// written.
func TestDumpLargeService(t *testing.T) {
	n := 65_536
	if testing.Short() {
		n = 4_096
	}
	pin := dpfake.PinDir(t, "meshrelay-cmd-large-")
	t.Cleanup(func() { datapath.Uninstall(pin) })

	spec := &v1.ServiceSpec{Namespace: "ns", Name: "large", Vips: []string{"127.77.0.9"},
		Ports: []*v1.ServicePort{{Port: 80, TargetPort: 8080, Protocol: v1.Protocol_TCP}}}
	eps := make([]*v1.Endpoint, n)
	base := netip.MustParseAddr("127.90.0.0").As4()
	for i := range eps {
		// 127.90.0.1, 127.90.0.2, ... (127.91.0.0 for the last of 65,536)
		u := binary.BigEndian.Uint32(base[:]) + uint32(i) + 1
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], u)
		eps[i] = &v1.Endpoint{Address: netip.AddrFrom4(a).String(), Port: 8080, Weight: uint32(i%2 + 1)}
	}
	svc := model.NewService(spec, eps)
	fes, err := nodemodel.Translate(svc)
	if err != nil || len(fes) != 1 || len(fes[0].Backends) != n {
		t.Fatalf("translate: %d frontends (%v)", len(fes), err)
	}
	table := nodemodel.NewTable(datapath.NewState())
	if c := table.Set(svc.Key, fes); len(c) != 0 {
		t.Fatalf("conflicts %v", c)
	}
	cs := table.Pending()

	b, err := datapath.OpenBPF(datapath.BPFOptions{PinPath: pin, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Apply(context.Background(), cs); err != nil {
		b.Close()
		t.Fatalf("apply %d entries: %v", cs.Len(), err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	out, _, err := run(context.Background(), "dump", "--bpf-pin-path="+pin)
	if err != nil {
		t.Fatal(err)
	}
	var v dumpview.View
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("dump printed no JSON: %v\n%.2000s", err, out)
	}
	if len(v.Frontends) != 1 || len(v.Problems) != 0 {
		t.Fatalf("dump: %d frontends, problems %v", len(v.Frontends), v.Problems)
	}
	fe := v.Frontends[0]
	slots := n / 2 * 3 // weights 1 and 2, exactly
	if fe.Frontend != "127.77.0.9:80/tcp" || fe.Slots != uint32(slots) {
		t.Errorf("dump: frontend %s with %d slots, want 127.77.0.9:80/tcp with %d", fe.Frontend, fe.Slots, slots)
	}
	addrs := make(map[string]int, n) // backend address -> slots
	for _, be := range fe.Backends {
		addrs[be.Addr] = be.Slots
	}
	for _, ep := range eps {
		if got := addrs[ep.Address+":8080"]; got != int(ep.Weight) {
			t.Fatalf("dump: endpoint %s:8080 of weight %d has %d slots (%d backends)", ep.Address, ep.Weight, got, len(fe.Backends))
		}
	}
	if len(addrs) != n || len(fe.Backends) != n {
		t.Errorf("dump: %d backends, %d distinct, want %d", len(fe.Backends), len(addrs), n)
	}

	// The capacity rows agree with the entries listed and were grown to
	// hold them, no further than twice (maps grow in powers of two).
	want := map[string]int{datapath.MapFrontends: 1, datapath.MapSlots: slots, datapath.MapBackends: n}
	seen := 0
	for _, m := range v.Maps {
		w, ok := want[m.Name]
		if !ok {
			continue
		}
		seen++
		if m.Entries != w || v.Entries[m.Name] != w {
			t.Errorf("dump: map %s has %d entries (%d listed), want %d", m.Name, m.Entries, v.Entries[m.Name], w)
		}
		if m.MaxEntries < w || m.Limit < m.MaxEntries || (w > 1024 && m.MaxEntries > 2*w) || m.MemlockBytes == 0 {
			t.Errorf("dump: map %+v for %d entries", m, w)
		}
		t.Logf("%-9s %7d entries, max_entries %7d, limit %8d, memlock %6d KiB", m.Name, m.Entries, m.MaxEntries, m.Limit, m.MemlockBytes>>10)
	}
	if seen != len(want) {
		t.Errorf("dump lists %d of the %d agent-written maps: %+v", seen, len(want), v.Maps)
	}
}
