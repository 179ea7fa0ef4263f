package keyspace

import "testing"

func TestAuthorizationKey(t *testing.T) {
	s := New("")
	a := Authorization{"istio-system", "allow-all"}
	if got, want := s.AuthorizationKey(a), "/meshrelay/v1/Kubernetes/authorizations/istio-system/allow-all"; got != want {
		t.Fatalf("key %q, want %q", got, want)
	}
	if got, ok := s.ParseAuthorizationKey(s.AuthorizationKey(a)); !ok || got != a {
		t.Fatalf("round trip: %+v %v", got, ok)
	}
	if got, want := AuthorizationShard(a, 16), Shard(Service{"istio-system", "allow-all"}, 16); got != want {
		t.Fatalf("shard %d, want the service shard function's %d", got, want)
	}
	for _, bad := range []string{
		s.AuthorizationsPrefix(), s.AuthorizationsPrefix() + "ns", s.AuthorizationsPrefix() + "ns/",
		s.AuthorizationsPrefix() + "/name", s.AuthorizationsPrefix() + "ns/a/b", s.Spec(Service{"ns", "a"}),
		New("other").AuthorizationKey(a),
	} {
		if got, ok := s.ParseAuthorizationKey(bad); ok {
			t.Errorf("%q parsed as %+v", bad, got)
		}
	}
}

// FuzzParseAuthorizationKey checks that any key either parses to a
// canonical result that round-trips through AuthorizationKey, or is
// rejected.
func FuzzParseAuthorizationKey(f *testing.F) {
	s := New("fuzz")
	for _, seed := range []string{
		s.AuthorizationKey(Authorization{"ns", "p"}), s.AuthorizationsPrefix() + "ns//p",
		s.AuthorizationsPrefix() + "ns/p/", s.Spec(Service{"ns", "p"}),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, key string) {
		a, ok := s.ParseAuthorizationKey(key)
		if !ok {
			if a != (Authorization{}) {
				t.Fatalf("rejected %q but returned %+v", key, a)
			}
			return
		}
		if back := s.AuthorizationKey(a); back != key {
			t.Fatalf("%q parsed to %+v, which names %q", key, a, back)
		}
	})
}
