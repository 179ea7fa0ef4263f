package sotw

import (
	"sync/atomic"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
)

// TestEDSFilter: only the clusters the filter accepts have their
// assignments subscribed; Resubscribe applies a changed answer, dropping
// the assignments that left and asking for those that joined.
func TestEDSFilter(t *testing.T) {
	var wantB, none atomic.Bool
	f := newFixture(t, Options{EDSFilter: func(name string, _ *clusterv3.Cluster) bool {
		return !none.Load() && (name != clusterB || wantB.Load())
	}})
	f.s.push(t, cdsURL, "v1", "c1", clustersV1()...)
	expectRequest(t, f.s.next(t), cdsURL, "v1", "c1", nil)
	expectRequest(t, f.s.next(t), edsURL, "", "", []string{clusterA})
	expectUpdate(t, f.rec.next(t), cdsURL, []string{clusterA, clusterB, static}, nil, false)
	f.s.push(t, edsURL, "v1", "e1", assignment(clusterA, "127.0.0.1"))
	expectRequest(t, f.s.next(t), edsURL, "v1", "e1", []string{clusterA})
	expectUpdate(t, f.rec.next(t), edsURL, []string{clusterA}, nil, false)

	wantB.Store(true)
	f.c.Resubscribe()
	expectRequest(t, f.s.next(t), edsURL, "v1", "e1", []string{clusterA, edsB})
	f.s.push(t, edsURL, "v2", "e2", assignment(edsB, "127.0.0.3"))
	expectRequest(t, f.s.next(t), edsURL, "v2", "e2", []string{clusterA, edsB})
	expectUpdate(t, f.rec.next(t), edsURL, []string{edsB}, nil, false)

	wantB.Store(false)
	f.c.Resubscribe()
	expectRequest(t, f.s.next(t), edsURL, "v2", "e2", []string{clusterA})
	expectUpdate(t, f.rec.next(t), edsURL, nil, []string{edsB}, false)
	if st := f.c.Stats(); st.Subscribed[edsURL] != 1 || st.Resources[edsURL] != 1 {
		t.Errorf("sizes %v %v", st.Subscribed, st.Resources)
	}

	// A filter that accepts nothing leaves the subscription alone: an
	// empty request cannot be sent, and Istiod would not send the names
	// again later.
	none.Store(true)
	f.c.Resubscribe()
	f.s.push(t, edsURL, "v3", "e3", assignment(clusterA, "127.0.0.4"))
	expectRequest(t, f.s.next(t), edsURL, "v3", "e3", []string{clusterA})
	expectUpdate(t, f.rec.next(t), edsURL, []string{clusterA}, nil, false)
	expectNoEmptyNamedRequest(t, f.s)
}
