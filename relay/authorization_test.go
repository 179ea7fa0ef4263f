package relay

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	"istio.io/istio/pkg/workloadapi/security"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/relay/translate/workload"
	"github.com/meshrelay/meshrelay/relay/xds/delta"
)

// authorizations reads every key under authorizations/ with its value.
func (w *world) authorizations() map[string]string {
	w.t.Helper()
	resp, err := w.client.Get(context.Background(), w.space.AuthorizationsPrefix(), clientv3.WithPrefix())
	if err != nil {
		w.t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out
}

// policyKV is the key and value the relay should store for a.
func (w *world) policyKV(a *security.Authorization) (string, string) {
	w.t.Helper()
	v, err := workload.AuthorizationValue(a)
	if err != nil {
		w.t.Fatal(err)
	}
	return w.space.AuthorizationKey(keyspace.Authorization{Namespace: a.GetNamespace(), Name: a.GetName()}), string(v)
}

// matchPolicies reports whether etcd holds exactly want under
// authorizations/.
func (w *world) matchPolicies(want ...*security.Authorization) func() error {
	return func() error {
		exp := map[string]string{}
		for _, a := range want {
			k, v := w.policyKV(a)
			exp[k] = v
		}
		if got := w.authorizations(); !maps.Equal(got, exp) {
			return fmt.Errorf("etcd holds policies %v, want %v", got, exp)
		}
		return nil
	}
}

// TestWorkloadAuthorizations: the Authorization resources of the delta
// stream are stored under authorizations/<namespace>/<name> as protobuf
// JSON: the initial sync writes exactly the simulator's policies, and an
// add, a change and a delete each write exactly the policy's key.
func TestWorkloadAuthorizations(t *testing.T) {
	w := workloadWorld(t, istiodsim.Options{Services: 3, EndpointsPerService: 2, Namespaces: 2, Authorizations: 3})
	r, _ := w.startRelay(w.sim.Addr())
	w.waitSynced(r)
	gen := func(i int) *security.Authorization { return istiodsim.GeneratedAuthorization(i, 2) }
	testenv.Eventually(t, "initial policies", w.matchPolicies(gen(0), gen(1), gen(2)))
	if got := slices.Sorted(maps.Keys(w.authorizations())); !slices.Equal(got, []string{
		"/meshrelay/v1/Kubernetes/authorizations/ns-0/policy-0",
		"/meshrelay/v1/Kubernetes/authorizations/ns-0/policy-2",
		"/meshrelay/v1/Kubernetes/authorizations/ns-1/policy-1",
	}) {
		t.Fatalf("policy keys %v", got)
	}
	if err := w.matchTruth(); err != nil {
		t.Fatalf("services: %v", err)
	}

	changed := gen(0)
	changed.Action = security.Action_DENY
	added := gen(3)
	key := func(a *security.Authorization) string { k, _ := w.policyKV(a); return k }
	steps := []struct {
		name          string
		do            func()
		want          []*security.Authorization
		changed, gone []string
	}{
		{"add", func() { w.sim.PutAuthorization(added) }, []*security.Authorization{gen(0), gen(1), gen(2), added},
			[]string{key(added)}, nil},
		{"change", func() { w.sim.PutAuthorization(changed) }, []*security.Authorization{changed, gen(1), gen(2), added},
			[]string{key(changed)}, nil},
		{"delete", func() { w.sim.DeleteAuthorization("ns-1", "policy-1") }, []*security.Authorization{changed, gen(2), added},
			nil, []string{key(gen(1))}},
	}
	for _, st := range steps {
		w.quiesce(r)
		before, rev := w.keys(), w.revision()
		st.do()
		testenv.Eventually(t, st.name+" reaches etcd", w.matchPolicies(st.want...))
		w.quiesce(r)
		changed, gone := changedSince(before, w.keys(), rev)
		if !slices.Equal(changed, st.changed) || !slices.Equal(gone, st.gone) {
			t.Errorf("%s: changed %v, gone %v; want changed %v, gone %v", st.name, changed, gone, st.changed, st.gone)
		}
	}
	if n := r.Stats().Authorizations; n != 3 {
		t.Errorf("Stats().Authorizations = %d, want 3", n)
	}

	// Istiod restarts with the same policies: the relay sends the versions
	// it holds and writes nothing.
	if held := r.client.(*delta.Client).Stats().Resources[delta.AuthorizationType]; held != 3 {
		t.Fatalf("client holds %d policies, want 3", held)
	}
	w.reconnectWritesNothing(r, delta.AuthorizationType)
}

// TestWorkloadMalformedAuthorizationNACKed: an invalid Authorization is
// NACKed and the policies in etcd stay as they were.
func TestWorkloadMalformedAuthorizationNACKed(t *testing.T) {
	w := workloadWorld(t, istiodsim.Options{Services: 2, EndpointsPerService: 1, Authorizations: 2})
	r, _ := w.startRelay(w.sim.Addr())
	w.waitSynced(r)
	gen := func(i int) *security.Authorization { return istiodsim.GeneratedAuthorization(i, 1) }
	testenv.Eventually(t, "initial policies", w.matchPolicies(gen(0), gen(1)))
	w.quiesce(r)
	rev := w.revision()
	for i, m := range []istiodsim.Malformation{istiodsim.Undecodable, istiodsim.WrongType, istiodsim.Nameless, istiodsim.Misnamed} {
		if err := w.sim.PushMalformedAuthorization(m); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, fmt.Sprintf("NACK of %s", m), func() error {
			nacks := w.sim.Nacks()
			if len(nacks) != i+1 {
				return fmt.Errorf("%d NACKs, want %d", len(nacks), i+1)
			}
			if n := nacks[i]; n.TypeURL != delta.AuthorizationType {
				return fmt.Errorf("NACK of %s, want Authorization", n.TypeURL)
			}
			return nil
		})
	}
	w.quiesce(r)
	if got := w.revision(); got != rev {
		t.Errorf("malformed pushes wrote etcd: revision %d -> %d", rev, got)
	}
	if err := w.matchPolicies(gen(0), gen(1))(); err != nil {
		t.Errorf("last good state lost: %v", err)
	}
	// Still serving: a later good change goes through.
	w.sim.PutAuthorization(gen(2))
	testenv.Eventually(t, "good change after NACKs", w.matchPolicies(gen(0), gen(1), gen(2)))
}
