package istiodsim

import (
	"fmt"
	"maps"
	"slices"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"istio.io/istio/pkg/workloadapi/security"
)

// GeneratedAuthorization is the i-th authorization policy of
// Options.Authorizations: "policy-<i>" in ns-<i % Namespaces>, a
// namespace-scoped ALLOW (DENY for odd i) of destination port 8080+i from
// its own namespace. The same i always gives the same policy.
func GeneratedAuthorization(i, namespaces int) *security.Authorization {
	ns := fmt.Sprintf("ns-%d", i%max(namespaces, 1))
	a := &security.Authorization{
		Name: fmt.Sprintf("policy-%d", i), Namespace: ns, Scope: security.Scope_NAMESPACE,
		Groups: []*security.Group{{Rules: []*security.Rules{{Matches: []*security.Match{{
			Namespaces:       []*security.StringMatch{{MatchType: &security.StringMatch_Exact{Exact: ns}}},
			DestinationPorts: []uint32{uint32(8080 + i)},
		}}}}}},
	}
	if i%2 == 1 {
		a.Action = security.Action_DENY
	}
	return a
}

// AuthorizationName is the resource name Istiod gives a policy:
// "<namespace>/<name>".
func AuthorizationName(a *security.Authorization) string { return a.GetNamespace() + "/" + a.GetName() }

// PutAuthorization adds or replaces the authorization policy named
// "<namespace>/<name>" of a and pushes the difference to every delta stream
// subscribed to AuthorizationType at once (no debounce). a must not be
// modified afterwards.
func (s *Sim) PutAuthorization(a *security.Authorization) {
	s.setAuthorization(AuthorizationName(a), newDeltaResource(AuthorizationName(a), a))
}

// DeleteAuthorization removes the policy namespace/name, if the Sim holds
// it, and pushes the removal. It reports whether the policy existed.
func (s *Sim) DeleteAuthorization(namespace, name string) bool {
	return s.setAuthorization(namespace+"/"+name, nil)
}

// Authorizations returns the resource names of the policies the Sim holds.
func (s *Sim) Authorizations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.authz))
}

// setAuthorization stores r under name (nil removes it) and wakes the delta
// streams. The map is replaced, never modified, so streams read it without
// the lock.
func (s *Sim) setAuthorization(name string, r *discoveryv3.Resource) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, existed := s.authz[name]
	next := maps.Clone(s.authz)
	if next == nil {
		next = map[string]*discoveryv3.Resource{}
	}
	if r == nil {
		delete(next, name)
	} else {
		next[name] = r
	}
	s.authz = next
	for st := range s.deltas {
		st.wakeUp()
	}
	return existed
}

// authorizations returns the current policies by name (read-only).
func (s *Sim) authorizations() map[string]*discoveryv3.Resource {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authz
}

// PushMalformedAuthorization sends every delta stream subscribed to
// AuthorizationType one response holding a single invalid Authorization
// named "ns/malformed"; Misnamed is a valid policy under a resource name
// that is not its "<namespace>/<name>". A correct client NACKs it and keeps
// its last good state. The Sim's state does not change.
func (s *Sim) PushMalformedAuthorization(m Malformation) error {
	r := malformedDelta(AuthorizationType, "ns/malformed", m, &security.Match{}, &security.Authorization{})
	if m == Misnamed {
		r = &discoveryv3.Resource{Name: "ns/malformed", Version: "bad",
			Resource: mustAny(&security.Authorization{Namespace: "ns", Name: "other"})}
	}
	if r == nil {
		return fmt.Errorf("push malformed authorization: unknown malformation %d", int(m))
	}
	s.queueMalformedDelta(AuthorizationType, r, m)
	return nil
}
