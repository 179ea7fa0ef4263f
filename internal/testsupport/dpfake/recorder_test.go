package dpfake

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

func TestRecorder(t *testing.T) {
	r := NewRecorder(datapath.NewMemory(datapath.MemoryOptions{}))
	want := datapath.NewState()
	key := datapath.NewFrontendKey(netip.MustParseAddrPort("127.77.0.1:80"), datapath.TCP)
	want.PutBackend(1, netip.MustParseAddrPort("127.0.0.2:8080"))
	want.PutFrontend(key, 1, []uint32{1})
	if _, err := r.Apply(context.Background(), datapath.DiffStates(datapath.NewState(), want)); err != nil {
		t.Fatal(err)
	}
	if n := r.Entries(); n != 3 {
		t.Fatalf("Entries = %d, want 3 (backend, slot, frontend)", n)
	}
	if _, err := r.Apply(context.Background(), datapath.DiffStates(want, datapath.NewState())); err != nil {
		t.Fatal(err)
	}
	if d := r.DeletedFrontends(); !slices.Equal(d, []string{key.String()}) {
		t.Fatalf("DeletedFrontends = %v", d)
	}
	if st, _ := r.Dump(context.Background()); st.Len() != 0 {
		t.Fatalf("the wrapped datapath still holds %d entries", st.Len())
	}
}
