package nodeagent

import (
	"context"
	"testing"
	"time"

	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	"github.com/meshrelay/meshrelay/nodeagent/nodemodel"
)

// TestWriterDefersUnreferencedDeletes: the backends a change stops using
// are deleted by a later change set (a quiet write, or the next one once
// they are maxGarbageAge old), so that one change set writes each map
// with one syscall.
func TestWriterDefersUnreferencedDeletes(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{t: time.Unix(1000, 0)}
	dp := datapath.NewMemory(datapath.MemoryOptions{})
	m := newMetrics()
	w := newWriter(dp, nodemodel.NewTable(datapath.NewState()), Options{Now: clk.now}.withDefaults(), m)
	set := func(base int) {
		t.Helper()
		st := testService("ns", 1, 2, base)
		fes, err := nodemodel.Translate(st)
		if err != nil {
			t.Fatal(err)
		}
		if c := w.table.Set(st.Key, fes); len(c) != 0 {
			t.Fatalf("conflicts %v", c)
		}
		if err := w.write(ctx, false); err != nil {
			t.Fatal(err)
		}
	}
	backends := func() int {
		t.Helper()
		st, err := dp.Dump(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(st.Backends)
	}

	set(0)
	if backends() != 2 || w.hasGarbage() || count(m.applies) != 1 {
		t.Fatalf("first write: %d backends, garbage %v, %d applies", backends(), w.hasGarbage(), count(m.applies))
	}
	set(2) // both endpoints replaced
	if backends() != 4 || !w.hasGarbage() || count(m.garbage) != 2 {
		t.Fatalf("after a replacement: %d backends (want 4: the old ones wait), garbage %d", backends(), count(m.garbage))
	}
	if err := w.write(ctx, false); err != nil { // a quiet moment
		t.Fatal(err)
	}
	if backends() != 2 || w.hasGarbage() || count(m.garbage) != 0 {
		t.Fatalf("after a quiet write: %d backends, garbage %d", backends(), count(m.garbage))
	}

	set(4)
	clk.advance(maxGarbageAge)
	applies := count(m.applies)
	set(6) // overdue garbage: every delete is written, as a second change set
	if backends() != 2 || w.hasGarbage() || count(m.applies) != applies+2 {
		t.Fatalf("overdue garbage: %d backends (want 2), garbage %v, %d applies (want %d)", backends(), w.hasGarbage(), count(m.applies), applies+2)
	}
	if h := histogramStats(m.batch); h.Count != uint64(count(m.applies)) {
		t.Fatalf("batch histogram has %d samples, %d applies", h.Count, count(m.applies))
	}
}
