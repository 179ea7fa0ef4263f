package datapath

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"testing"
)

// TestBPFReadOnlyOpen opens the pins of an agent read-only, as `nodeagent
// dump` does: nothing is created where nothing is pinned, the dump is the
// agent's, and writes and attaching fail.
func TestBPFReadOnlyOpen(t *testing.T) {
	pin := testPinPath(t)
	ro := BPFOptions{PinPath: pin, Logger: quietLogger(), ReadOnly: true}
	if b, err := OpenBPF(ro); err == nil || !errors.Is(err, os.ErrNotExist) {
		if b != nil {
			b.Close()
		}
		t.Fatalf("read-only open of an empty pin path: %v, want a not-exist error", err)
	}
	if entries, err := os.ReadDir(pin); err != nil || len(entries) != 0 {
		t.Fatalf("read-only open created %d entries under %s (%v)", len(entries), pin, err)
	}

	b, err := OpenBPF(BPFOptions{PinPath: pin, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	want := stateOf(services(20, 3), nil)
	mustApply(t, b, DiffStates(NewState(), want))

	r, err := OpenBPF(ro)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := mustDump(t, r); !got.Equal(want) {
		t.Fatalf("read-only dump holds %d entries, want %d", got.Len(), want.Len())
	}
	if _, err := r.Apply(context.Background(), DiffStates(want, NewState())); err == nil {
		t.Fatal("Apply through read-only maps succeeded")
	}
	if _, err := r.Attach(context.Background(), nil); err == nil {
		t.Fatal("Attach through read-only maps succeeded")
	}
	if got := mustDump(t, b); !got.Equal(want) {
		t.Fatalf("the maps changed through the read-only open: %d entries, want %d", got.Len(), want.Len())
	}
}

// TestMemoryAttachIsNoOp: the memory datapath has no programs.
func TestMemoryAttachIsNoOp(t *testing.T) {
	m := NewMemory(MemoryOptions{})
	p, err := m.Attach(context.Background(), []netip.Prefix{netip.MustParsePrefix("127.77.0.0/16")})
	if p != nil || err != nil {
		t.Fatalf("Attach = %v, %v; want nil, nil", p, err)
	}
}
