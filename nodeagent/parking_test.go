package nodeagent

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// A service too large for the slots map is parked; the others keep being
// applied, deleting it clears it, and the health check fails while the
// apply loop makes no progress with it pending.
func TestTooBigServiceIsParked(t *testing.T) {
	e := newEnv(t)
	s1, s2, big := testService("ns", 1, 3, 0), testService("ns", 2, 3, 0), testService("ns", 3, 30, 0)
	for _, m := range []*model.Service{s1, s2, big} {
		e.write(m, 1)
	}
	e.markSynced()
	mem := datapath.NewMemory(datapath.MemoryOptions{
		MaxEntries: datapath.MaxEntries{Slots: 20},
		Logger:     slog.New(slog.DiscardHandler),
	})
	const stall = 500 * time.Millisecond
	ag := start(t, e.client, e.client, mem, Options{
		Services:     []keyspace.Service{s1.Key, s2.Key, big.Key},
		StallTimeout: stall,
	})
	holds(t, mem, expected(s1, s2))
	testenv.Eventually(t, "big parked, agent ready", func() error {
		if st := ag.Stats(); st.Parked != 1 || st.Parks != 1 || !st.Ready || st.ApplyErrors == 0 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})

	// Other services keep flowing.
	s1b := testService("ns", 1, 4, 10)
	e.write(s1b, 2)
	holds(t, mem, expected(s1b, s2))

	// No write succeeds any more while big is pending: unhealthy after the bound.
	testenv.Eventually(t, "unhealthy while big is parked", func() error {
		if ok, why := ag.Healthy(); ok {
			return fmt.Errorf("healthy")
		} else if why == "" {
			return fmt.Errorf("no reason")
		}
		return nil
	})
	if st := ag.Stats(); st.Parked != 1 || st.Parks != 1 {
		t.Fatalf("stats %+v: big should stay parked once", st)
	}

	// Deleting it clears it.
	e.remove(big)
	testenv.Eventually(t, "big unparked after its removal", func() error {
		if st := ag.Stats(); st.Parked != 0 {
			return fmt.Errorf("stats %+v", st)
		}
		if ok, why := ag.Healthy(); !ok {
			return fmt.Errorf("unhealthy: %s", why)
		}
		return nil
	})
	holds(t, mem, expected(s1b, s2))
}

// After a restart, a service whose new state does not fit keeps the
// entries the previous run wrote for it (they are its last written state).
func TestParkedAfterRestartKeepsPreviousEntries(t *testing.T) {
	e := newEnv(t)
	small, other := testService("ns", 1, 3, 0), testService("ns", 2, 2, 0)
	e.write(small, 1)
	e.write(other, 1)
	e.markSynced()
	mem := datapath.NewMemory(datapath.MemoryOptions{
		MaxEntries: datapath.MaxEntries{Slots: 20},
		Logger:     slog.New(slog.DiscardHandler),
	})
	opts := Options{Services: []keyspace.Service{small.Key, other.Key}}
	first := start(t, e.client, e.client, mem, opts)
	holds(t, mem, expected(small, other))
	first.stop()

	big := testService("ns", 1, 30, 100) // same service, too large now
	e.write(big, 2)
	ag := start(t, e.client, e.client, mem, opts)
	testenv.Eventually(t, "big parked", func() error {
		if st := ag.Stats(); st.Parked != 1 || !st.Ready {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	holds(t, mem, expected(small, other))
}
