package datapath

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
)

// testOptions are the options every implementation under test takes.
type testOptions struct {
	BatchSize  int
	NoBatch    bool
	MaxEntries MaxEntries
	Trace      func(Write)
}

// factory opens a fresh, empty datapath that the test closes and removes.
type factory func(t testing.TB, o testOptions) Datapath

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openMemory(t testing.TB, o testOptions) Datapath {
	m := NewMemory(MemoryOptions{MaxEntries: o.MaxEntries, BatchSize: o.BatchSize, NoBatch: o.NoBatch, Trace: o.Trace, Logger: quietLogger()})
	t.Cleanup(func() { m.Close() })
	return m
}

func openBPF(t testing.TB, o testOptions) Datapath {
	b, err := OpenBPF(BPFOptions{PinPath: testPinPath(t), MaxEntries: o.MaxEntries, BatchSize: o.BatchSize, NoBatch: o.NoBatch, Trace: o.Trace, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

var (
	bpfOnce   sync.Once
	bpfReason string
)

// requireBPF skips the test unless this process can create BPF maps and
// pin them in bpffs.
func requireBPF(t testing.TB) {
	t.Helper()
	bpfOnce.Do(func() {
		if os.Geteuid() != 0 {
			bpfReason = "needs root (CAP_BPF, CAP_SYS_ADMIN) for BPF maps and bpffs"
			return
		}
		if err := features.HaveMapType(ebpf.Hash); err != nil {
			bpfReason = fmt.Sprintf("kernel cannot create BPF hash maps: %v", err)
			return
		}
		if err := ensureBPFFS(BPFFSMount); err != nil {
			bpfReason = fmt.Sprintf("no bpf filesystem: %v", err)
		}
	})
	if bpfReason != "" {
		t.Skip("skipping BPF test: " + bpfReason)
	}
}

// testPinPath returns a fresh pin directory under /sys/fs/bpf, removed
// (unpinning everything in it) when the test ends.
func testPinPath(t testing.TB) string {
	t.Helper()
	requireBPF(t)
	dir, err := os.MkdirTemp(BPFFSMount, "meshrelay-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Clean(dir)
}

// testService describes one service of a generated state.
type testService struct {
	key      FrontendKey
	id       uint32
	backends []WeightedBackend
}

// vip returns the i-th test VIP, in 127.77.0.0/16.
func vip(i int, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 77, byte(i >> 8), byte(i)}), port)
}

// backendAddr returns the address of backend id, on 127.0.0.x.
func backendAddr(id uint32) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(id%250 + 1)}), uint16(20000+id%40000))
}

// services returns n services with perService equal-weight backends each
// (consecutive ids, so neighbours share none).
func services(n, perService int) []testService {
	out := make([]testService, n)
	for i := range out {
		out[i] = testService{key: NewFrontendKey(vip(i, 80), TCP), id: uint32(i + 1)}
		for j := range perService {
			out[i].backends = append(out[i].backends, WeightedBackend{ID: uint32(i*perService + j + 1), Weight: 1})
		}
	}
	return out
}

// stateOf builds the State of svcs; prev, if set, keeps slot tables stable.
func stateOf(svcs []testService, prev *State) State {
	s := NewState()
	for _, svc := range svcs {
		var old []uint32
		if prev != nil {
			old = prev.SlotTable(svc.key)
		}
		for _, b := range svc.backends {
			s.PutBackend(b.ID, backendAddr(b.ID))
		}
		s.PutFrontend(svc.key, svc.id, AssignSlots(old, svc.backends, 0))
	}
	return s
}

// mergeInto adds every entry of src to dst (src wins) and returns dst.
func mergeInto(dst, src State) State {
	maps.Copy(dst.Frontends, src.Frontends)
	maps.Copy(dst.Slots, src.Slots)
	maps.Copy(dst.Backends, src.Backends)
	return dst
}

func backendKeys(ids ...uint32) []BackendKey {
	keys := make([]BackendKey, len(ids))
	for i, id := range ids {
		keys[i] = BackendKey{BackendId: id}
	}
	return keys
}
