package relay

import (
	"cmp"
	"slices"

	"istio.io/istio/pkg/workloadapi/security"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/relay/etcdsink"
	"github.com/meshrelay/meshrelay/relay/translate/workload"
	"github.com/meshrelay/meshrelay/relay/xds/sotw"
)

// applyAuthorizations records the authorization policies of an update
// (ModeWorkload) and, once a complete sync was seen, hands the changes to
// the sink. A removal is handed over only while the state is complete;
// otherwise the sweep after the next complete sync applies it. Before the
// first complete sync nothing is handed over: completeAuthorizations hands
// everything then. Callers hold r.mu.
func (r *Relay) applyAuthorizations(u sotw.Update) {
	var batch []etcdsink.DesiredAuthorization
	for name, m := range u.Upserted {
		a, ok := keyspace.ParseAuthorization(name)
		p, isPolicy := m.(*security.Authorization)
		if !ok || !isPolicy {
			r.log.Error("authorization resource the client should have refused: ignored", "name", name)
			continue
		}
		v, err := workload.AuthorizationValue(p)
		if err != nil {
			r.log.Error("cannot encode authorization policy: keeping what etcd holds", "authorization", a, "err", err)
			continue
		}
		r.authz[a] = v
		batch = append(batch, etcdsink.DesiredAuthorization{Authorization: a, Value: v})
	}
	for _, name := range u.Removed {
		a, ok := keyspace.ParseAuthorization(name)
		if !ok {
			continue
		}
		delete(r.authz, a)
		if u.Complete {
			batch = append(batch, etcdsink.DesiredAuthorization{Authorization: a})
		}
	}
	if r.completes > 0 && len(batch) > 0 {
		r.sink.SetAuthorizations(batch)
	}
}

// completeAuthorizations tells the sink the complete policy set (before
// Complete, which sweeps), handing every policy over on the first complete
// sync. Callers hold r.mu.
func (r *Relay) completeAuthorizations() {
	present := make([]keyspace.Authorization, 0, len(r.authz))
	for a := range r.authz {
		present = append(present, a)
	}
	slices.SortFunc(present, func(a, b keyspace.Authorization) int {
		return cmp.Compare(a.String(), b.String())
	})
	if r.completes == 0 && len(present) > 0 {
		batch := make([]etcdsink.DesiredAuthorization, len(present))
		for i, a := range present {
			batch[i] = etcdsink.DesiredAuthorization{Authorization: a, Value: r.authz[a]}
		}
		r.sink.SetAuthorizations(batch)
	}
	r.sink.CompleteAuthorizations(present)
}
